"""Cyclical learning rates: torch's CyclicLR, for the lr and for the momentum it cycles.

The formulas, in torch's operation order, are shared with ``optx.optim.lr_scheduler.CyclicLR``;
``m`` is the arithmetic (see :mod:`optx.schedules.torch_schedule`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from optx.schedules.torch_schedule import HOST, TRACED, TorchSchedule


class CyclicShape(NamedTuple):
    """torch's ``total_size``, ``step_ratio``, the scale function and ``scale_mode``."""

    total_size: float
    step_ratio: float
    scale_fn: Callable[[Any], Any]
    scale_mode: str


def triangular_scale_fn(x: Any) -> float:
    return 1.0


def triangular2_scale_fn(x: Any) -> Any:
    return 1 / (2.0 ** (x - 1))


def exp_range_scale_fn(gamma: float, x: Any) -> Any:
    return (HOST if isinstance(x, (int, float)) else TRACED).power(gamma, x)


def cyclic_sizes(step_size_up: Any, step_size_down: Any) -> tuple[float, float]:
    """torch's ``total_size`` and ``step_ratio``."""
    up = float(step_size_up)
    down = float(step_size_down) if step_size_down is not None else up
    total_size = up + down
    return total_size, up / total_size


def cyclic_scale(mode: str, gamma: float, scale_fn: Callable[[Any], Any] | None,
                 scale_mode: str) -> tuple[Callable[[Any], Any], str]:
    """torch's check of ``mode`` and its scale function; a built-in ``mode`` sets its own
    ``scale_mode``."""
    if mode not in ["triangular", "triangular2", "exp_range"] and scale_fn is None:
        raise ValueError("mode is invalid and scale_fn is None")
    if scale_fn is not None:
        return scale_fn, scale_mode
    if mode == "triangular":
        return triangular_scale_fn, "cycle"
    if mode == "triangular2":
        return triangular2_scale_fn, "cycle"
    return (lambda x: exp_range_scale_fn(gamma, x)), "iterations"


def cyclic_shape(step_size_up: Any, step_size_down: Any, mode: str, gamma: float,
                 scale_fn: Callable[[Any], Any] | None, scale_mode: str) -> CyclicShape:
    return CyclicShape(*cyclic_sizes(step_size_up, step_size_down),
                       *cyclic_scale(mode, gamma, scale_fn, scale_mode))


def cyclic_position(m: Any, e: Any, shape: CyclicShape) -> tuple[Any, Any]:
    """``(scale_factor, scale)`` at epoch ``e``: where in the cycle, and the amplitude."""
    cycle = m.floor(1 + m.num(e) / shape.total_size)
    x = 1.0 + m.num(e) / shape.total_size - cycle
    ratio = shape.step_ratio
    scale_factor = m.cond(x <= ratio, lambda: x / ratio, lambda: (x - 1) / (ratio - 1))
    scale = shape.scale_fn(cycle if shape.scale_mode == "cycle" else e)
    return scale_factor, scale


def cyclic_lr_value(base_lr: Any, max_lr: Any, scale_factor: Any, scale: Any) -> Any:
    base_height = (max_lr - base_lr) * scale_factor
    return base_lr + base_height * scale


def cyclic_momentum_value(base_momentum: Any, max_momentum: Any, scale_factor: Any,
                          scale: Any) -> Any:
    base_height = (max_momentum - base_momentum) * scale_factor
    return max_momentum - base_height * scale


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
    ``step_size_up`` steps up and ``step_size_down`` down.

    Args:
      base_lr: the lower bound of the cycle (the lr at construction).
      max_lr: the upper bound of the cycle.
      step_size_up: the number of steps of the rising half.
      step_size_down: the number of steps of the falling half (``None``: ``step_size_up``).
      mode: ``"triangular"`` (constant amplitude), ``"triangular2"`` (halved each cycle) or
        ``"exp_range"`` (scaled by ``gamma**t``); ignored when ``scale_fn`` is given.
      gamma: the factor of ``"exp_range"``.
      scale_fn: a custom amplitude, a function of the cycle or the iteration; it must be
        jax-traceable to be used with a traced ``t``.
      scale_mode: ``"cycle"`` or ``"iterations"``, what ``scale_fn`` is a function of.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.cyclic_lr(0.0, 1.0, step_size_up=2)
      >>> [schedule(t) for t in range(6)]
      [0.0, 0.5, 1.0, 0.5, 0.0, 0.5]
    """
    shape = cyclic_shape(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)

    def formula(m, t):
        return cyclic_lr_value(base_lr, max_lr, *cyclic_position(m, t, shape))

    return TorchSchedule(formula, base_lr, construction_reads_initial_lr=True)


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
    inversely to the lr, between ``max_momentum`` and ``base_momentum``.

    Args:
      base_lr: as :func:`cyclic_lr` (unused by the momentum, kept for the same signature).
      max_lr: as :func:`cyclic_lr` (unused by the momentum).
      step_size_up: as :func:`cyclic_lr`.
      step_size_down: as :func:`cyclic_lr`.
      mode: as :func:`cyclic_lr`.
      gamma: as :func:`cyclic_lr`.
      scale_fn: as :func:`cyclic_lr`.
      scale_mode: as :func:`cyclic_lr`.
      base_momentum: the momentum at the lr's peak.
      max_momentum: the momentum at the lr's trough (and at construction).

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> momentum``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.cyclic_momentum(0.0, 1.0, step_size_up=2,
      ...                                           base_momentum=0.5, max_momentum=0.9)
      >>> [round(schedule(t), 12) for t in range(5)]
      [0.9, 0.7, 0.5, 0.7, 0.9]
    """
    del base_lr, max_lr
    shape = cyclic_shape(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)

    def formula(m, t):
        return cyclic_momentum_value(base_momentum, max_momentum, *cyclic_position(m, t, shape))

    return TorchSchedule(formula, max_momentum)
