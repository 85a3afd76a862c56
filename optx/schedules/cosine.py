"""Cosine annealing: torch's CosineAnnealingLR and CosineAnnealingWarmRestarts."""

from __future__ import annotations

import math

import jax.numpy as jnp

from optx.schedules.torch_schedule import ABSOLUTE, AFFINE, TorchSchedule, as_float


def cosine_annealing_lr(lr: float, T_max: int, eta_min: float = 0.0) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.CosineAnnealingLR``:
    :math:`\eta_{min} + (\text{lr} - \eta_{min})(1 + \cos(\pi t / T_{max}))/2`.

    As in torch, it does not stop at ``T_max``: the lr rises again, with period ``2 T_max``.
    """

    def closed_form(t):
        return eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * as_float(t) / T_max)) / 2

    def affine(e):
        # torch's get_lr: e == 0 keeps lr; the trough step adds back; otherwise a cosine ratio.
        e = as_float(e)
        trough = jnp.mod(e - 1 - T_max, 2 * T_max) == 0
        ratio = (1 + jnp.cos(math.pi * e / T_max)) / (1 + jnp.cos(math.pi * (e - 1) / T_max))
        a = jnp.where(e == 0, 1.0, jnp.where(trough, 1.0, ratio))
        b = jnp.where(
            e == 0,
            0.0,
            jnp.where(trough, (lr - eta_min) * (1 - math.cos(math.pi / T_max)) / 2,
                      eta_min * (1 - ratio)),
        )
        return a, b

    return TorchSchedule(closed_form, lr, AFFINE, affine, name="cosine_annealing_lr")


def cosine_annealing_warm_restarts(
    lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0
) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` stepped without an epoch:
    cosine annealing over cycles of ``T_0``, ``T_0 T_mult``, ``T_0 T_mult^2``, ... steps, the lr
    jumping back to ``lr`` at each restart."""
    if T_0 <= 0 or not isinstance(T_0, int):
        raise ValueError(f"Expected positive integer T_0, but got {T_0}")
    if T_mult < 1 or not isinstance(T_mult, int):
        raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")

    def closed_form(t):
        t = as_float(t)
        if T_mult == 1:
            t_cur, t_i = jnp.mod(t, T_0), as_float(T_0)
        else:
            # Cycle n starts at T_0 (T_mult^n - 1) / (T_mult - 1); 64 cycles outlast any run.
            n = jnp.arange(64, dtype=t.dtype)
            starts = T_0 * (as_float(T_mult) ** n - 1) / (T_mult - 1)
            k = jnp.sum(starts <= t) - 1
            t_cur, t_i = t - starts[k], T_0 * as_float(T_mult) ** k
        return eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * t_cur / t_i)) / 2

    return TorchSchedule(closed_form, lr, ABSOLUTE, name="cosine_annealing_warm_restarts")
