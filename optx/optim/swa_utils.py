"""``torch.optim.swa_utils`` for parameter pytrees: AveragedModel (SWA and EMA) and SWALR."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import optx.schedules.swa as F
from optx.optim.lr_scheduler.base import (
    LRScheduler,
    _format_param,
    _warn_get_lr_called_within_step,
)
from optx.schedules.torch_schedule import HOST

PyTree = Any


def get_swa_avg_fn() -> Callable[[Any, Any, Any], Any]:
    """Equal-weight running average: ``avg + (p - avg) / (n + 1)``.

    The divisor is a full array: XLA:CPU turns a division by a broadcast scalar into a
    multiplication by its reciprocal, which rounds differently from torch's division.
    """
    return lambda averaged, current, num_averaged: averaged + (current - averaged) / (
        jnp.full(jnp.shape(averaged), num_averaged + 1, jnp.result_type(averaged))
    )


def get_ema_avg_fn(decay: float = 0.999) -> Callable[[Any, Any, Any], Any]:
    """Exponential moving average: ``decay * avg + (1 - decay) * p``."""
    return lambda ema, current, num_averaged: decay * ema + (1 - decay) * current


def _lerp(start: Any, end: Any, w: float) -> Any:
    # torch.lerp's two-sided formula (exact at both ends), as _foreach_lerp_ computes it: the
    # weight is first rounded to the tensors' dtype, and 1 - w is taken in that dtype.
    weight = jnp.asarray(w, jnp.result_type(start))
    diff = end - start
    return start + weight * diff if abs(float(weight)) < 0.5 else end - diff * (1 - weight)


def get_swa_multi_avg_fn() -> Callable[[list, list, Any], list]:
    """Equal-weight running average over lists of leaves, as torch's
    ``_foreach_lerp_(averaged, current, 1 / (n + 1))``."""
    return lambda averaged, current, n: [
        _lerp(a, c, 1 / (int(n) + 1)) for a, c in zip(averaged, current)
    ]


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable[[list, list, Any], list]:
    """EMA over lists of leaves, as torch's ``_foreach_lerp_(ema, current, 1 - decay)``."""
    if decay < 0.0 or decay > 1.0:
        raise ValueError(
            f"Invalid decay value {decay} provided. Please provide a value in [0,1] range."
        )
    return lambda ema, current, n: [_lerp(e, c, 1 - decay) for e, c in zip(ema, current)]


class AveragedModel:
    """Averages parameter pytrees (SWA by default, EMA with ``get_ema_multi_avg_fn``).

    ``averaged = AveragedModel(params)``, then ``averaged.update_parameters(params)`` after
    optimizer steps; the average is ``averaged.module`` (a pytree like the params) and
    ``averaged.n_averaged`` counts the updates.
    """

    def __init__(self, model: PyTree, device: Any = None,
                 avg_fn: Callable[[Any, Any, Any], Any] | None = None,
                 multi_avg_fn: Callable[[list, list, Any], list] | None = None,
                 use_buffers: bool = False) -> None:
        del device, use_buffers
        self.module = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), model)
        self.n_averaged = 0
        self.avg_fn, self.multi_avg_fn = avg_fn, multi_avg_fn

    def __call__(self, *args: Any, **kwargs: Any) -> PyTree:
        return self.module

    def update_parameters(self, model: PyTree) -> None:
        current, treedef = jax.tree_util.tree_flatten(model)
        averaged = treedef.flatten_up_to(self.module)  # type: ignore[attr-defined]  # PyTreeDef has no stubs
        if self.n_averaged == 0:
            new = [jnp.array(c, copy=True) for c in current]
        elif self.multi_avg_fn is not None:
            new = self.multi_avg_fn(averaged, current, self.n_averaged)
        elif self.avg_fn is not None:
            new = [self.avg_fn(a, c, self.n_averaged) for a, c in zip(averaged, current)]
        else:
            # torch's default on CPU (no foreach kernels there): get_swa_avg_fn per leaf.
            avg = get_swa_avg_fn()
            new = [avg(a, c, self.n_averaged) for a, c in zip(averaged, current)]
        new_leaves = [jnp.asarray(n, a.dtype) for n, a in zip(new, averaged)]
        self.module = jax.tree_util.tree_unflatten(treedef, new_leaves)
        self.n_averaged += 1


class SWALR(LRScheduler):
    """``torch.optim.swa_utils.SWALR``: anneals each group's lr to ``swa_lr`` over
    ``anneal_epochs`` steps, then keeps it there (:func:`optx.schedules.swalr`; formulas and
    checks from :mod:`optx.schedules.swa`)."""

    def __init__(self, optimizer: Any, swa_lr: float | list[float], anneal_epochs: int = 10,
                 anneal_strategy: str = "cos", last_epoch: int = -1) -> None:
        swa_lrs = _format_param("swa_lr", optimizer, swa_lr)
        for lr, group in zip(swa_lrs, optimizer.param_groups, strict=True):
            group["swa_lr"] = lr
        F.check_swalr(anneal_epochs, anneal_strategy)
        self._anneal_strategy = anneal_strategy
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    def anneal_func(self, t: Any) -> Any:
        return F.swa_anneal(HOST, self._anneal_strategy, t)

    def get_lr(self) -> list[Any]:
        _warn_get_lr_called_within_step(self)
        # torch counts SWALR's steps with _step_count (set in _initial_step), not last_epoch.
        step = self._step_count - 1
        return [
            F.swalr_chainable(HOST, group["lr"], group["swa_lr"], step, self.anneal_epochs,
                              self._anneal_strategy)
            for group in self.optimizer.param_groups
        ]


__all__ = [
    "SWALR",
    "AveragedModel",
    "get_ema_avg_fn",
    "get_ema_multi_avg_fn",
    "get_swa_avg_fn",
    "get_swa_multi_avg_fn",
]
