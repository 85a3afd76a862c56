"""torch's LambdaLR and MultiplicativeLR. Formulas: :mod:`optx.schedules.user_defined`."""

from __future__ import annotations

import types
from typing import Any

import optx.schedules.user_defined as F
from optx.optim.lr_scheduler.base import (
    LRScheduler,
    _format_lambdas,
    _warn_get_lr_called_within_step,
)
from optx.schedules.torch_schedule import HOST


class _WithLambdas(LRScheduler):
    """torch's state_dict for ``lr_lambdas``: a callable object's ``__dict__``, else None."""

    lr_lambdas: list[Any]
    """The ``lr_lambda`` functions, one per param group."""

    def state_dict(self) -> dict[str, Any]:
        state_dict = {key: value for key, value in self.__dict__.items()
                      if key not in ("optimizer", "lr_lambdas")}
        state_dict["lr_lambdas"] = [
            None if isinstance(fn, types.FunctionType) else fn.__dict__.copy()
            for fn in self.lr_lambdas
        ]
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        lr_lambdas = state_dict.pop("lr_lambdas")
        self.__dict__.update(state_dict)
        state_dict["lr_lambdas"] = lr_lambdas
        for idx, fn in enumerate(lr_lambdas):
            if fn is not None:
                self.lr_lambdas[idx].__dict__.update(fn)


class LambdaLR(_WithLambdas):
    """``torch.optim.lr_scheduler.LambdaLR``: the initial lr times ``lr_lambda(epoch)``
    (:func:`optx.schedules.lambda_lr`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        lr_lambda: a function of the epoch (an int) giving the factor the initial lr is multiplied
            by, or a list of such functions, one per param group.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lambda epoch: 0.5 ** epoch)
        >>> lrs = []
        >>> for epoch in range(5):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> lrs
        [0.1, 0.05, 0.025, 0.0125, 0.00625]
    """

    def __init__(self, optimizer: Any, lr_lambda: Any, last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        self.lr_lambdas = _format_lambdas(optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        _warn_get_lr_called_within_step(self)
        return [F.lambda_lr_value(HOST, base_lr, self.last_epoch, fn)
                for fn, base_lr in zip(self.lr_lambdas, self.base_lrs, strict=True)]


class MultiplicativeLR(_WithLambdas):
    """``torch.optim.lr_scheduler.MultiplicativeLR``: the current lr times
    ``lr_lambda(epoch)`` (:func:`optx.schedules.multiplicative_lr`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        lr_lambda: a function of the epoch (an int) giving the factor the current lr is multiplied
            by at each step, or a list of such functions, one per param group.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.MultiplicativeLR(opt, lr_lambda=lambda epoch: 0.9)
        >>> lrs = []
        >>> for epoch in range(5):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 6) for lr in lrs]
        [0.1, 0.09, 0.081, 0.0729, 0.06561]
    """

    def __init__(self, optimizer: Any, lr_lambda: Any, last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        self.lr_lambdas = _format_lambdas(optimizer, lr_lambda)
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        _warn_get_lr_called_within_step(self)
        return [
            F.multiplicative_lr_chainable(HOST, group["lr"], self.last_epoch, self._is_initial,
                                          fn)
            for fn, group in zip(self.lr_lambdas, self.optimizer.param_groups, strict=True)
        ]
