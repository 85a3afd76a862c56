"""torch's OneCycleLR. Formulas and checks: :mod:`optx.schedules.one_cycle`."""

from __future__ import annotations

from typing import Any

import optx.schedules.one_cycle as F
from optx.optim.lr_scheduler.base import (
    LRScheduler,
    _check_optimizer,
    _format_param,
    _warn_get_lr_called_within_step,
)
from optx.optim.lr_scheduler.momentum import set_momentum, setup_momentum
from optx.schedules.torch_schedule import HOST


class OneCycleLR(LRScheduler):
    """``torch.optim.lr_scheduler.OneCycleLR``: the 1cycle policy, the lr (and inversely the
    momentum) annealed through torch's phases, each step reading the group's ``initial_lr``,
    ``max_lr``, ``min_lr`` and momenta (:func:`optx.schedules.one_cycle_lr`,
    :func:`optx.schedules.one_cycle_momentum`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        max_lr: the peak learning rate, a float or one per param group.
        total_steps: the number of steps of the cycle; ``None`` computes it as ``epochs *
            steps_per_epoch``.
        epochs: the number of epochs, with ``steps_per_epoch``, when ``total_steps`` is ``None``.
        steps_per_epoch: the number of steps per epoch, with ``epochs``.
        pct_start: the fraction of the cycle spent raising the lr.
        anneal_strategy: ``'cos'`` for cosine annealing, ``'linear'`` for linear.
        cycle_momentum: whether the momentum (``betas[0]`` for Adam-like optimizers) cycles
            inversely to the lr, between ``max_momentum`` and ``base_momentum``.
        base_momentum: the momentum at the peak lr, a float or one per param group.
        max_momentum: the momentum at the start and the end of the cycle, a float or one per param
            group.
        div_factor: the initial lr is ``max_lr / div_factor``.
        final_div_factor: the final lr is ``initial_lr / final_div_factor``.
        three_phase: a third phase that anneals from the initial lr to the final one (fast.ai's
            schedule); ``False`` anneals from the peak to the final lr directly.
        last_epoch: the index of the last batch (this scheduler steps per batch); ``-1`` starts the
            schedule, a larger value resumes it.

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1, momentum=0.9)
        >>> sched = optx.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=6)
        >>> lrs = []
        >>> for epoch in range(6):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 4) for lr in lrs]
        [0.04, 0.9944, 0.8117, 0.4626, 0.1335, 0.0]
    """

    cycle_momentum: bool
    """Whether the momentum cycles (the ``cycle_momentum`` argument)."""
    use_beta1: bool
    """Whether the cycled momentum is ``betas[0]`` (Adam-like optimizers) rather than
    ``momentum``; set only when ``cycle_momentum`` is true."""

    def __init__(self, optimizer: Any, max_lr: Any, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: Any = 0.85,
                 max_momentum: Any = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        self.total_steps = F.one_cycle_total_steps(total_steps, epochs, steps_per_epoch)
        self._schedule_phases = [p._asdict() for p in F.one_cycle_phases(
            self.total_steps, pct_start, three_phase)]
        F.check_one_cycle(pct_start, anneal_strategy)
        self._anneal_func_type = anneal_strategy
        max_lrs = _format_param("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for m, group in zip(max_lrs, optimizer.param_groups, strict=True):
                group.update(F.one_cycle_lr_points(m, div_factor, final_div_factor))
        setup_momentum(self, optimizer, cycle_momentum, base_momentum, max_momentum, last_epoch,
                       max_first=True)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        _warn_get_lr_called_within_step(self)
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(
                f"Tried to step {step_num} times. The specified number of total steps is "
                f"{self.total_steps}"
            )
        phases = [F.Phase(**p) for p in self._schedule_phases]
        lrs = []
        for group in self.optimizer.param_groups:
            lrs.append(F.one_cycle_value(HOST, step_num, phases, group, self._anneal_func_type))
            if self.cycle_momentum:
                set_momentum(group, self.use_beta1, F.one_cycle_value(
                    HOST, step_num, phases, group, self._anneal_func_type, momentum=True))
        return lrs
