"""torch's ReduceLROnPlateau on the host. Its decisions are :mod:`optx.reduce_lr_on_plateau`'s,
run on Python floats."""

from __future__ import annotations

import warnings
from math import inf
from typing import Any

from optx.optim.interrupts import deferring_signals
from optx.optim.lr_scheduler.base import (
    EPOCH_DEPRECATION_WARNING,
    LRScheduler,
    _check_optimizer,
    _param_groups_val_list,
)
from optx.reduce_lr_on_plateau import (
    PlateauRule,
    check_plateau_factor,
    check_plateau_modes,
    plateau_counts,
    plateau_is_better,
    plateau_reduced,
)
from optx.schedules.torch_schedule import HOST


def _metric_value(metrics: Any) -> float:
    """``float(metrics)`` as torch's: a one-element array of any shape counts as its element
    (``float(jnp.array([1.0]))`` raises in JAX, ``float(torch.tensor([1.0]))`` does not)."""
    size = getattr(metrics, "size", None)
    if isinstance(size, int) and getattr(metrics, "ndim", 0) > 0:
        if size != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        metrics = metrics.reshape(())
    return float(metrics)


class ReduceLROnPlateau(LRScheduler):
    """``torch.optim.lr_scheduler.ReduceLROnPlateau``: the lr times ``factor`` once the metric
    passed to ``step(metrics)`` has not improved for ``patience`` epochs
    (:func:`optx.reduce_lr_on_plateau` is the same rule as a transformation).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        mode: ``'min'``: the lr falls when the metric stops decreasing; ``'max'``: when it
            stops increasing.
        factor: the factor the lr is multiplied by at a reduction (below 1).
        patience: the number of epochs without improvement tolerated before a reduction (with
            ``patience=2``, the third bad epoch reduces the lr).
        threshold: how much better than the best a metric must be to count as an improvement.
        threshold_mode: ``'rel'``: better than ``best * (1 - threshold)`` (``'min'``) or
            ``best * (1 + threshold)`` (``'max'``); ``'abs'``: better than
            ``best - threshold`` or ``best + threshold``.
        cooldown: the number of epochs after a reduction before counting bad epochs again.
        min_lr: the lower bound of the lr, a float or one per param group.
        eps: the smallest change of the lr applied: a reduction smaller than ``eps`` is
            skipped.

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
        >>> lrs = []
        >>> for val_loss in [1.0, 0.8, 0.8, 0.8, 0.8, 0.8]:
        ...     opt.step([jnp.ones(1)])
        ...     sched.step(val_loss)
        ...     lrs.append(sched.get_last_lr()[0])
        >>> lrs
        [0.1, 0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, optimizer: Any, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: Any = 0, eps: float = 1e-8) -> None:
        check_plateau_factor(factor)
        self.factor = factor
        _check_optimizer(optimizer)
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
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = _param_groups_val_list(self.optimizer, "lr")
        self._init_is_better(mode=mode, threshold=threshold, threshold_mode=threshold_mode)
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _rule(self) -> PlateauRule:
        return PlateauRule(self.mode, self.factor, self.patience, self.threshold,
                             self.threshold_mode, self.cooldown, self.eps)

    @deferring_signals
    def step(self, metrics: Any, epoch: int | None = None) -> None:  # type: ignore[override]
        """Records the epoch's metric and reduces the lr after ``patience`` bad epochs.

        Args:
            metrics: the epoch's metric (a Python number or a one-element array).
            epoch: deprecated, as in torch (with torch's warning): sets ``last_epoch``.
                ``None``: the next epoch.
        """
        current = _metric_value(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=3)
        self.last_epoch = epoch
        # torch's order: the counts are set before _reduce_lr, which may raise (a group added
        # later, with per-group min_lrs), and reset after it.
        self.best, self.num_bad_epochs, self.cooldown_counter, reduce = plateau_counts(
            HOST, self._rule(), current, self.best, self.num_bad_epochs, self.cooldown_counter)
        if reduce:
            self._reduce_lr(epoch)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = _param_groups_val_list(self.optimizer, "lr")

    def _reduce_lr(self, epoch: Any) -> None:
        if len(self.optimizer.param_groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    "The number of param groups in the `optimizer` "
                    f"({len(self.optimizer.param_groups)}) differs "
                    f"from when `ReduceLROnPlateau` was initialized "
                    f"({len(self.min_lrs)}), usually due to a new "
                    "param group being added to the optimizer. Please "
                    "modify the `min_lrs` field to match the length "
                    "of the `optimizer` param groups."
                )
            self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)
        for i, group in enumerate(self.optimizer.param_groups):
            old_lr = float(group["lr"])
            new_lr = plateau_reduced(HOST, self._rule(), old_lr, self.min_lrs[i], True)
            # plateau_reduced hands back old_lr itself when torch leaves the lr alone.
            if new_lr is not old_lr:
                group["lr"] = new_lr

    @property
    def in_cooldown(self) -> bool:
        """Whether the scheduler is in its cooldown after a reduction (bad epochs not
        counted)."""
        return self.cooldown_counter > 0

    def _is_better(self, a: Any, best: Any) -> Any:
        return plateau_is_better(self._rule(), a, best)

    def _init_is_better(self, mode: str, threshold: float, threshold_mode: str) -> None:
        check_plateau_modes(mode, threshold_mode)
        self.mode_worse = inf if mode == "min" else -inf
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the scheduler from what ``state_dict()`` returned (torch's too).

        Args:
            state_dict: the scheduler's state, as ``state_dict()`` returned it.
        """
        self.__dict__.update(state_dict)
        self._init_is_better(mode=self.mode, threshold=self.threshold,
                             threshold_mode=self.threshold_mode)
