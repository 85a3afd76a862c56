"""Cosine annealing: torch's CosineAnnealingLR and CosineAnnealingWarmRestarts.

The formulas, in torch's operation order, are shared with the ``optx.optim.lr_scheduler``
classes; ``m`` is the arithmetic (see :mod:`optx.schedules.torch_schedule`).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from optx.schedules.torch_schedule import HOST, TorchSchedule

# ----------------------------------------------------------------------------- CosineAnnealingLR


def cosine_annealing_lr_closed_form(m: Any, base_lr: Any, e: Any, T_max: int,
                                    eta_min: float) -> Any:
    return eta_min + (base_lr - eta_min) * (1 + m.cos(m.pi * m.num(e) / T_max)) / 2


def cosine_annealing_lr_chainable(m: Any, lr: Any, base_lr: Any, e: Any, initial: Any,
                                  resumed: Any, T_max: int, eta_min: float) -> Any:
    """torch's ``get_lr``. ``resumed``: the first step after construction with
    ``last_epoch > 0`` (torch's ``_step_count == 1 and last_epoch > 0``)."""
    e_ = m.num(e)

    def restart():
        # torch writes the angle (last_epoch) * pi / T_max here, pi * last_epoch / T_max below.
        return eta_min + (base_lr - eta_min) * (1 + m.cos(e_ * m.pi / T_max)) / 2

    def trough():
        return lr + (base_lr - eta_min) * (1 - m.cos(m.pi / T_max)) / 2

    def ratio():
        return (
            (1 + m.cos(m.pi * e_ / T_max)) / (1 + m.cos(m.pi * (e_ - 1) / T_max))
            * (lr - eta_min)
            + eta_min
        )

    return m.cond(initial, lambda: lr, lambda: m.cond(
        _restarts(e, resumed), restart, lambda: m.cond(_trough(e, T_max), trough, ratio)))


def _restarts(e: Any, resumed: Any) -> Any:
    return resumed & (e > 0)


def _trough(e: Any, T_max: int) -> Any:
    return (e - 1 - T_max) % (2 * T_max) == 0


def cosine_annealing_lr_reads_base_lr(e: int, initial: bool, resumed: bool, T_max: int) -> bool:
    """Whether torch's ``get_lr`` reads ``base_lrs`` at this step (host values only).

    torch zips ``base_lrs`` with the param groups only in the restart and trough branches, so
    a group added after construction is annealed by the ratio branch and fails (zip's
    ``ValueError``) only there.
    """
    return not initial and bool(_restarts(e, resumed) or _trough(e, T_max))


def cosine_annealing_lr(lr: float, T_max: int, eta_min: float = 0.0) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.CosineAnnealingLR``:
    :math:`\eta_{min} + (\text{lr} - \eta_{min})(1 + \cos(\pi t / T_{max}))/2`.

    As in torch, it does not stop at ``T_max``: the lr rises again, with period ``2 T_max``.

    Args:
      lr: the initial (maximum) learning rate.
      T_max: the number of steps of a half period.
      eta_min: the minimum learning rate.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.cosine_annealing_lr(1.0, T_max=2)
      >>> [round(schedule(t), 12) for t in range(5)]
      [1.0, 0.5, 0.0, 0.5, 1.0]
    """
    return TorchSchedule(
        lambda m, t: cosine_annealing_lr_closed_form(m, lr, t, T_max, eta_min), lr,
        lambda m, x, e: cosine_annealing_lr_chainable(m, x, lr, e, e == 0, False, T_max,
                                                      eta_min),
    )


# ----------------------------------------------------------------------------- warm restarts


def check_warm_restarts(T_0: Any, T_mult: Any, eta_min: Any) -> None:
    if T_0 <= 0 or not isinstance(T_0, int):
        raise ValueError(f"Expected positive integer T_0, but got {T_0}")
    if T_mult < 1 or not isinstance(T_mult, int):
        raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
    if not isinstance(eta_min, (float, int)):
        raise ValueError(
            f"Expected float or int eta_min, but got {eta_min} of type {type(eta_min)}"
        )


def warm_restarts_value(m: Any, base_lr: Any, T_cur: Any, T_i: Any, eta_min: float) -> Any:
    """torch's ``get_lr`` at ``T_cur`` steps into a cycle of ``T_i`` steps."""
    return eta_min + (base_lr - eta_min) * (1 + m.cos(m.pi * T_cur / T_i)) / 2


def warm_restarts_position(m: Any, t: Any, T_0: int, T_mult: int) -> tuple[Any, Any]:
    """``(T_cur, T_i)`` after ``t`` plain ``step()`` calls (torch adds 1 to ``T_cur`` and
    restarts when it reaches ``T_i``)."""
    if m is HOST:  # integers, as torch's counters are
        if T_mult == 1:
            return t % T_0, T_0
        T_cur, T_i = t, T_0
        while T_cur >= T_i:
            T_cur, T_i = T_cur - T_i, T_i * T_mult
        return T_cur, T_i
    t = m.num(t)
    if T_mult == 1:
        return jnp.mod(t, T_0), m.num(T_0)
    # Cycle n starts at T_0 (T_mult^n - 1) / (T_mult - 1); 64 cycles outlast any run.
    n = jnp.arange(64, dtype=t.dtype)
    starts = T_0 * (m.num(T_mult) ** n - 1) / (T_mult - 1)
    k = jnp.sum(starts <= t) - 1
    return t - starts[k], T_0 * m.num(T_mult) ** k


def cosine_annealing_warm_restarts(
    lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0
) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` stepped without an epoch:
    cosine annealing over cycles of ``T_0``, ``T_0 T_mult``, ``T_0 T_mult^2``, ... steps, the lr
    jumping back to ``lr`` at each restart.

    Args:
      lr: the initial (maximum) learning rate.
      T_0: the length of the first cycle, in steps (a positive int).
      T_mult: the factor by which each cycle is longer than the previous one (an int >= 1).
      eta_min: the minimum learning rate.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.cosine_annealing_warm_restarts(1.0, T_0=2)
      >>> [round(schedule(t), 12) for t in range(5)]
      [1.0, 0.5, 1.0, 0.5, 1.0]
    """
    check_warm_restarts(T_0, T_mult, eta_min)

    def formula(m, t):
        T_cur, T_i = warm_restarts_position(m, t, T_0, T_mult)
        return warm_restarts_value(m, lr, T_cur, T_i, eta_min)

    return TorchSchedule(formula, lr)
