"""The 1cycle policy: torch's OneCycleLR, for the lr and for the momentum it cycles."""

from __future__ import annotations

import math

import jax.numpy as jnp

from optx.schedules.torch_schedule import ABSOLUTE, TorchSchedule, as_float


def _total_steps(total_steps, epochs, steps_per_epoch) -> int:
    if total_steps is not None:
        if total_steps <= 0 or not isinstance(total_steps, int):
            raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
        return total_steps
    if epochs is not None and steps_per_epoch is not None:
        if not isinstance(epochs, int) or epochs <= 0:
            raise ValueError(f"Expected positive integer epochs, but got {epochs}")
        if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
            raise ValueError(
                f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}"
            )
        return epochs * steps_per_epoch
    raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")


def _phases(total: int, pct_start: float, three_phase: bool, lr_points, momentum_points):
    """torch's phases as (end_step, (start_lr, end_lr), (start_momentum, end_momentum))."""
    initial, peak, low = lr_points
    m_max, m_base = momentum_points
    if three_phase:
        return [
            (float(pct_start * total) - 1, (initial, peak), (m_max, m_base)),
            (float(2 * pct_start * total) - 2, (peak, initial), (m_base, m_max)),
            (total - 1, (initial, low), (m_max, m_max)),
        ]
    return [
        (float(pct_start * total) - 1, (initial, peak), (m_max, m_base)),
        (total - 1, (peak, low), (m_base, m_max)),
    ]


def _one_cycle(which, max_lr, total_steps, epochs, steps_per_epoch, pct_start, anneal_strategy,
               div_factor, final_div_factor, three_phase, base_momentum, max_momentum):
    total = _total_steps(total_steps, epochs, steps_per_epoch)
    if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
        raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
    if anneal_strategy not in ["cos", "linear"]:
        raise ValueError(
            f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}"
        )
    initial = max_lr / div_factor
    phases = _phases(total, pct_start, three_phase, (initial, max_lr, initial / final_div_factor),
                     (max_momentum, base_momentum))

    def anneal(start, end, pct):
        if anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (jnp.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def closed_form(t):
        t = as_float(t)
        value = None
        start_step = 0.0
        # Walk the phases from the last: the first phase whose end is >= t wins, as in torch.
        pieces = []
        for i, (end_step, lrs, moms) in enumerate(phases):
            pct = (t - start_step) / (end_step - start_step)
            points = lrs if which == "lr" else moms
            last = i == len(phases) - 1
            pieces.append((t <= end_step if not last else True, anneal(*points, pct)))
            start_step = end_step
        for cond, v in reversed(pieces):
            value = v if value is None else jnp.where(cond, v, value)
        return value

    base = initial if which == "lr" else max_momentum
    return TorchSchedule(closed_form, base, ABSOLUTE, name=f"one_cycle_{which}")


def one_cycle_lr(
    max_lr: float,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.OneCycleLR``'s lr: from ``max_lr / div_factor`` up to
    ``max_lr`` over the first ``pct_start`` of the steps, then down to
    ``max_lr / div_factor / final_div_factor`` (``three_phase`` first returns to the initial lr).
    Phase ends fall at ``pct_start * total - 1`` and ``total - 1``, as in torch; ``t`` may equal
    ``total_steps``, where torch still answers."""
    return _one_cycle("lr", max_lr, total_steps, epochs, steps_per_epoch, pct_start,
                      anneal_strategy, div_factor, final_div_factor, three_phase, 0.85, 0.95)


def one_cycle_momentum(
    max_lr: float,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
) -> TorchSchedule:
    r"""The momentum (or ``betas[0]``) that ``OneCycleLR(cycle_momentum=True)`` sets: from
    ``max_momentum`` down to ``base_momentum`` while the lr rises, and back."""
    return _one_cycle("momentum", max_lr, total_steps, epochs, steps_per_epoch, pct_start,
                      anneal_strategy, div_factor, final_div_factor, three_phase,
                      base_momentum, max_momentum)
