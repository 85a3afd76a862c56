"""``torch.optim.lr_scheduler`` for :class:`optx.optim.Optimizer`.

Each scheduler keeps torch's protocol (construction performs a step, ``last_epoch``,
``base_lrs``, ``initial_lr`` in the groups, ``step()``, ``get_last_lr()``, ``state_dict()``)
and takes its formulas from :mod:`optx.schedules`: one :class:`~optx.schedules.TorchSchedule`
per group, built from the group's ``initial_lr``, whose ``step_map(e)`` is torch's ``get_lr``
at epoch ``e`` as the affine map ``lr -> a * lr + b``. Applying it to the group's current lr
(rather than reading the closed form) keeps torch's behaviour when something else edits the lr
(a ChainedScheduler, a user).
"""

from __future__ import annotations

import math
import warnings
from bisect import bisect_right
from typing import Any, Callable, Sequence

from optx import schedules as S

__all__ = [
    "LRScheduler", "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR",
    "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR", "SequentialLR",
    "ChainedScheduler", "ReduceLROnPlateau", "CyclicLR", "CosineAnnealingWarmRestarts",
    "OneCycleLR",
]

_ORDER_WARNING = (
    "Detected call of `lr_scheduler.step()` before `optimizer.step()`. "
    "In PyTorch 1.1.0 and later, you should call them in the opposite order: "
    "`optimizer.step()` before `lr_scheduler.step()`.  Failure to do this "
    "will result in PyTorch skipping the first value of the learning rate schedule. "
    "See more details at "
    "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"
)


def _format_param(name: str, optimizer: Any, value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. "
                f"{name} has {len(value)} values, param_groups has "
                f"{len(optimizer.param_groups)}."
            )
        return list(value)
    return [value] * len(optimizer.param_groups)


_per_group = _format_param


def _f(x: Any) -> float:
    return float(x)


class LRScheduler:
    """torch's ``LRScheduler`` protocol; subclasses supply :meth:`_schedule`."""

    _schedules: list[Any]
    _has_closed_form = False

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when "
                        "resuming scheduler with last_epoch >= 0.\n"
                        "This typically happens when:\n"
                        "1. You're trying to resume training from a checkpoint but haven't "
                        "properly loaded the optimizer state\n"
                        "2. You're using last_epoch >= 0 for a fresh training run (not "
                        "recommended)"
                    )
        self.base_lrs: list[Any] = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._build_schedules()
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def _build_schedules(self) -> None:
        self._schedules = [self._schedule(b, i) for i, b in enumerate(self.base_lrs)]

    def _schedule(self, base_lr: float, index: int = 0) -> Any:
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        return self._last_lr

    def get_lr(self) -> list[float]:
        """torch's ``get_lr`` at ``last_epoch``, applied to each group's current lr."""
        out = []
        for sched, group in zip(self._schedules, self.optimizer.param_groups):
            a, b = sched.step_map(self.last_epoch)
            out.append(_f(a) * group["lr"] + _f(b))
        return out

    def _closed_form(self, epoch: int) -> list[float]:
        return [_f(s(epoch)) for s in self._schedules]

    def _warn_order(self) -> None:
        if self._step_count == 1 and not getattr(self.optimizer, "_step_called", False):
            warnings.warn(_ORDER_WARNING, UserWarning, stacklevel=3)

    def step(self, epoch: int | None = None) -> None:
        self._warn_order()
        self._step_count += 1
        self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            values = self._restart_values(epoch)
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._after_lr()
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _restart_values(self, epoch: int) -> list[float]:
        # torch's _update_lr(epoch): the closed form where the class has one (Step, MultiStep,
        # Constant, Linear, Exponential, Polynomial, CosineAnnealing), else get_lr() at the new
        # epoch (what SequentialLR's restart of a scheduler at epoch 0 relies on).
        if self._has_closed_form:
            return self._closed_form(epoch)
        return self.get_lr()

    def _after_lr(self) -> None:
        """Hook for momentum cycling."""

    def state_dict(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.__dict__.items()
            if k not in ("optimizer", "_schedules") and not callable(v)
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)
        self._build_schedules()


class LambdaLR(LRScheduler):
    """``torch.optim.lr_scheduler.LambdaLR`` with torch's protocol.

    The formula is :func:`optx.schedules.lambda_lr`."""

    def __init__(self, optimizer: Any, lr_lambda: Any, last_epoch: int = -1) -> None:
        self.lr_lambdas = _format_param("lr_lambda", optimizer, lr_lambda)
        self._fns = list(self.lr_lambdas)
        super().__init__(optimizer, last_epoch)

    def _build_schedules(self) -> None:
        self._schedules = [S.lambda_lr(b, f) for b, f in zip(self.base_lrs, self._fns)]

    def get_lr(self) -> list[float]:
        return self._closed_form(self.last_epoch)

    def state_dict(self) -> dict[str, Any]:
        sd = {k: v for k, v in self.__dict__.items()
              if k not in ("optimizer", "_schedules", "lr_lambdas", "_fns")}
        sd["lr_lambdas"] = [None] * len(self._fns)
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        state_dict.pop("lr_lambdas", None)
        super().load_state_dict(state_dict)


class MultiplicativeLR(LambdaLR):
    """``torch.optim.lr_scheduler.MultiplicativeLR`` with torch's protocol.

    The formula is :func:`optx.schedules.multiplicative_lr`."""

    def _build_schedules(self) -> None:
        self._schedules = [S.multiplicative_lr(b, f) for b, f in zip(self.base_lrs, self._fns)]

    def get_lr(self) -> list[float]:
        # torch: the current lr times lr_lambda(epoch), except in the step made at construction
        # (a SequentialLR restart at epoch 0 does multiply).
        if not getattr(self, "_is_initial", False):
            return [g["lr"] * f(self.last_epoch)
                    for g, f in zip(self.optimizer.param_groups, self._fns)]
        return [g["lr"] for g in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """``torch.optim.lr_scheduler.StepLR`` with torch's protocol.

    The formula is :func:`optx.schedules.step_lr`."""

    _has_closed_form = True

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def _schedule(self, base_lr: float, index: int = 0) -> Any:
        return S.step_lr(base_lr, self.step_size, self.gamma)


class MultiStepLR(LRScheduler):
    """``torch.optim.lr_scheduler.MultiStepLR`` with torch's protocol.

    The formula is :func:`optx.schedules.multi_step_lr`."""

    _has_closed_form = True

    def __init__(self, optimizer: Any, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones, self.gamma = list(milestones), gamma
        super().__init__(optimizer, last_epoch)

    def _schedule(self, base_lr: float, index: int = 0) -> Any:
        return S.multi_step_lr(base_lr, self.milestones, self.gamma)


class ConstantLR(LRScheduler):
    """``torch.optim.lr_scheduler.ConstantLR`` with torch's protocol.

    The formula is :func:`optx.schedules.constant_lr`."""

    _has_closed_form = True

    def __init__(self, optimizer: Any, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        if factor > 1.0 or factor < 0:
            raise ValueError(
                "Constant multiplicative factor expected to be between 0 and 1."
            )
        self.factor, self.total_iters = factor, total_iters
        super().__init__(optimizer, last_epoch)

    def _schedule(self, base_lr: float, index: int = 0) -> Any:
        return S.constant_lr(base_lr, self.factor, self.total_iters)


class LinearLR(LRScheduler):
    """``torch.optim.lr_scheduler.LinearLR`` with torch's protocol.

    The formula is :func:`optx.schedules.linear_lr`."""

    _has_closed_form = True

    def __init__(self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or "
                "equal to 1."
            )
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _schedule(self, base_lr: float, index: int = 0) -> Any:
        return S.linear_lr(base_lr, self.start_factor, self.end_factor, self.total_iters)


class ExponentialLR(LRScheduler):
    """``torch.optim.lr_scheduler.ExponentialLR`` with torch's protocol.

    The formula is :func:`optx.schedules.exponential_lr`."""

    _has_closed_form = True

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _schedule(self, base_lr: float, index: int = 0) -> Any:
        return S.exponential_lr(base_lr, self.gamma)


class PolynomialLR(LRScheduler):
    """``torch.optim.lr_scheduler.PolynomialLR`` with torch's protocol.

    The formula is :func:`optx.schedules.polynomial_lr`."""

    _has_closed_form = True

    def __init__(self, optimizer: Any, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1) -> None:
        self.total_iters, self.power = total_iters, power
        super().__init__(optimizer, last_epoch)

    def _schedule(self, base_lr: float, index: int = 0) -> Any:
        return S.polynomial_lr(base_lr, self.total_iters, self.power)


class CosineAnnealingLR(LRScheduler):
    """``torch.optim.lr_scheduler.CosineAnnealingLR`` with torch's protocol.

    The formula is :func:`optx.schedules.cosine_annealing_lr`."""

    _has_closed_form = True

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def _schedule(self, base_lr: float, index: int = 0) -> Any:
        return S.cosine_annealing_lr(base_lr, self.T_max, self.eta_min)


class CosineAnnealingWarmRestarts(LRScheduler):
    """``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` with torch's protocol.

    The formula is :func:`optx.schedules.cosine_annealing_warm_restarts`."""

    def __init__(self, optimizer: Any, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        if T_0 <= 0 or not isinstance(T_0, int):
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if T_mult < 1 or not isinstance(T_mult, int):
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        self.T_0, self.T_i, self.T_mult, self.eta_min = T_0, T_0, T_mult, eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def _schedule(self, base_lr: float, index: int = 0) -> Any:
        return S.cosine_annealing_warm_restarts(base_lr, self.T_0, self.T_mult, self.eta_min)

    def get_lr(self) -> list[float]:
        return [
            self.eta_min + (b - self.eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
            for b in self.base_lrs
        ]

    def step(self, epoch: Any = None) -> None:
        # torch's own bookkeeping of T_cur/T_i (it also accepts fractional epochs).
        self._warn_order()
        self._step_count += 1
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur - self.T_i
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
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


class _MomentumCycling(LRScheduler):
    """Shared by CyclicLR and OneCycleLR: write momentum (or ``betas[0]``) each step."""

    cycle_momentum: bool
    use_beta1: bool
    _momentum_schedules: list[Any]

    def _setup_momentum(self, optimizer: Any, cycle_momentum: bool, base_momentum: Any,
                        max_momentum: Any, last_epoch: int) -> tuple[list[Any], list[Any]]:
        self.cycle_momentum = cycle_momentum
        if not cycle_momentum:
            return [], []
        if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
            raise ValueError(
                "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
            )
        self.use_beta1 = "betas" in optimizer.defaults
        maxs = _format_param("max_momentum", optimizer, max_momentum)
        bases = _format_param("base_momentum", optimizer, base_momentum)
        if last_epoch == -1:
            for m, b, group in zip(maxs, bases, optimizer.param_groups):
                if self.use_beta1:
                    group["betas"] = (m, *group["betas"][1:])
                else:
                    group["momentum"] = m
                group["max_momentum"] = m
                group["base_momentum"] = b
        return bases, maxs

    def _after_lr(self) -> None:
        if not self.cycle_momentum:
            return
        for s, group in zip(self._momentum_schedules, self.optimizer.param_groups):
            m = _f(s(self.last_epoch))
            if self.use_beta1:
                group["betas"] = (m, *group["betas"][1:])
            else:
                group["momentum"] = m

    def get_lr(self) -> list[float]:
        return self._closed_form(self.last_epoch)


class CyclicLR(_MomentumCycling):
    """``torch.optim.lr_scheduler.CyclicLR`` with torch's protocol.

    The formula is :func:`optx.schedules.cyclic_lr` and the momentum schedule."""

    def __init__(self, optimizer: Any, base_lr: Any, max_lr: Any,
                 step_size_up: int = 2000, step_size_down: int | None = None,
                 mode: str = "triangular", gamma: float = 1.0,
                 scale_fn: Callable[[float], float] | None = None, scale_mode: str = "cycle",
                 cycle_momentum: bool = True, base_momentum: Any = 0.8,
                 max_momentum: Any = 0.9, last_epoch: int = -1) -> None:
        base_lrs = _format_param("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups):
                group["lr"] = lr
        self.max_lrs = _format_param("max_lr", optimizer, max_lr)
        if mode not in ["triangular", "triangular2", "exp_range"] and scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        self.step_size_up, self.step_size_down = step_size_up, step_size_down
        self.mode, self.gamma, self.scale_mode = mode, gamma, scale_mode
        self._scale_fn_custom = scale_fn
        if scale_fn is None:
            self.scale_mode = "iterations" if mode == "exp_range" else "cycle"
        self.base_momentums, self.max_momentums = self._setup_momentum(
            optimizer, cycle_momentum, base_momentum, max_momentum, last_epoch
        )
        self._cyclic_base_lrs = base_lrs
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def _args(self) -> dict[str, Any]:
        return dict(step_size_up=self.step_size_up, step_size_down=self.step_size_down,
                    mode=self.mode, gamma=self.gamma, scale_fn=self._scale_fn_custom,
                    scale_mode=self.scale_mode)

    def _build_schedules(self) -> None:
        self._schedules = [
            S.cyclic_lr(b, m, **self._args()) for b, m in zip(self._cyclic_base_lrs, self.max_lrs)
        ]
        if self.cycle_momentum:
            self._momentum_schedules = [
                S.cyclic_momentum(0.0, 1.0, **self._args(), base_momentum=b, max_momentum=m)
                for b, m in zip(self.base_momentums, self.max_momentums)
            ]

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd.pop("_scale_fn_custom", None)
        return sd


class OneCycleLR(_MomentumCycling):
    """``torch.optim.lr_scheduler.OneCycleLR`` with torch's protocol.

    The formula is :func:`optx.schedules.one_cycle_lr` and the momentum schedule."""

    def __init__(self, optimizer: Any, max_lr: Any, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: Any = 0.85,
                 max_momentum: Any = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        if total_steps is not None:
            if total_steps <= 0 or not isinstance(total_steps, int):
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ["cos", "linear"]:
            raise ValueError(
                "anneal_strategy must be one of 'cos' or 'linear', instead got "
                f"{anneal_strategy}"
            )
        self.pct_start, self.anneal_strategy = pct_start, anneal_strategy
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        self.three_phase = three_phase
        self.max_lrs = _format_param("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for m, group in zip(self.max_lrs, optimizer.param_groups):
                group["initial_lr"] = m / div_factor
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.base_momentums, self.max_momentums = self._setup_momentum(
            optimizer, cycle_momentum, base_momentum, max_momentum, last_epoch
        )
        super().__init__(optimizer, last_epoch)

    def _args(self) -> dict[str, Any]:
        return dict(total_steps=self.total_steps, pct_start=self.pct_start,
                    anneal_strategy=self.anneal_strategy, div_factor=self.div_factor,
                    final_div_factor=self.final_div_factor, three_phase=self.three_phase)

    def _build_schedules(self) -> None:
        self._schedules = [S.one_cycle_lr(m, **self._args()) for m in self.max_lrs]
        if self.cycle_momentum:
            self._momentum_schedules = [
                S.one_cycle_momentum(1.0, **self._args(), base_momentum=b, max_momentum=m)
                for b, m in zip(self.base_momentums, self.max_momentums)
            ]

    def get_lr(self) -> list[float]:
        if self.last_epoch > self.total_steps:
            raise ValueError(
                f"Tried to step {self.last_epoch} times. The specified number of total steps "
                f"is {self.total_steps}"
            )
        return super().get_lr()


class SequentialLR(LRScheduler):
    """``torch.optim.lr_scheduler.SequentialLR`` with torch's protocol.

    The formula is :func:`optx.schedules.sequential_lr`."""

    def __init__(self, optimizer: Any, schedulers: list[Any], milestones: list[int],
                 last_epoch: int = -1) -> None:
        if len(schedulers) < 1:
            raise ValueError(
                f"{type(self).__name__} expects at least one scheduler, but got no scheduler."
            )
        for i, s in enumerate(schedulers):
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(
                    f"{type(self).__name__} does not support `ReduceLROnPlateau` scheduler as it "
                    "requires additional kwargs to be specified when calling `step`, "
                    f"but got one at index {i} in the given schedulers sequence."
                )
            if s.optimizer is not optimizer:
                raise ValueError(
                    f"{type(self).__name__} expects all schedulers to belong to the same "
                    f"optimizer, but got scheduler {type(s).__name__} at index {i} has "
                    f"{s.optimizer}, which is different from {type(optimizer).__name__}."
                )
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more "
                f"than the number of milestone points, but got number of schedulers "
                f"{len(schedulers)} and the number of milestones to be equal to "
                f"{len(milestones)}"
            )
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for s in schedulers:
            s.last_epoch -= 1
        idx = bisect_right(milestones, 0)
        schedulers[idx]._initial_step()
        self._last_lr = schedulers[idx].get_last_lr()

    def step(self) -> None:  # type: ignore[override]
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        sd = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        sd["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        subs = state_dict.pop("_schedulers")
        self.__dict__.update(state_dict)
        for s, sd in zip(self._schedulers, subs):
            s.load_state_dict(sd)


class ChainedScheduler(LRScheduler):
    """``torch.optim.lr_scheduler.ChainedScheduler`` with torch's protocol.

    The formula is :func:`optx.schedules.chained_scheduler`."""

    def __init__(self, schedulers: Sequence[Any], optimizer: Any = None) -> None:
        if len(schedulers) < 1:
            raise ValueError(
                f"{type(self).__name__} expects at least one scheduler to be chained, "
                "but got no scheduler."
            )
        optimizer = optimizer or schedulers[0].optimizer
        for i, s in enumerate(schedulers):
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(
                    f"{type(self).__name__} does not support `ReduceLROnPlateau` scheduler as it "
                    "requires additional kwargs to be specified when calling `step`, "
                    f"but got one at index {i} in the given schedulers sequence."
                )
        self._schedulers = list(schedulers)
        self.optimizer = optimizer
        self._last_lr = [g["lr"] for g in self._schedulers[-1].optimizer.param_groups]

    def step(self) -> None:  # type: ignore[override]
        for s in self._schedulers:
            s.step()
        self._last_lr = [g["lr"] for g in self._schedulers[-1].optimizer.param_groups]

    state_dict = SequentialLR.state_dict
    load_state_dict = SequentialLR.load_state_dict


class ReduceLROnPlateau(LRScheduler):
    """torch's ReduceLROnPlateau; the decision logic is the same as
    :func:`optx.reduce_lr_on_plateau`, here on Python floats between steps."""

    def __init__(self, optimizer: Any, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: Any = 0, eps: float = 1e-8) -> None:
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        self.factor = factor
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(
                    f"expected {len(optimizer.param_groups)} min_lrs, got {len(min_lr)}"
                )
            self.default_min_lr = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience, self.cooldown, self.eps = patience, cooldown, eps
        self.last_epoch = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]
        if mode not in {"min", "max"}:
            raise ValueError("mode " + mode + " is unknown!")
        if threshold_mode not in {"rel", "abs"}:
            raise ValueError("threshold mode " + threshold_mode + " is unknown!")
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics: Any, epoch: int | None = None) -> None:  # type: ignore[override]
        current = float(metrics)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            if len(self.min_lrs) != len(self.optimizer.param_groups):
                self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)
            for i, group in enumerate(self.optimizer.param_groups):
                old = float(group["lr"])
                new = max(old * self.factor, self.min_lrs[i])
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)
