"""torch's multiplicative decays: StepLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR,
PolynomialLR. Formulas and checks: :mod:`optx.schedules.decay`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import optx.schedules.decay as F
from optx.optim.lr_scheduler.base import LRScheduler, _warn_get_lr_called_within_step
from optx.schedules.torch_schedule import HOST


class _Decay(LRScheduler):
    """A scheduler whose ``get_lr`` maps each group's lr and whose closed form maps each base
    lr: subclasses give the two one-group formulas."""

    def _chainable(self, lr: Any) -> Any:
        raise NotImplementedError

    def _closed_form(self, base_lr: Any) -> Any:
        raise NotImplementedError

    def get_lr(self) -> list[Any]:
        _warn_get_lr_called_within_step(self)
        return [self._chainable(group["lr"]) for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [self._closed_form(base_lr) for base_lr in self.base_lrs]


class StepLR(_Decay):
    """``torch.optim.lr_scheduler.StepLR``: the lr times ``gamma`` every ``step_size`` epochs
    (:func:`optx.schedules.step_lr`)."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _chainable(self, lr: Any) -> Any:
        return F.step_lr_chainable(HOST, lr, self.last_epoch, self._is_initial, self.step_size,
                                   self.gamma)

    def _closed_form(self, base_lr: Any) -> Any:
        return F.step_lr_closed_form(HOST, base_lr, self.last_epoch, self.step_size, self.gamma)


class MultiStepLR(_Decay):
    """``torch.optim.lr_scheduler.MultiStepLR``: the lr times ``gamma`` at each milestone
    (:func:`optx.schedules.multi_step_lr`)."""

    def __init__(self, optimizer: Any, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _chainable(self, lr: Any) -> Any:
        return F.multi_step_lr_chainable(HOST, lr, self.last_epoch, self._is_initial,
                                         list(self.milestones.elements()), self.gamma)

    def _closed_form(self, base_lr: Any) -> Any:
        return F.multi_step_lr_closed_form(HOST, base_lr, self.last_epoch,
                                           sorted(self.milestones.elements()), self.gamma)


class ConstantLR(_Decay):
    """``torch.optim.lr_scheduler.ConstantLR``: the lr times ``factor`` until ``total_iters``
    (:func:`optx.schedules.constant_lr`)."""

    def __init__(self, optimizer: Any, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        F.check_constant_lr(factor)
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _chainable(self, lr: Any) -> Any:
        return F.constant_lr_chainable(HOST, lr, self.last_epoch, self._is_initial, self.factor,
                                       self.total_iters)

    def _closed_form(self, base_lr: Any) -> Any:
        return F.constant_lr_closed_form(HOST, base_lr, self.last_epoch, self.factor,
                                         self.total_iters)


class LinearLR(_Decay):
    """``torch.optim.lr_scheduler.LinearLR``: the factor goes linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` (:func:`optx.schedules.linear_lr`)."""

    def __init__(self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        F.check_linear_lr(start_factor, end_factor)
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _chainable(self, lr: Any) -> Any:
        return F.linear_lr_chainable(HOST, lr, self.last_epoch, self._is_initial,
                                     self.start_factor, self.end_factor, self.total_iters)

    def _closed_form(self, base_lr: Any) -> Any:
        return F.linear_lr_closed_form(HOST, base_lr, self.last_epoch, self.start_factor,
                                       self.end_factor, self.total_iters)


class ExponentialLR(_Decay):
    """``torch.optim.lr_scheduler.ExponentialLR``: the lr times ``gamma`` every epoch
    (:func:`optx.schedules.exponential_lr`)."""

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _chainable(self, lr: Any) -> Any:
        return F.exponential_lr_chainable(HOST, lr, self.last_epoch, self._is_initial,
                                          self.gamma)

    def _closed_form(self, base_lr: Any) -> Any:
        return F.exponential_lr_closed_form(HOST, base_lr, self.last_epoch, self.gamma)


class PolynomialLR(_Decay):
    """``torch.optim.lr_scheduler.PolynomialLR``: polynomial decay to 0 over ``total_iters``
    (:func:`optx.schedules.polynomial_lr`)."""

    def __init__(self, optimizer: Any, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1) -> None:
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def _chainable(self, lr: Any) -> Any:
        return F.polynomial_lr_chainable(HOST, lr, self.last_epoch, self._is_initial,
                                         self.total_iters, self.power)

    def _closed_form(self, base_lr: Any) -> Any:
        return F.polynomial_lr_closed_form(HOST, base_lr, self.last_epoch, self.total_iters,
                                           self.power)
