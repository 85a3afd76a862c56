"""torch's in-place tensor ops, written out of place with torch's rounding.

Matching torch's evaluation order keeps float32 trajectories within a few ULPs of torch's
(float64 would agree to ~1e-15 either way).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


class Increment(NamedTuple):
    """What an ``update_leaf`` returns when torch's last op on the parameter is
    ``p.add_(value)`` (or ``addcdiv_``/``addcmul_``) of the untouched ``p``.

    The builder then hands ``value`` out as the update as it is, and ``params + updates`` is
    torch's result bit for bit; a new parameter would have to be turned into a delta with a
    subtraction, an extra op per leaf in the compiled step.
    """

    value: Array


def lerp(start: Array, end: Array, weight: Array) -> Array:
    """``start.lerp_(end, weight)`` for a scalar weight.

    torch computes ``start + w * (end - start)`` for ``|w| < 0.5`` and
    ``end - (end - start) * (1 - w)`` otherwise. The second is ``end + (w - 1) * diff`` exactly
    (negation is exact), so the choice is one select of the base and one of a scalar: fewer ops
    per leaf than selecting between the two full formulas.
    """
    small = jnp.abs(weight) < 0.5
    diff = end - start
    return lax.select(small, start, end) + lax.select(small, weight, weight - 1) * diff


def add_weight_decay(g: Array, p: Array, weight_decay: Array) -> Array:
    """L2 decay ``g.add(p, alpha=weight_decay)``, skipped (not multiplied by 0) when it is 0,
    so an inf or NaN parameter does not leak into the gradient, as in torch."""
    # lax.select with the scalar predicate: jnp.where would broadcast it and wrap the select in
    # a call, two more instructions per leaf for XLA to compile.
    return lax.select(weight_decay != 0, g + weight_decay * p, g)


def decoupled_decay(p: Array, lr: Array, weight_decay: Array) -> Array:
    """``p.mul_(1 - lr * weight_decay)``, skipped when ``weight_decay`` is 0."""
    return lax.select(weight_decay != 0, p * (1 - lr * weight_decay), p)


def maybe_negate(g: Array, maximize: bool) -> Array:
    return -g if maximize else g


def weight_decay(
    g: Array, p: Array, lr: Array, weight_decay: Array, decoupled: bool
) -> tuple[Array, Array]:
    """The Adam family's decay: ``p.mul_(1 - lr * wd)`` if decoupled, else ``g += wd * p``.
    Returns ``(g, p)``."""
    if decoupled:
        return g, decoupled_decay(p, lr, weight_decay)
    return add_weight_decay(g, p, weight_decay), p


def adam_moments(
    exp_avg: Array, exp_avg_sq: Array, g: Array, one_minus_beta1: Array, beta2: Array,
    one_minus_beta2: Array,
) -> tuple[Array, Array]:
    """``exp_avg.lerp_(g, 1 - beta1)`` and ``exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)``."""
    m = lerp(exp_avg, g, one_minus_beta1)
    v = exp_avg_sq * beta2 + one_minus_beta2 * g * g
    return m, v
