"""Multiplicative decays: torch's StepLR, MultiStepLR, ExponentialLR, LinearLR, ConstantLR and
PolynomialLR. Each multiplies the current lr by a factor at every step, so each closed form is
the base lr times a factor of the step count.

Each scheduler has two formulas, both in torch's operation order and shared with the
``optx.optim.lr_scheduler`` classes: ``*_closed_form(m, base_lr, e, ...)`` (torch's
``_get_closed_form_lr``) and ``*_chainable(m, lr, e, initial, ...)`` (torch's ``get_lr``;
``initial`` is true in the step made at construction). ``m`` is the arithmetic
(:data:`~optx.schedules.torch_schedule.HOST` or ``TRACED``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optx.schedules.torch_schedule import TorchSchedule

# ----------------------------------------------------------------------------- StepLR


def step_lr_closed_form(m: Any, base_lr: Any, e: Any, step_size: int, gamma: float) -> Any:
    return base_lr * m.power(gamma, e // step_size)


def step_lr_chainable(m: Any, lr: Any, e: Any, initial: Any, step_size: int,
                      gamma: float) -> Any:
    # torch tests e == 0 first: e % step_size is not computed at construction.
    return m.cond(e == 0, lambda: lr, lambda: m.cond(e % step_size != 0, lambda: lr,
                                                     lambda: lr * gamma))


def step_lr(lr: float, step_size: int, gamma: float = 0.1) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.StepLR``:
    :math:`\text{lr}\,\gamma^{\lfloor t / \mathit{step\_size}\rfloor}`.

    Args:
      lr: the initial learning rate (the optimizer's ``lr``).
      step_size: period of the decay, in steps.
      gamma: multiplicative factor of the decay.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.step_lr(0.1, step_size=2, gamma=0.5)
      >>> [schedule(t) for t in range(5)]
      [0.1, 0.1, 0.05, 0.05, 0.025]
    """
    return TorchSchedule(
        lambda m, t: step_lr_closed_form(m, lr, t, step_size, gamma), lr,
        lambda m, x, e: step_lr_chainable(m, x, e, e == 0, step_size, gamma),
        multiplicative=True,
    )


# ----------------------------------------------------------------------------- MultiStepLR


def multi_step_lr_closed_form(m: Any, base_lr: Any, e: Any, milestones: Sequence[int],
                              gamma: float) -> Any:
    """``milestones`` sorted, repeated ones repeated (torch's ``Counter.elements()``)."""
    return base_lr * m.power(gamma, m.count_le(milestones, e))


def multi_step_lr_chainable(m: Any, lr: Any, e: Any, initial: Any, milestones: Sequence[int],
                            gamma: float) -> Any:
    count = m.count_eq(milestones, e)
    return m.cond(count == 0, lambda: lr, lambda: lr * m.power(gamma, count))


def multi_step_lr(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.MultiStepLR``: :math:`\text{lr}\,\gamma^{n(t)}`, with
    :math:`n(t)` the number of milestones :math:`\le t`. Repeated milestones count each time
    (torch stacks them) and a milestone at 0 applies at construction.

    Args:
      lr: the initial learning rate.
      milestones: the steps at which the lr is multiplied by ``gamma``.
      gamma: multiplicative factor of the decay.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.multi_step_lr(1.0, milestones=[1, 3], gamma=0.5)
      >>> [schedule(t) for t in range(5)]
      [1.0, 0.5, 0.5, 0.25, 0.25]
    """
    ms = sorted(int(x) for x in milestones)
    return TorchSchedule(
        lambda m, t: multi_step_lr_closed_form(m, lr, t, ms, gamma), lr,
        lambda m, x, e: multi_step_lr_chainable(m, x, e, e == 0, ms, gamma),
        multiplicative=True,
    )


# ----------------------------------------------------------------------------- ExponentialLR


def exponential_lr_closed_form(m: Any, base_lr: Any, e: Any, gamma: float) -> Any:
    return base_lr * m.power(gamma, e)


def exponential_lr_chainable(m: Any, lr: Any, e: Any, initial: Any, gamma: float) -> Any:
    return m.cond(initial, lambda: lr, lambda: lr * gamma)


def exponential_lr(lr: float, gamma: float) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.ExponentialLR``: :math:`\text{lr}\,\gamma^t`.

    Args:
      lr: the initial learning rate.
      gamma: multiplicative factor of the decay, applied at every step.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.exponential_lr(1.0, gamma=0.5)
      >>> [schedule(t) for t in range(4)]
      [1.0, 0.5, 0.25, 0.125]
    """
    return TorchSchedule(
        lambda m, t: exponential_lr_closed_form(m, lr, t, gamma), lr,
        lambda m, x, e: exponential_lr_chainable(m, x, e, e == 0, gamma),
        multiplicative=True,
    )


# ----------------------------------------------------------------------------- LinearLR


def check_linear_lr(start_factor: float, end_factor: float) -> None:
    if start_factor > 1.0 or start_factor <= 0:
        raise ValueError(
            "Starting multiplicative factor expected to be greater than 0 and less or equal to 1."
        )
    if end_factor > 1.0 or end_factor < 0:
        raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")


def linear_lr_closed_form(m: Any, base_lr: Any, e: Any, start_factor: float,
                          end_factor: float, total_iters: int) -> Any:
    return base_lr * (
        start_factor
        + (end_factor - start_factor) * m.minimum(total_iters, m.num(e)) / total_iters
    )


def linear_lr_chainable(m: Any, lr: Any, e: Any, initial: Any, start_factor: float,
                        end_factor: float, total_iters: int) -> Any:
    def ramp():
        return lr * (
            1.0
            + (end_factor - start_factor)
            / (total_iters * start_factor + (m.num(e) - 1) * (end_factor - start_factor))
        )

    return m.cond(
        e == 0,
        lambda: lr * start_factor,
        lambda: m.cond(initial | (e > total_iters), lambda: lr, ramp),
    )


def linear_lr(
    lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.LinearLR``: the factor goes linearly from ``start_factor``
    (at construction) to ``end_factor`` (after ``total_iters`` steps), then stays.

    Args:
      lr: the initial learning rate.
      start_factor: the factor at construction, in (0, 1].
      end_factor: the factor from ``total_iters`` on, in [0, 1].
      total_iters: the number of steps of the ramp.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.linear_lr(1.0, start_factor=0.5, total_iters=2)
      >>> [schedule(t) for t in range(4)]
      [0.5, 0.75, 1.0, 1.0]
    """
    check_linear_lr(start_factor, end_factor)
    return TorchSchedule(
        lambda m, t: linear_lr_closed_form(m, lr, t, start_factor, end_factor, total_iters), lr,
        lambda m, x, e: linear_lr_chainable(m, x, e, e == 0, start_factor, end_factor,
                                            total_iters),
        multiplicative=True,
    )


# ----------------------------------------------------------------------------- ConstantLR


def check_constant_lr(factor: float) -> None:
    if factor > 1.0 or factor < 0:
        raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")


def constant_lr_closed_form(m: Any, base_lr: Any, e: Any, factor: float,
                            total_iters: int) -> Any:
    return base_lr * (factor + (e >= total_iters) * (1 - factor))


def constant_lr_chainable(m: Any, lr: Any, e: Any, initial: Any, factor: float,
                          total_iters: int) -> Any:
    return m.cond(
        e == 0,
        lambda: lr * factor,
        lambda: m.cond(e != total_iters, lambda: lr, lambda: lr * (1.0 / factor)),
    )


def constant_lr(lr: float, factor: float = 1.0 / 3, total_iters: int = 5) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.ConstantLR``: ``lr * factor`` for the first ``total_iters``
    steps (from construction), then ``lr``.

    Args:
      lr: the initial learning rate.
      factor: the factor applied until ``total_iters``, in [0, 1].
      total_iters: the number of steps the factor applies.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.constant_lr(1.0, factor=0.5, total_iters=2)
      >>> [schedule(t) for t in range(4)]
      [0.5, 0.5, 1.0, 1.0]
    """
    check_constant_lr(factor)
    return TorchSchedule(
        lambda m, t: constant_lr_closed_form(m, lr, t, factor, total_iters), lr,
        lambda m, x, e: constant_lr_chainable(m, x, e, e == 0, factor, total_iters),
        multiplicative=True,
    )


# ----------------------------------------------------------------------------- PolynomialLR


def polynomial_lr_closed_form(m: Any, base_lr: Any, e: Any, total_iters: int,
                              power: float) -> Any:
    # max(0, .) changes nothing on the host (e <= T gives e / T <= 1 exactly); under jit XLA
    # may divide by T as a multiplication by 1 / T, a hair above 1, and 0 ** power must not
    # become a negative number's power (nan).
    return base_lr * m.maximum(0.0, 1.0 - m.minimum(total_iters, m.num(e)) / total_iters) ** power


def polynomial_lr_chainable(m: Any, lr: Any, e: Any, initial: Any, total_iters: int,
                            power: float) -> Any:
    def decayed():
        e_ = m.num(e)
        # max(0, .): as in the closed form, a no-op on the host.
        return lr * (m.maximum(0.0, 1.0 - e_ / total_iters)
                     / (1.0 - (e_ - 1) / total_iters)) ** power

    return m.cond(initial | (e > total_iters), lambda: lr, decayed)


def polynomial_lr(lr: float, total_iters: int = 5, power: float = 1.0) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.PolynomialLR``:
    :math:`\text{lr}\,(1 - \min(t, T)/T)^{\text{power}}`.

    Args:
      lr: the initial learning rate.
      total_iters: ``T``, the number of steps to reach 0.
      power: the power of the polynomial.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.polynomial_lr(1.0, total_iters=4, power=2.0)
      >>> [schedule(t) for t in range(6)]
      [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    """
    return TorchSchedule(
        lambda m, t: polynomial_lr_closed_form(m, lr, t, total_iters, power), lr,
        lambda m, x, e: polynomial_lr_chainable(m, x, e, e == 0, total_iters, power),
        multiplicative=True,
    )
