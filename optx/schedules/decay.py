"""Multiplicative decays: torch's StepLR, MultiStepLR, ExponentialLR, LinearLR, ConstantLR and
PolynomialLR. Each multiplies the current lr by a factor at every step, so each closed form is
the base lr times a factor of the step count."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from optx.schedules.torch_schedule import TorchSchedule, as_float


def step_lr(lr: float, step_size: int, gamma: float = 0.1) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.StepLR``:
    :math:`\text{lr}\,\gamma^{\lfloor t / \text{step\_size}\rfloor}`.
    """
    return TorchSchedule(
        lambda t: lr * as_float(gamma) ** (jnp.asarray(t) // step_size), lr, name="step_lr"
    )


def multi_step_lr(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.MultiStepLR``: :math:`\text{lr}\,\gamma^{n(t)}`, with
    :math:`n(t)` the number of milestones :math:`\le t`. Repeated milestones count each time
    (torch stacks them) and a milestone at 0 applies at construction."""
    ms = jnp.asarray(sorted(int(m) for m in milestones) or [0], dtype=jnp.int32)
    empty = len(milestones) == 0

    def closed_form(t):
        count = 0 if empty else jnp.sum(ms <= jnp.asarray(t))
        return lr * as_float(gamma) ** count

    return TorchSchedule(closed_form, lr, name="multi_step_lr")


def exponential_lr(lr: float, gamma: float) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.ExponentialLR``: :math:`\text{lr}\,\gamma^t`."""
    return TorchSchedule(
        lambda t: lr * as_float(gamma) ** jnp.asarray(t), lr, name="exponential_lr"
    )


def linear_lr(
    lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.LinearLR``: the factor goes linearly from ``start_factor``
    (at construction) to ``end_factor`` (after ``total_iters`` steps), then stays."""
    if start_factor > 1.0 or start_factor <= 0:
        raise ValueError(
            "Starting multiplicative factor expected to be greater than 0 and less or equal to 1."
        )
    if end_factor > 1.0 or end_factor < 0:
        raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")

    def closed_form(t):
        frac = jnp.minimum(as_float(total_iters), as_float(t)) / total_iters
        return lr * (start_factor + (end_factor - start_factor) * frac)

    return TorchSchedule(closed_form, lr, name="linear_lr")


def constant_lr(lr: float, factor: float = 1.0 / 3, total_iters: int = 5) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.ConstantLR``: ``lr * factor`` for the first ``total_iters``
    steps (from construction), then ``lr``."""
    if factor > 1.0 or factor < 0:
        raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")

    def closed_form(t):
        return lr * jnp.where(jnp.asarray(t) >= total_iters, as_float(1.0), as_float(factor))

    return TorchSchedule(closed_form, lr, name="constant_lr")


def polynomial_lr(lr: float, total_iters: int = 5, power: float = 1.0) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.PolynomialLR``:
    :math:`\text{lr}\,(1 - \min(t, T)/T)^{\text{power}}`."""

    def closed_form(t):
        # (T - min(T, t)) / T is exactly 0 at the end, where 1 - min(T, t)/T may not be.
        remaining = (total_iters - jnp.minimum(as_float(total_iters), as_float(t))) / total_iters
        return lr * remaining**power

    return TorchSchedule(closed_form, lr, name="polynomial_lr")
