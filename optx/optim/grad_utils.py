"""``torch.nn.utils``' gradient clipping for gradient pytrees, for ``optx.optim`` loops.

JAX arrays are immutable, so where torch clips ``p.grad`` in place these return the clipped
gradients: ``grads, norm = optx.optim.clip_grad_norm_(grads, 1.0)`` then ``opt.step(grads)``.
(Inside a jitted functional step, chain :func:`optx.clip_grad_norm` instead.)
"""

from __future__ import annotations

from typing import Any

import jax

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


__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm"]
