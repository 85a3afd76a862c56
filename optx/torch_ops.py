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


class Lerp(NamedTuple):
    """A scalar lerp weight in a coefficient dict, to be prepared once per parameter dtype.

    torch picks its lerp formula from the weight in the tensor's type; the builder casts the
    coefficients per dtype and turns each ``Lerp`` into a :class:`PreparedLerp` there, so the
    choice is made once per step and dtype instead of once per leaf (fewer ops to compile).
    """

    weight: Array


class Packed(dict):
    """Coefficients that two kernels of one parameter read (Adam's first and second moment),
    handed to them as one vector on XLA:CPU, computed after every other coefficient (see
    :func:`optx.torch_optimizer._once_per_step`).

    XLA:CPU's scheduler queues a kernel when its last operand is computed. When the first
    moment's kernel and the second moment's wait last for different coefficients, every
    first-moment kernel is queued before any second-moment one, so XLA runs them all, then the
    others, and reads each gradient from memory twice. When both wait last for the same vector,
    both kernels of a leaf are queued together and run back to back while the gradient is in
    cache, as optax's do: 2-3 % of Adam's step at 1000 leaves, for a slice per coefficient in
    each kernel (Adam's per-leaf instructions 42 -> 47; optax's peer 54).
    """


jax.tree_util.register_pytree_node(
    Packed, lambda d: (list(d.values()), list(d)), lambda keys, xs: Packed(zip(keys, xs))
)


class PreparedLerp(NamedTuple):
    small: Array  # |w| < 0.5: torch's first formula
    coef: Array  # w, or w - 1 for the second formula


class Decay(NamedTuple):
    """A weight decay with the decoupled factor ``1 - lr * weight_decay`` already computed on
    the unrounded scalars, as torch does with Python floats; each leaf then only multiplies.
    ``value`` None: a constant 0, torch's ``if weight_decay != 0`` branch left out."""

    value: Array | None
    factor: Array | None = None


def decay(weight_decay: Array | None, lr: Array | None = None) -> Decay:
    """A :class:`Decay`; pass ``lr`` for decoupled (AdamW-style) decay. ``weight_decay`` None
    (the builder's value for a constant 0, see :mod:`optx.torch_optimizer`): no decay code."""
    if weight_decay is None or lr is None:
        return Decay(weight_decay)
    return Decay(weight_decay, 1 - lr * weight_decay)


def prepare_lerp(weight: Array) -> PreparedLerp:
    small = jnp.abs(weight) < 0.5
    return PreparedLerp(small, lax.select(small, weight, weight - 1))


def lerp(start: Array, end: Array, weight: Array | PreparedLerp) -> Array:
    """``start.lerp_(end, weight)`` for a scalar weight.

    torch computes ``start + w * (end - start)`` for ``|w| < 0.5`` and
    ``end - (end - start) * (1 - w)`` otherwise. The second is ``end + (w - 1) * diff`` exactly
    (negation is exact), so the choice is one select of the base and one of a scalar: fewer ops
    per leaf than selecting between the two full formulas.
    """
    w = weight if isinstance(weight, PreparedLerp) else prepare_lerp(weight)
    return lax.select(w.small, start, end) + w.coef * (end - start)


def _decay(weight_decay: Array | Decay | None) -> Decay:
    return weight_decay if isinstance(weight_decay, Decay) else decay(weight_decay)


def add_weight_decay(g: Array, p: Array, weight_decay: Array | Decay | None) -> Array:
    """L2 decay ``g.add(p, alpha=weight_decay)``; ``g`` itself for a constant 0 (None).

    torch skips it when ``weight_decay == 0``. A constant 0 leaves it out here too; a runtime
    value (a nonzero constant or a schedule, possibly 0 later) computes ``g + wd * p``, which is
    ``g`` exactly for ``wd == 0`` and every finite ``p``, so the skip needs no select (three
    instructions in every kernel that reads the decayed gradient, for every leaf). The one
    difference: a parameter that is already inf or NaN, with a runtime ``weight_decay == 0``,
    turns the gradient (and the state it feeds) NaN where torch's stays finite; torch's
    parameter is inf or NaN as well from then on.
    """
    wd = _decay(weight_decay)
    return g if wd.value is None else g + wd.value * p


def decoupled_decay(p: Array, lr: Array, weight_decay: Array | Decay | None) -> Array:
    """``p.mul_(1 - lr * weight_decay)``; ``p`` itself for a constant 0 (None). torch skips it
    when ``weight_decay == 0``, where the factor is exactly 1 and ``p * 1`` is ``p`` bit for
    bit (inf and NaN included), so a runtime value needs no select."""
    wd = _decay(weight_decay)
    if wd.value is None:
        return p
    factor = 1 - lr * wd.value if wd.factor is None else wd.factor
    return p * factor


def maybe_negate(g: Array, maximize: bool) -> Array:
    return -g if maximize else g


def weight_decay(
    g: Array, p: Array, lr: Array, weight_decay: Array | Decay | None, decoupled: bool
) -> tuple[Array, Array]:
    """The Adam family's decay: ``p.mul_(1 - lr * wd)`` if decoupled, else ``g += wd * p``.
    Returns ``(g, p)``."""
    if decoupled:
        return g, decoupled_decay(p, lr, weight_decay)
    return add_weight_decay(g, p, weight_decay), p


def adam_moment_coefficients(beta1: Array, beta2: Array) -> Packed:
    """What :func:`adam_moments` reads: one :class:`Packed` entry of a coefficient dict."""
    return Packed(one_minus_beta1=Lerp(1 - beta1), beta2=beta2, one_minus_beta2=1 - beta2)


def adam_moments(
    exp_avg: Array, exp_avg_sq: Array, g: Array, c: Packed
) -> tuple[Array, Array]:
    """``exp_avg.lerp_(g, 1 - beta1)`` and ``exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)``,
    with ``c`` from :func:`adam_moment_coefficients`."""
    m = lerp(exp_avg, g, c["one_minus_beta1"])
    v = exp_avg_sq * c["beta2"] + c["one_minus_beta2"] * g * g
    return m, v
