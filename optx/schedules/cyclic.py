"""Cyclical learning rates: torch's CyclicLR, for the lr and for the momentum it cycles."""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp

from optx.schedules.torch_schedule import ABSOLUTE, TorchSchedule, as_float


def _cyclic(which, base_lr, max_lr, step_size_up, step_size_down, mode, gamma, scale_fn,
            scale_mode, base_momentum, max_momentum):
    if mode not in ["triangular", "triangular2", "exp_range"] and scale_fn is None:
        raise ValueError("mode is invalid and scale_fn is None")
    up = float(step_size_up)
    down = float(step_size_down) if step_size_down is not None else up
    total = up + down
    ratio = up / total
    if scale_fn is None:
        if mode == "triangular":
            scale_fn, scale_mode = (lambda x: 1.0), "cycle"
        elif mode == "triangular2":
            scale_fn, scale_mode = (lambda x: 1 / (2.0 ** (x - 1))), "cycle"
        else:
            scale_fn, scale_mode = (lambda x: gamma**x), "iterations"

    def closed_form(t):
        t = jnp.asarray(t) if not isinstance(t, int) else t
        e = as_float(t)
        cycle = jnp.floor(1 + e / total)
        x = 1.0 + e / total - cycle
        factor = jnp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        scale = as_float(scale_fn(cycle if scale_mode == "cycle" else t))
        if which == "lr":
            return base_lr + (max_lr - base_lr) * factor * scale
        return max_momentum - (max_momentum - base_momentum) * factor * scale

    base = base_lr if which == "lr" else max_momentum
    return TorchSchedule(closed_form, base, ABSOLUTE, name=f"cyclic_{which}")


def cyclic_lr(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[Any], Any] | None = None,
    scale_mode: str = "cycle",
) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.CyclicLR``'s lr: cycles between ``base_lr`` and ``max_lr``,
    ``step_size_up`` steps up and ``step_size_down`` down, the amplitude scaled per cycle
    (``triangular``: 1, ``triangular2``: halved each cycle) or per iteration (``exp_range``:
    ``gamma**t``), or by a custom ``scale_fn`` of the cycle or the iteration (``scale_mode``);
    a custom ``scale_fn`` must be jax-traceable to be used with a traced ``t``."""
    return _cyclic("lr", base_lr, max_lr, step_size_up, step_size_down, mode, gamma, scale_fn,
                   scale_mode, 0.8, 0.9)


def cyclic_momentum(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[Any], Any] | None = None,
    scale_mode: str = "cycle",
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
) -> TorchSchedule:
    r"""The momentum (or ``betas[0]``) that ``CyclicLR(cycle_momentum=True)`` sets: it cycles
    inversely to the lr, between ``max_momentum`` and ``base_momentum``."""
    return _cyclic("momentum", base_lr, max_lr, step_size_up, step_size_down, mode, gamma,
                   scale_fn, scale_mode, base_momentum, max_momentum)
