"""torch's gradient clipping (``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``) as
gradient transformations.

Put them first in a chain, where torch users call them between ``backward()`` and ``step()``::

    tx = optx.chain(optx.clip_grad_norm(1.0), optx.adamw(1e-3))

:func:`total_norm` and :func:`clip_by_total_norm` are the pure functions behind them, for code
(the ``optx.optim`` adapter) that acts on a gradient pytree directly.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from optx.transformation import EmptyState, GradientTransformation, Params, Updates

_NONFINITE = (
    "The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it "
    "cannot be clipped. To disable this error and scale the gradients by the non-finite norm "
    "anyway, set `error_if_nonfinite=False`"
)


def _leaves(tree: Any) -> list[jax.Array]:
    # None leaves are parameters without a gradient: torch skips ``p.grad is None``.
    return [jnp.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _raise_if_nonfinite(norm: Any, *, norm_type: float) -> None:
    if not bool(jnp.isfinite(norm)):
        raise RuntimeError(_NONFINITE.format(norm_type=norm_type))


def total_norm(
    grads: Updates, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> jax.Array:
    """torch's ``_get_total_norm``: the ``norm_type``-norm of the per-leaf ``norm_type``-norms.

    Like torch, each leaf's norm is taken first (``vector_norm(g, p)``) and the total is the norm
    of the stacked leaf norms, so the rounding is torch's. ``norm_type=inf`` is the largest
    absolute entry. An empty tree has norm ``0.0``.

    ``error_if_nonfinite=True`` raises torch's ``RuntimeError`` when the norm is NaN or Inf. That
    needs a concrete value: outside ``jit`` it raises here; under ``jit`` the check runs through
    ``jax.debug.callback``, so the error surfaces when the computation runs (wrapped by JAX's
    runtime error, with torch's message inside) instead of at this call.

    Args:
        grads: a pytree of gradients (``None`` leaves are skipped, as torch skips parameters
            without a gradient).
        norm_type: the order ``p`` of the norms; ``float('inf')`` for the largest entry.
        error_if_nonfinite: raise torch's ``RuntimeError`` when the norm is NaN or Inf.

    Returns:
        The total norm, a scalar array.
    """
    norm_type = float(norm_type)
    leaves = _leaves(grads)
    if not leaves:
        return jnp.asarray(0.0)
    order: Any = norm_type  # jnp's stubs say int | str; float orders (2.0, inf) work
    norms = [jnp.linalg.vector_norm(g.ravel(), ord=order) for g in leaves]
    norm = jnp.linalg.vector_norm(jnp.stack(norms), ord=order)
    if error_if_nonfinite:
        if isinstance(norm, jax.core.Tracer):
            jax.debug.callback(functools.partial(_raise_if_nonfinite, norm_type=norm_type), norm)
        else:
            _raise_if_nonfinite(norm, norm_type=norm_type)
    return norm


def clip_by_total_norm(
    grads: Updates, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> tuple[Updates, jax.Array]:
    """Pure ``torch.nn.utils.clip_grad_norm_``: returns ``(clipped_grads, total_norm)``.

    ``clip_coef = max_norm / (total_norm + 1e-6)``, clamped to at most 1 and multiplied into
    every gradient, also when it is 1 (torch avoids the branch the same way).

    Args:
        grads: a pytree of gradients (``None`` leaves stay ``None``).
        max_norm: the largest total norm the clipped gradients may have.
        norm_type: the order ``p`` of the norm (see :func:`total_norm`).
        error_if_nonfinite: raise torch's ``RuntimeError`` when the total norm is NaN or Inf.

    Returns:
        ``(clipped_grads, total_norm)``, the norm taken before clipping.
    """
    norm = total_norm(grads, norm_type, error_if_nonfinite)
    coef = jnp.minimum(float(max_norm) / (norm + 1e-6), 1.0)

    def scale(g):
        if g is None:
            return None
        g = jnp.asarray(g)
        # torch multiplies each gradient by the coefficient moved to its device; the product
        # keeps the gradient's dtype.
        return (g * coef.astype(g.real.dtype)).astype(g.dtype)

    return jax.tree_util.tree_map(scale, grads, is_leaf=lambda x: x is None), norm


def clip_grad_norm(
    max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> GradientTransformation:
    r"""Scales the gradients so their total norm is at most ``max_norm``, like
    ``torch.nn.utils.clip_grad_norm_``.

    .. math::
       \begin{aligned}
         &\mathit{total\_norm} = \big\|\,(\|g_1\|_p, \dots, \|g_n\|_p)\,\big\|_p
            \qquad \text{(} p=\infty\text{: } \max_i \max |g_i| \text{)} \\
         &\mathit{clip\_coef} = \min\Big(\frac{\mathit{max\_norm}}
            {\mathit{total\_norm} + 10^{-6}},\ 1\Big) \\
         &g_i \leftarrow \mathit{clip\_coef}\cdot g_i
       \end{aligned}

    Args:
        max_norm: max norm of the gradients.
        norm_type: type of the p-norm; ``float('inf')`` for the infinity norm.
        error_if_nonfinite: raise torch's ``RuntimeError`` when the total norm is NaN or Inf.
            Outside ``jit`` it raises during ``update``; under ``jit`` it is raised through
            ``jax.debug.callback`` when the step runs (see :func:`total_norm`). Otherwise the
            gradients are scaled by the non-finite coefficient, as torch does.

    The state is empty; the total norm is not kept (torch returns it; use :func:`total_norm`).
    """

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        clipped, _ = clip_by_total_norm(updates, max_norm, norm_type, error_if_nonfinite)
        return clipped, state

    return GradientTransformation(init, update)


def clip_grad_value(clip_value: float) -> GradientTransformation:
    r"""Clamps every gradient entry to ``[-clip_value, clip_value]``, like
    ``torch.nn.utils.clip_grad_value_``.

    .. math::
       g \leftarrow \operatorname{clamp}(g,\ -\mathit{clip\_value},\ \mathit{clip\_value})

    Args:
        clip_value: maximum allowed absolute value of the gradients.
    """
    clip_value = float(clip_value)

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args

        def clamp(path, g):
            if g is None:
                return None
            g = jnp.asarray(g)
            if jnp.iscomplexobj(g):
                # torch's clamp refuses complex tensors; jnp.maximum would order them
                # lexicographically and clamp the real part only.
                raise NotImplementedError(
                    f"clamp is not supported for complex types (the gradient at "
                    f"{jax.tree_util.keystr(path) or '<root>'} has dtype {g.dtype})"
                )
            # clamp_min then clamp_max, as torch's foreach path does
            return jnp.minimum(jnp.maximum(g, -clip_value), clip_value).astype(g.dtype)

        return jax.tree_util.tree_map_with_path(
            clamp, updates, is_leaf=lambda x: x is None
        ), state

    return GradientTransformation(init, update)
