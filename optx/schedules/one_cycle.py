"""The 1cycle policy: torch's OneCycleLR, for the lr and for the momentum it cycles.

The formulas, in torch's operation order, are shared with
``optx.optim.lr_scheduler.OneCycleLR``; ``m`` is the arithmetic (see
:mod:`optx.schedules.torch_schedule`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from optx.schedules.torch_schedule import TorchSchedule


class Phase(NamedTuple):
    """One of torch's ``_schedule_phases``: its end step and the group keys it anneals
    between."""

    end_step: float
    start_lr: str
    end_lr: str
    start_momentum: str
    end_momentum: str


def one_cycle_total_steps(total_steps: Any, epochs: Any, steps_per_epoch: Any) -> int:
    """torch's checks of the cycle's length, in torch's order."""
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


def one_cycle_phases(total_steps: int, pct_start: Any, three_phase: bool) -> list[Phase]:
    """torch's phases (before it checks ``pct_start``, as torch builds them)."""
    if three_phase:
        return [
            Phase(float(pct_start * total_steps) - 1, "initial_lr", "max_lr",
                  "max_momentum", "base_momentum"),
            Phase(float(2 * pct_start * total_steps) - 2, "max_lr", "initial_lr",
                  "base_momentum", "max_momentum"),
            Phase(total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
        ]
    return [
        Phase(float(pct_start * total_steps) - 1, "initial_lr", "max_lr",
              "max_momentum", "base_momentum"),
        Phase(total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
    ]


def check_one_cycle(pct_start: Any, anneal_strategy: str) -> None:
    if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
        raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
    if anneal_strategy not in ["cos", "linear"]:
        raise ValueError(
            f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}"
        )


def anneal(m: Any, strategy: str, start: Any, end: Any, pct: Any) -> Any:
    """torch's ``_annealing_cos`` / ``_annealing_linear`` from ``start`` to ``end``."""
    if strategy == "cos":
        cos_out = m.cos(m.pi * pct) + 1
        return end + (start - end) / 2.0 * cos_out
    return (end - start) * pct + start


def one_cycle_value(m: Any, step: Any, phases: list[Phase], points: dict[str, Any],
                    strategy: str, momentum: bool = False) -> Any:
    """torch's ``get_lr`` (or the momentum it writes) at ``step``: the first phase whose end is
    ``>= step`` (or the last) anneals between the ``points`` its keys name."""

    def from_phase(i: int, start_step: Any) -> Any:
        phase = phases[i]

        def here():
            pct = (m.num(step) - start_step) / (phase.end_step - start_step)
            keys = (phase.start_momentum, phase.end_momentum) if momentum else (
                phase.start_lr, phase.end_lr)
            return anneal(m, strategy, points[keys[0]], points[keys[1]], pct)

        if i == len(phases) - 1:
            return here()
        return m.cond(step <= phase.end_step, here, lambda: from_phase(i + 1, phase.end_step))

    return from_phase(0, 0.0)


def one_cycle_lr_points(max_lr: Any, div_factor: float,
                        final_div_factor: float) -> dict[str, Any]:
    """The lrs torch writes into each group: ``initial_lr``, ``max_lr``, ``min_lr``."""
    initial_lr = max_lr / div_factor
    return {"initial_lr": initial_lr, "max_lr": max_lr, "min_lr": initial_lr / final_div_factor}


def _one_cycle(momentum, max_lr, total_steps, epochs, steps_per_epoch, pct_start,
               anneal_strategy, div_factor, final_div_factor, three_phase, base_momentum,
               max_momentum):
    total = one_cycle_total_steps(total_steps, epochs, steps_per_epoch)
    phases = one_cycle_phases(total, pct_start, three_phase)
    check_one_cycle(pct_start, anneal_strategy)
    points = {**one_cycle_lr_points(max_lr, div_factor, final_div_factor),
              "max_momentum": max_momentum, "base_momentum": base_momentum}

    def formula(m, t):
        return one_cycle_value(m, t, phases, points, anneal_strategy, momentum)

    return TorchSchedule(formula, points["max_momentum" if momentum else "initial_lr"])


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
    ``max_lr / div_factor / final_div_factor`` (``three_phase`` first returns to the initial
    lr). Phase ends fall at ``pct_start * total - 1`` and ``total - 1``, as in torch; ``t`` may
    equal ``total_steps``, where torch still answers.

    Args:
      max_lr: the peak learning rate.
      total_steps: the number of steps of the cycle; or give ``epochs`` and
        ``steps_per_epoch``.
      epochs: the number of epochs (with ``steps_per_epoch``).
      steps_per_epoch: the number of steps per epoch (with ``epochs``).
      pct_start: the fraction of the cycle spent increasing the lr (a float in [0, 1]).
      anneal_strategy: ``"cos"`` or ``"linear"``.
      div_factor: the initial lr is ``max_lr / div_factor``.
      final_div_factor: the final lr is the initial lr divided by ``final_div_factor``.
      three_phase: a third phase: back to the initial lr, then down to the final lr.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.one_cycle_lr(1.0, total_steps=5, pct_start=0.4,
      ...                                        anneal_strategy="linear", div_factor=10.0)
      >>> [round(schedule(t), 12) for t in range(5)]
      [0.1, 1.0, 0.66667, 0.33334, 1e-05]
    """
    return _one_cycle(False, max_lr, total_steps, epochs, steps_per_epoch, pct_start,
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
    ``max_momentum`` down to ``base_momentum`` while the lr rises, and back.

    Args:
      max_lr: as :func:`one_cycle_lr`.
      total_steps: as :func:`one_cycle_lr`.
      epochs: as :func:`one_cycle_lr`.
      steps_per_epoch: as :func:`one_cycle_lr`.
      pct_start: as :func:`one_cycle_lr`.
      anneal_strategy: as :func:`one_cycle_lr`.
      div_factor: as :func:`one_cycle_lr`.
      final_div_factor: as :func:`one_cycle_lr`.
      three_phase: as :func:`one_cycle_lr`.
      base_momentum: the momentum at the lr's peak.
      max_momentum: the momentum at the start and the end of the cycle.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> momentum``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.one_cycle_momentum(1.0, total_steps=5, pct_start=0.4,
      ...                                              anneal_strategy="linear")
      >>> [round(schedule(t), 12) for t in range(5)]
      [0.95, 0.85, 0.883333333333, 0.916666666667, 0.95]
    """
    return _one_cycle(True, max_lr, total_steps, epochs, steps_per_epoch, pct_start,
                      anneal_strategy, div_factor, final_div_factor, three_phase,
                      base_momentum, max_momentum)
