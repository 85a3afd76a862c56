"""torch's ``LRScheduler`` protocol, written as torch writes it.

Construction performs a step; ``step()`` advances ``last_epoch`` and writes torch's chainable
``get_lr()`` into each group's ``lr``; ``step(epoch)`` (deprecated, with torch's warning) uses
``_get_closed_form_lr()`` where the class has one. Values are Python floats computed on the host
in torch's operation order (the formulas come from :mod:`optx.schedules` run in
:data:`~optx.schedules.torch_schedule.HOST` arithmetic), so ``get_last_lr()`` and
``param_groups`` equal torch's whatever ``jax_enable_x64`` is; the optimizer casts them to the
parameter dtype inside its update.

A custom scheduler subclasses :class:`LRScheduler` (or the old alias ``_LRScheduler``) and
overrides ``get_lr()``, as in torch.
"""

from __future__ import annotations

import functools
import warnings
import weakref
from typing import Any

from optx.optim.interrupts import deferring_signals

EPOCH_DEPRECATION_WARNING = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being "
    "deprecated where possible. Please use `scheduler.step()` to step the "
    "scheduler. During the deprecation, if epoch is different from None, the "
    "closed form is used instead of the new chainable form, where available. "
    "Please open an issue if you are unable to replicate your use case: "
    "https://github.com/pytorch/pytorch/issues/new/choose."
)

_ORDER_WARNING = (
    "Detected call of `lr_scheduler.step()` before `optimizer.step()`. "
    "In PyTorch 1.1.0 and later, you should call them in the opposite order: "
    "`optimizer.step()` before `lr_scheduler.step()`.  Failure to do this "
    "will result in PyTorch skipping the first value of the learning rate schedule. "
    "See more details at "
    "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"
)
_OVERRIDDEN_WARNING = (
    "Seems like `optimizer.step()` has been overridden after learning rate scheduler "
    "initialization. Please, make sure to call `optimizer.step()` before "
    "`lr_scheduler.step()`. See more details at "
    "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"
)


def _track_step_called(optimizer: Any) -> None:
    """torch's ``patch_track_step_called``: the optimizer's ``step`` is wrapped (once, by the
    first scheduler) to set ``_opt_called``, so only steps taken after a scheduler exists count
    for the order warning, and a user subclass's own ``step`` counts too."""
    if hasattr(optimizer.step, "_wrapped_by_lr_sched"):
        return
    opt_ref = weakref.ref(optimizer)
    func = optimizer.step.__func__

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opt = opt_ref()
        opt._opt_called = True  # type: ignore[union-attr]
        return func.__get__(opt, opt.__class__)(*args, **kwargs)

    wrapper._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
    optimizer.step = wrapper


def _check_optimizer(optimizer: Any) -> None:
    # torch tests isinstance(optimizer, torch.optim.Optimizer); any object with torch's
    # param_groups (optx.optim.Optimizer, ZeroRedundancyOptimizer) is one here.
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")


def _format_param(name: str, optimizer: Any, param: Any) -> list[Any]:
    """One value per param group (torch's ``_format_param``)."""
    if isinstance(param, (list, tuple)):
        if len(param) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. "
                f"{name} has {len(param)} values, param_groups has "
                f"{len(optimizer.param_groups)}."
            )
        return list(param)
    return [param] * len(optimizer.param_groups)


def _param_groups_val_list(optimizer: Any, key: str) -> list[Any]:
    return [group[key] for group in optimizer.param_groups]


def _format_lambdas(optimizer: Any, lr_lambda: Any) -> list[Any]:
    """LambdaLR's and MultiplicativeLR's one function per group."""
    if not isinstance(lr_lambda, (list, tuple)):
        return [lr_lambda] * len(optimizer.param_groups)
    if len(lr_lambda) != len(optimizer.param_groups):
        raise ValueError(
            f"Expected {len(optimizer.param_groups)} lr_lambdas, but got {len(lr_lambda)}"
        )
    return list(lr_lambda)


def _warn_get_lr_called_within_step(scheduler: LRScheduler) -> None:
    if not scheduler._get_lr_called_within_step:
        warnings.warn(
            "To get the last learning rate computed by the scheduler, "
            "please use `get_last_lr()`.",
            UserWarning,
            stacklevel=3,
        )


class _enable_get_lr_call:
    def __init__(self, o: LRScheduler) -> None:
        self.o = o

    def __enter__(self) -> _enable_get_lr_call:
        self.o._get_lr_called_within_step = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.o._get_lr_called_within_step = False


class _initial_mode:
    def __init__(self, o: LRScheduler) -> None:
        self.o = o

    def __enter__(self) -> None:
        self.o._is_initial = True

    def __exit__(self, *exc: Any) -> None:
        self.o._is_initial = False


class LRScheduler:
    """torch's ``LRScheduler``: the base of every scheduler; subclasses implement
    :meth:`get_lr` (and optionally ``_get_closed_form_lr``).

    Construction sets each group's ``initial_lr`` (on a fresh start), ``base_lrs`` and
    ``last_epoch``, and performs the first step, as torch's does.

    Args:
        optimizer: the :class:`optx.optim.Optimizer` whose groups' ``lr`` it sets.
        last_epoch: the index of the last epoch; ``-1`` starts the schedule, anything else
            resumes it (the groups must then hold ``initial_lr``).

    Example:
        A custom scheduler overrides :meth:`get_lr`, as in torch:

        >>> import jax.numpy as jnp, optx
        >>> class Halving(optx.optim.lr_scheduler.LRScheduler):
        ...     def get_lr(self):
        ...         return [base_lr * 0.5 ** self.last_epoch for base_lr in self.base_lrs]
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = Halving(opt)
        >>> lrs = []
        >>> for epoch in range(4):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> lrs
        [0.1, 0.05, 0.025, 0.0125]
    """

    _get_lr_called_within_step: bool = False
    _is_initial: bool = False

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
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
        self.base_lrs: list[Any] = _param_groups_val_list(optimizer, "initial_lr")
        """Each param group's ``initial_lr``: the lrs the schedule starts from."""
        self.last_epoch = last_epoch
        _track_step_called(optimizer)
        self._initial_step()

    def _initial_step(self) -> None:
        """Initialize step counts and perform a step."""
        self._step_count = 0
        with _initial_mode(self):
            self.step()

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer, as torch's."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the scheduler from what :meth:`state_dict` returned (torch's too).

        Args:
            state_dict: the scheduler's state, as :meth:`state_dict` returned it.
        """
        self.__dict__.update(state_dict)

    def get_last_lr(self) -> list[Any]:
        """The learning rates of the last step, one per group."""
        return self._last_lr

    def get_lr(self) -> list[Any]:
        """The next learning rate of each group (torch's chainable form)."""
        raise NotImplementedError

    def _warn_order(self) -> None:
        if self._step_count != 1:
            return
        if not hasattr(self.optimizer.step, "_wrapped_by_lr_sched"):
            warnings.warn(_OVERRIDDEN_WARNING, UserWarning, stacklevel=4)
        elif not getattr(self.optimizer, "_opt_called", False):
            warnings.warn(_ORDER_WARNING, UserWarning, stacklevel=4)

    @deferring_signals
    def step(self, epoch: int | None = None) -> None:
        """Advances the schedule and writes the new lr into each param group; call it after
        ``optimizer.step()``.

        Args:
            epoch: deprecated, as in torch (with torch's warning): sets ``last_epoch`` to it
                and uses the closed form where the scheduler has one. ``None``: the next
                epoch.
        """
        self._warn_order()
        self._step_count += 1
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=3)
        self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        with _enable_get_lr_call(self):
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                self.last_epoch = epoch
                if hasattr(self, "_get_closed_form_lr"):
                    values = self._get_closed_form_lr()
                else:
                    values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = _param_groups_val_list(self.optimizer, "lr")


class _LRScheduler(LRScheduler):
    """torch's old name for :class:`LRScheduler`, kept for subclasses written against it."""
