"""torch's CyclicLR. Formulas and checks: :mod:`optx.schedules.cyclic`."""

from __future__ import annotations

import types
from typing import Any, Callable

import optx.schedules.cyclic as F
from optx.optim.lr_scheduler.base import (
    LRScheduler,
    _check_optimizer,
    _format_param,
    _warn_get_lr_called_within_step,
)
from optx.optim.lr_scheduler.momentum import set_momentum, setup_momentum
from optx.schedules.torch_schedule import HOST


class CyclicLR(LRScheduler):
    """``torch.optim.lr_scheduler.CyclicLR``: the lr cycles between ``base_lr`` and ``max_lr``
    (and the momentum inversely) every step (:func:`optx.schedules.cyclic_lr`,
    :func:`optx.schedules.cyclic_momentum`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        base_lr: the lower boundary of the cycle, a float or one per param group (it replaces each
            group's ``lr`` at construction).
        max_lr: the upper boundary of the cycle, a float or one per param group; the amplitude
            ``max_lr - base_lr`` may be scaled by the policy.
        step_size_up: the number of steps in the rising half of a cycle.
        step_size_down: the number of steps in the falling half; ``None`` uses ``step_size_up``.
        mode: the scaling policy: ``'triangular'`` (none), ``'triangular2'`` (the amplitude halves
            every cycle) or ``'exp_range'`` (scaled by ``gamma ** step``); ignored when ``scale_fn``
            is given.
        gamma: the base of ``'exp_range'``'s scaling.
        scale_fn: a custom scaling policy, a function of one argument with values in ``[0, 1]``;
            ``None`` uses ``mode``.
        scale_mode: what ``scale_fn`` is called with: the cycle number (``'cycle'``) or the steps
            since the start (``'iterations'``).
        cycle_momentum: whether the momentum (``betas[0]`` for Adam-like optimizers) cycles
            inversely to the lr, between ``max_momentum`` and ``base_momentum``.
        base_momentum: the lower momentum boundary, a float or one per param group.
        max_momentum: the upper momentum boundary (the momentum at the start of a cycle), a float or
            one per param group.
        last_epoch: the index of the last batch (this scheduler steps per batch); ``-1`` starts the
            schedule, a larger value resumes it.

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1, momentum=0.9)
        >>> sched = optx.optim.lr_scheduler.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=2)
        >>> lrs = []
        >>> for epoch in range(6):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 4) for lr in lrs]
        [0.01, 0.055, 0.1, 0.055, 0.01, 0.055]
    """

    cycle_momentum: bool
    """Whether the momentum cycles (the ``cycle_momentum`` argument)."""
    use_beta1: bool
    """Whether the cycled momentum is ``betas[0]`` (Adam-like optimizers) rather than
    ``momentum``; set only when ``cycle_momentum`` is true."""

    def __init__(self, optimizer: Any, base_lr: Any, max_lr: Any,
                 step_size_up: int = 2000, step_size_down: int | None = None,
                 mode: str = "triangular", gamma: float = 1.0,
                 scale_fn: Callable[[Any], Any] | None = None, scale_mode: str = "cycle",
                 cycle_momentum: bool = True, base_momentum: Any = 0.8,
                 max_momentum: Any = 0.9, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        base_lrs = _format_param("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups, strict=True):
                group["lr"] = lr
        self.max_lrs = _format_param("max_lr", optimizer, max_lr)
        self.total_size, self.step_ratio = F.cyclic_sizes(step_size_up, step_size_down)
        _, self.scale_mode = F.cyclic_scale(mode, gamma, scale_fn, scale_mode)
        self.mode = mode
        self.gamma = gamma
        self._scale_fn_custom = scale_fn
        self.base_momentums, self.max_momentums = setup_momentum(
            self, optimizer, cycle_momentum, base_momentum, max_momentum, last_epoch)
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def _shape(self) -> F.CyclicShape:
        return F.CyclicShape(self.total_size, self.step_ratio, *F.cyclic_scale(
            self.mode, self.gamma, self._scale_fn_custom, self.scale_mode))

    def scale_fn(self, x: Any) -> Any:
        """The amplitude scaling policy: ``scale_fn`` if one was given, else ``mode``'s.

        Args:
            x: the cycle number (``scale_mode='cycle'``) or the step (``'iterations'``).

        Returns:
            The factor, in ``[0, 1]``, the amplitude ``max_lr - base_lr`` is multiplied by.
        """
        return self._shape().scale_fn(x)

    def get_lr(self) -> list[Any]:
        _warn_get_lr_called_within_step(self)
        scale_factor, scale = F.cyclic_position(HOST, self.last_epoch, self._shape())
        lrs = [F.cyclic_lr_value(base_lr, max_lr, scale_factor, scale)
               for base_lr, max_lr in zip(self.base_lrs, self.max_lrs, strict=True)]
        if self.cycle_momentum:
            for group, b, m in zip(self.optimizer.param_groups, self.base_momentums,
                                   self.max_momentums, strict=True):
                set_momentum(group, self.use_beta1,
                             F.cyclic_momentum_value(b, m, scale_factor, scale))
        return lrs

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        fn = state.pop("_scale_fn_custom")
        state["_scale_fn_custom"] = None
        if fn is not None and not isinstance(fn, types.FunctionType):
            state["_scale_fn_custom"] = fn.__dict__.copy()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        fn = state_dict.pop("_scale_fn_custom")
        super().load_state_dict(state_dict)
        if fn is not None:
            self._scale_fn_custom.__dict__.update(fn)
