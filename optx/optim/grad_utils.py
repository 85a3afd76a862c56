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
    """``torch.nn.utils.clip_grad_norm_``: returns ``(clipped_grads, total_norm)``."""
    del foreach
    return clip_by_total_norm(grads, max_norm, norm_type, error_if_nonfinite)


def clip_grad_value_(grads: Any, clip_value: float, foreach: Any = None) -> Any:
    """``torch.nn.utils.clip_grad_value_``: returns the gradients clamped to
    ``[-clip_value, clip_value]``."""
    del foreach
    clipped, _ = clip_grad_value(clip_value).update(grads, EmptyState())
    return clipped


def get_total_norm(tensors: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: Any = None) -> jax.Array:
    """``torch.nn.utils.get_total_norm``: the norm of the per-leaf norms."""
    del foreach
    return total_norm(tensors, norm_type, error_if_nonfinite)


__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm"]
