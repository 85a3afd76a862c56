"""The way back to torch: an ``optx.optim`` state_dict as ``torch.optim.*.load_state_dict``
takes it.

``Optimizer.state_dict()`` is torch's layout already (state keyed by parameter index, torch's
state names, ``param_groups`` with torch's keys); only its arrays are numpy arrays, which torch's
``load_state_dict`` cannot cast. :func:`to_torch_state_dict` turns each into a tensor. torch is
not a dependency of optx: it is imported when the function is called.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _tensor(torch: Any, value: Any) -> Any:
    array = np.asarray(value)
    if array.dtype.kind == "V" or array.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        # ml_dtypes' float types: no numpy counterpart in torch.from_numpy; through float32.
        target = getattr(torch, array.dtype.name)
        return torch.from_numpy(array.astype(np.float32)).to(target)
    return torch.from_numpy(np.array(array, copy=True))


def _convert(torch: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _convert(torch, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(torch, v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)) or type(value).__module__.startswith("jax"):
        return _tensor(torch, value)
    return value


def to_torch_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """An ``optx.optim`` optimizer's ``state_dict()`` with every array a ``torch.Tensor``: what
    ``torch.optim.<Same>.load_state_dict`` takes, so that torch continues the trajectory.

    The way back to torch is one call::

        torch_opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        torch_opt.load_state_dict(optx.optim.to_torch_state_dict(opt.state_dict()))

    Arrays in ``state`` (and in LBFGS's lists) become CPU tensors of the same dtype and shape
    (torch's ``load_state_dict`` then casts them to each parameter's dtype and device, as it
    does for its own checkpoints; ``step`` stays float32); ``param_groups`` and Python numbers
    are kept. A dict loaded with :func:`optx.optim.load` converts the same way. The result can
    also be given to ``torch.save``. torch is imported here, not by optx.

    Args:
        state_dict: the result of :meth:`optx.optim.Optimizer.state_dict` (or of
            :func:`optx.optim.load` of one).

    Returns:
        A new dict laid out as the input, with tensors for arrays; the input is not changed.

    Raises:
        ImportError: torch is not installed.

    Example:
        >>> import jax.numpy as jnp, optx, torch
        >>> opt = optx.optim.Adam([jnp.ones(2)], lr=0.1)
        >>> opt.step([jnp.ones(2)])
        >>> sd = optx.optim.to_torch_state_dict(opt.state_dict())
        >>> type(sd["state"][0]["exp_avg"]).__name__, sd["state"][0]["step"].dtype
        ('Tensor', torch.float32)
        >>> torch.optim.Adam([torch.ones(2)], lr=0.1).load_state_dict(sd)
    """
    import torch

    return _convert(torch, state_dict)


__all__ = ["to_torch_state_dict"]
