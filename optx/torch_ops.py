"""torch's in-place tensor ops, written out of place with torch's rounding.

Matching torch's evaluation order keeps float32 trajectories within a few ULPs of torch's
(float64 would agree to ~1e-15 either way).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def lerp(start: Array, end: Array, weight: Array) -> Array:
    """``start.lerp_(end, weight)`` for a scalar weight: torch switches formulas at 0.5."""
    diff = end - start
    return jnp.where(jnp.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


def add_weight_decay(g: Array, p: Array, weight_decay: Array) -> Array:
    """L2 decay ``g.add(p, alpha=weight_decay)``, skipped (not multiplied by 0) when it is 0,
    so an inf or NaN parameter does not leak into the gradient, as in torch."""
    return jnp.where(weight_decay != 0, g + weight_decay * p, g)


def decoupled_decay(p: Array, lr: Array, weight_decay: Array) -> Array:
    """``p.mul_(1 - lr * weight_decay)``, skipped when ``weight_decay`` is 0."""
    return jnp.where(weight_decay != 0, p * (1 - lr * weight_decay), p)


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
