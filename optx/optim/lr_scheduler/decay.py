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
    (:func:`optx.schedules.step_lr`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        step_size: the period of the decay, in epochs.
        gamma: the factor the lr is multiplied by every ``step_size`` epochs.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        >>> lrs = []
        >>> for epoch in range(6):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> lrs
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    """

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
    (:func:`optx.schedules.multi_step_lr`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        milestones: the epochs at which the lr decays (increasing; a repeated milestone decays that
            many times).
        gamma: the factor the lr is multiplied by at each milestone.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 5], gamma=0.1)
        >>> lrs = []
        >>> for epoch in range(7):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 6) for lr in lrs]
        [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]
    """

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
    (:func:`optx.schedules.constant_lr`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        factor: the factor the lr is multiplied by until the milestone (between 0 and 1).
        total_iters: the number of steps during which the lr is multiplied by ``factor``.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=3)
        >>> lrs = []
        >>> for epoch in range(5):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> lrs
        [0.05, 0.05, 0.05, 0.1, 0.1]
    """

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
    ``end_factor`` over ``total_iters`` (:func:`optx.schedules.linear_lr`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        start_factor: the factor the lr is multiplied by at the first epoch (in ``(0, 1]``).
        end_factor: the factor at the end of the linear change (in ``[0, 1]``).
        total_iters: the number of steps over which the factor goes from ``start_factor`` to
            ``end_factor``.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=3)
        >>> lrs = []
        >>> for epoch in range(5):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 6) for lr in lrs]
        [0.025, 0.05, 0.075, 0.1, 0.1]
    """

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
    (:func:`optx.schedules.exponential_lr`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        gamma: the factor the lr is multiplied by every epoch.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
        >>> lrs = []
        >>> for epoch in range(5):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> lrs
        [0.1, 0.05, 0.025, 0.0125, 0.00625]
    """

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
    (:func:`optx.schedules.polynomial_lr`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        total_iters: the number of steps over which the lr decays to 0.
        power: the power of the polynomial.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.PolynomialLR(opt, total_iters=4, power=2.0)
        >>> lrs = []
        >>> for epoch in range(6):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 6) for lr in lrs]
        [0.1, 0.05625, 0.025, 0.00625, 0.0, 0.0]
    """

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
