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
    (:func:`optx.schedules.lambda_lr`)."""

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
    ``lr_lambda(epoch)`` (:func:`optx.schedules.multiplicative_lr`)."""

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
