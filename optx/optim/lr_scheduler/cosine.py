"""torch's CosineAnnealingLR and CosineAnnealingWarmRestarts. Formulas and checks:
:mod:`optx.schedules.cosine`."""

from __future__ import annotations

import math
from typing import Any

import optx.schedules.cosine as F
from optx.optim.lr_scheduler.base import (
    LRScheduler,
    _enable_get_lr_call,
    _param_groups_val_list,
    _warn_get_lr_called_within_step,
)
from optx.schedules.torch_schedule import HOST


class CosineAnnealingLR(LRScheduler):
    """``torch.optim.lr_scheduler.CosineAnnealingLR``: cosine annealing from the initial lr to
    ``eta_min`` over ``T_max`` epochs, recursively as torch (:func:`optx.schedules.
    cosine_annealing_lr`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        T_max: the number of epochs of the half cosine from the initial lr down to ``eta_min`` (the
            lr rises again after it, with period ``2 * T_max``).
        eta_min: the minimum learning rate.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.01)
        >>> lrs = []
        >>> for epoch in range(6):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 4) for lr in lrs]
        [0.1, 0.0868, 0.055, 0.0232, 0.01, 0.0232]
    """

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        _warn_get_lr_called_within_step(self)
        resumed = self._step_count == 1
        groups = self.optimizer.param_groups
        # As torch: base_lrs only where the formula reads them, so a group added later (no base
        # lr) follows the ratio branch, and zip raises torch's error where torch's does.
        if F.cosine_annealing_lr_reads_base_lr(self.last_epoch, self._is_initial, resumed,
                                               self.T_max):
            pairs = list(zip(self.base_lrs, groups, strict=True))
        else:
            pairs = [(None, group) for group in groups]
        return [
            F.cosine_annealing_lr_chainable(HOST, group["lr"], base_lr, self.last_epoch,
                                            self._is_initial, resumed, self.T_max, self.eta_min)
            for base_lr, group in pairs
        ]

    def _get_closed_form_lr(self) -> list[Any]:
        return [
            F.cosine_annealing_lr_closed_form(HOST, base_lr, self.last_epoch, self.T_max,
                                              self.eta_min)
            for base_lr in self.base_lrs
        ]


class CosineAnnealingWarmRestarts(LRScheduler):
    """``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``: cosine annealing restarted
    every ``T_i`` epochs, ``T_i`` growing by ``T_mult`` (:func:`optx.schedules.
    cosine_annealing_warm_restarts`). ``step(epoch)`` accepts fractional epochs, as torch.

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        T_0: the number of epochs until the first restart.
        T_mult: the factor (an int of at least 1) by which the period grows after each restart.
        eta_min: the minimum learning rate.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2)
        >>> lrs = []
        >>> for epoch in range(7):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 4) for lr in lrs]
        [0.1, 0.05, 0.1, 0.0854, 0.05, 0.0146, 0.1]
    """

    def __init__(self, optimizer: Any, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        F.check_warm_restarts(T_0, T_mult, eta_min)
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        _warn_get_lr_called_within_step(self)
        return [F.warm_restarts_value(HOST, base_lr, self.T_cur, self.T_i, self.eta_min)
                for base_lr in self.base_lrs]

    def step(self, epoch: Any = None) -> None:
        """Advances the schedule with torch's own bookkeeping of ``T_cur`` and ``T_i`` (no
        step-order warning, as in torch).

        Args:
            epoch: the epoch to set, possibly fractional (``epoch + i / iters`` for batch ``i``
                of ``iters`` within an epoch); ``None``: the next epoch.
        """
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** (n)
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        with _enable_get_lr_call(self):
            for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
                group["lr"] = lr
        self._last_lr = _param_groups_val_list(self.optimizer, "lr")
