"""``torch.nn.utils``' gradient clipping for gradient pytrees, for ``optx.optim`` loops, and the
two other things torch does to ``.grad`` between steps: accumulation and skipping a step whose
gradients are not finite.

JAX arrays are immutable, so where torch clips ``p.grad`` in place these return the clipped
gradients: ``grads, norm = optx.optim.clip_grad_norm_(grads, 1.0)`` then ``opt.step(grads)``.
(Inside a jitted functional step, chain :func:`optx.clip_grad_norm`,
:func:`optx.accumulate_gradients` and :func:`optx.apply_if_finite` instead.)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from optx.clipping import clip_by_total_norm, clip_grad_value, total_norm
from optx.transformation import EmptyState


def clip_grad_norm_(
    grads: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
    foreach: Any = None,
) -> tuple[Any, jax.Array]:
    """``torch.nn.utils.clip_grad_norm_``: returns ``(clipped_grads, total_norm)``.

    Args:
        grads: a pytree of gradients (``None`` leaves stay ``None``, as torch skips parameters
            without a gradient).
        max_norm: the largest total norm the clipped gradients may have.
        norm_type: the order ``p`` of the norm; ``float('inf')`` for the largest entry.
        error_if_nonfinite: raise torch's ``RuntimeError`` when the total norm is NaN or Inf.
        foreach: accepted for torch's signature and ignored (XLA fuses the loop).

    Returns:
        ``(clipped_grads, total_norm)``, the norm taken before clipping, as torch returns it.

    Example:
        >>> import jax.numpy as jnp, optx
        >>> grads, norm = optx.optim.clip_grad_norm_({"w": jnp.array([3.0, 4.0])}, 1.0)
        >>> float(norm), [round(float(g), 6) for g in grads["w"]]
        (5.0, [0.6, 0.8])
    """
    del foreach
    return clip_by_total_norm(grads, max_norm, norm_type, error_if_nonfinite)


def clip_grad_value_(grads: Any, clip_value: float, foreach: Any = None) -> Any:
    """``torch.nn.utils.clip_grad_value_``: returns the gradients clamped to
    ``[-clip_value, clip_value]``.

    Args:
        grads: a pytree of gradients (``None`` leaves stay ``None``).
        clip_value: the largest absolute value an entry may have.
        foreach: accepted for torch's signature and ignored.

    Returns:
        The clamped gradients (torch edits ``p.grad`` in place and returns ``None``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> optx.optim.clip_grad_value_(jnp.array([-2.0, 0.5, 3.0]), 1.0).tolist()
        [-1.0, 0.5, 1.0]
    """
    del foreach
    clipped, _ = clip_grad_value(clip_value).update(grads, EmptyState())
    return clipped


def get_total_norm(tensors: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: Any = None) -> jax.Array:
    """``torch.nn.utils.get_total_norm``: the norm of the per-leaf norms.

    Args:
        tensors: a pytree of arrays (gradients, usually).
        norm_type: the order ``p`` of the norms; ``float('inf')`` for the largest entry.
        error_if_nonfinite: raise torch's ``RuntimeError`` when the norm is NaN or Inf.
        foreach: accepted for torch's signature and ignored.

    Returns:
        The total norm, a scalar array (:func:`optx.total_norm`).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> float(optx.optim.get_total_norm([jnp.array([3.0]), jnp.array([4.0])]))
        5.0
    """
    del foreach
    return total_norm(tensors, norm_type, error_if_nonfinite)


def _is_none(x: Any) -> bool:
    return x is None


def accumulate(grads: Any, new: Any) -> Any:
    """torch's ``.grad`` accumulation over several ``backward()`` calls, for gradient pytrees.

    ``grads`` is the accumulator (``None`` after :meth:`~optx.optim.Optimizer.zero_grad`,
    which returns ``None``) and ``new`` the gradients of one more backward pass. Leaf by leaf,
    as torch's ``p.grad``: ``None + g = g`` (the first backward that reaches ``p``),
    ``acc + None = acc`` (a backward that does not reach ``p`` leaves its ``.grad``), ``None +
    None = None`` (still no gradient: the step skips ``p``) and ``acc + g = acc + g``. A whole
    ``None`` on either side is a tree of ``None`` leaves::

        grads = optimizer.zero_grad()              # None
        for x, y in micro_batches:
            loss, g = jax.value_and_grad(loss_fn)(optimizer.params, x, y)
            grads = optx.optim.accumulate(grads, g)   # loss.backward()
        optimizer.step(grads)

    Args:
        grads: the gradients accumulated so far, a pytree shaped like the params with ``None``
            leaves allowed, or ``None``.
        new: the gradients to add, shaped like ``grads`` (``None`` leaves allowed), or ``None``.

    Returns:
        The sum, shaped like the params; new arrays (nothing is changed in place).

    Raises:
        ValueError: the two pytrees have different structures (their paths are named).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> grads = optx.optim.accumulate(None, {"w": jnp.array([1.0]), "b": None})
        >>> grads = optx.optim.accumulate(grads, {"w": jnp.array([2.0]), "b": jnp.array([5.0])})
        >>> grads["w"].tolist(), grads["b"].tolist()
        ([3.0], [5.0])
    """
    if grads is None:
        return new
    if new is None:
        return grads
    a_leaves, a_def = jax.tree_util.tree_flatten(grads, is_leaf=_is_none)
    b_leaves, b_def = jax.tree_util.tree_flatten(new, is_leaf=_is_none)
    if a_def != b_def:  # type: ignore[operator]  # PyTreeDef has no stubs
        raise ValueError(
            "accumulate(grads, new): the gradients have different structures: "
            f"{a_def} and {b_def}")
    summed = [b if a is None else a if b is None else jnp.add(a, b)
              for a, b in zip(a_leaves, b_leaves)]
    return jax.tree_util.tree_unflatten(a_def, summed)


def all_finite(grads: Any) -> bool:
    """Whether every entry of every gradient is finite: the test torch's ``GradScaler`` makes
    before it skips ``optimizer.step()`` (``found_inf``).

    For a loop that skips a step whose gradients hold an Inf or a NaN::

        if optx.optim.all_finite(grads):
            optimizer.step(grads)

    ``None`` leaves (parameters without a gradient) are skipped. The result is a Python
    ``bool``, so it waits for the gradients; inside a jitted functional step use
    :func:`optx.apply_if_finite`, which decides on the device.

    Args:
        grads: a pytree of gradients (``None`` leaves allowed), or ``None``.

    Returns:
        ``True`` when every entry is finite (also when there is no gradient at all).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> optx.optim.all_finite({"w": jnp.array([1.0, 2.0]), "b": None})
        True
        >>> optx.optim.all_finite({"w": jnp.array([1.0, jnp.inf])})
        False
    """
    leaves = [x for x in jax.tree_util.tree_leaves(grads) if x is not None]
    if not leaves:
        return True
    return bool(jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])))


__all__ = ["accumulate", "all_finite", "clip_grad_norm_", "clip_grad_value_", "get_total_norm"]
