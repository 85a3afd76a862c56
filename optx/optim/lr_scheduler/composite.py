"""torch's SequentialLR and ChainedScheduler: schedulers run one after another, or all on the
same lr. Checks: :mod:`optx.schedules.composite`."""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Sequence

import optx.schedules.composite as F
from optx.optim.lr_scheduler.base import LRScheduler, _param_groups_val_list
from optx.optim.lr_scheduler.plateau import ReduceLROnPlateau


def _check_members(owner: str, optimizer: Any, schedulers: Sequence[Any]) -> None:
    for i, scheduler in enumerate(schedulers):
        if not hasattr(scheduler, "optimizer"):
            raise TypeError(f"{owner} at index {i} should have `optimizer` as its attribute.")
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(
                f"{owner} does not support `ReduceLROnPlateau` scheduler as it "
                "requires additional kwargs to be specified when calling `step`, "
                f"but got one at index {i} in the given schedulers sequence."
            )
        if optimizer != scheduler.optimizer:
            raise ValueError(
                f"{owner} expects all schedulers to belong to the same optimizer, but "
                f"got scheduler {scheduler.__class__.__name__} at index {i} has "
                f"{scheduler.optimizer}, which is different from "
                f"{optimizer.__class__.__name__}."
            )


class _Composite(LRScheduler):
    """torch's state_dict of a composite: its members' state_dicts under ``_schedulers``."""

    _schedulers: list[Any]

    def state_dict(self) -> dict[str, Any]:
        state_dict = {key: value for key, value in self.__dict__.items()
                      if key not in ("optimizer", "_schedulers")}
        state_dict["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _schedulers = state_dict.pop("_schedulers")
        self.__dict__.update(state_dict)
        state_dict["_schedulers"] = _schedulers
        for s, sd in zip(self._schedulers, _schedulers):
            s.load_state_dict(sd)


class SequentialLR(_Composite):
    """``torch.optim.lr_scheduler.SequentialLR``: ``schedulers[i]`` runs from
    ``milestones[i - 1]`` on, restarted at its milestone (:func:`optx.schedules.sequential_lr`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        schedulers: the schedulers, built on ``optimizer``, run one after the other.
        milestones: the epochs at which the next scheduler takes over (one fewer than
            ``schedulers``, increasing).
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> warmup = optx.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=2)
        >>> decay = optx.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
        >>> sched = optx.optim.lr_scheduler.SequentialLR(opt, [warmup, decay], milestones=[2])
        >>> lrs = []
        >>> for epoch in range(6):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 6) for lr in lrs]
        [0.01, 0.055, 0.1, 0.05, 0.025, 0.0125]
    """

    def __init__(self, optimizer: Any, schedulers: list[Any], milestones: list[int],
                 last_epoch: int = -1) -> None:
        name = self.__class__.__name__
        if len(schedulers) < 1:
            F.check_sequential(len(schedulers), len(milestones), name)
        _check_members(name, optimizer, schedulers)
        F.check_sequential(len(schedulers), len(milestones), name)
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self.recursive_undo()
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = schedulers[idx].get_last_lr()

    def recursive_undo(self, sched: Any = None) -> None:
        """Undoes the step each member made at its construction (members of members too).

        Args:
            sched: the scheduler to undo; ``None`` starts from this one's members.
        """
        scheds = self if sched is None else sched
        if hasattr(scheds, "_schedulers"):
            for s in scheds._schedulers:
                self.recursive_undo(s)
        elif hasattr(scheds, "last_epoch"):
            scheds.last_epoch -= 1

    def step(self) -> None:  # type: ignore[override]
        """Advances the epoch: the current member steps, or the next one takes over at its
        milestone (restarted from its ``initial_lr`` schedule)."""
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()


class ChainedScheduler(_Composite):
    """``torch.optim.lr_scheduler.ChainedScheduler``: every member steps, in order, on the same
    lr (:func:`optx.schedules.chained_scheduler`).

    Args:
        schedulers: the schedulers, all on one optimizer, stepped in this order at every ``step()``.
        optimizer: the wrapped optimizer; ``None`` takes the first scheduler's.

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> L = optx.optim.lr_scheduler
        >>> sched = L.ChainedScheduler([L.ConstantLR(opt, factor=0.5, total_iters=2),
        ...                             L.ExponentialLR(opt, gamma=0.9)])
        >>> lrs = []
        >>> for epoch in range(5):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 6) for lr in lrs]
        [0.05, 0.045, 0.081, 0.0729, 0.06561]
    """

    def __init__(self, schedulers: Sequence[Any], optimizer: Any = None) -> None:
        name = self.__class__.__name__
        F.check_chained(len(schedulers), name)
        optimizer = optimizer or schedulers[0].optimizer
        _check_members(name, optimizer, schedulers)
        self._schedulers = list(schedulers)
        self.optimizer = optimizer
        self._last_lr = _param_groups_val_list(self._schedulers[-1].optimizer, "lr")

    def step(self) -> None:  # type: ignore[override]
        """Steps every member, in order, each on the lr the previous one left."""
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = _param_groups_val_list(self._schedulers[-1].optimizer, "lr")
