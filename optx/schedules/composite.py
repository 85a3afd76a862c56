"""Schedules made of schedules: torch's SequentialLR and ChainedScheduler."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from optx.schedules.torch_schedule import HOST, TRACED, TorchSchedule, as_float


def check_sequential(n_schedulers: int, n_milestones: int, name: str = "SequentialLR") -> None:
    """torch's checks of SequentialLR's counts (``name``: the class in the message)."""
    if n_schedulers < 1:
        raise ValueError(f"{name} expects at least one scheduler, but got no scheduler.")
    if n_milestones != n_schedulers - 1:
        raise ValueError(
            "Sequential Schedulers expects number of schedulers provided to be one more than the "
            f"number of milestone points, but got number of schedulers {n_schedulers} and the "
            f"number of milestones to be equal to {n_milestones}"
        )


def check_chained(n_schedulers: int, name: str = "ChainedScheduler") -> None:
    if n_schedulers < 1:
        raise ValueError(
            f"{name} expects at least one scheduler to be chained, but got no scheduler."
        )


def sequential_lr(schedules: Sequence[TorchSchedule], milestones: Sequence[int]) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.SequentialLR``: ``schedules[i]`` runs from
    ``milestones[i-1]`` on, restarted at its own step 0 (torch restarts each scheduler from its
    closed form at epoch 0 when its milestone is reached).

    Children are built with the optimizer's lr. MultiplicativeLR and SWALR have no closed form and
    their restart (``_update_lr(0)``) keeps the current lr: they continue from the lr the previous
    child reached (MultiplicativeLR times ``lr_lambda(0)``). Duplicate milestones skip a child and
    a milestone at 0 starts with a later one. Not reproduced: a ChainedScheduler nested as a
    SequentialLR child, whose members torch re-steps outside their initial mode.

    Args:
      schedules: the schedules, in the order they run.
      milestones: the steps at which the next schedule starts (one fewer than ``schedules``).

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> S = optx.schedules
      >>> schedule = S.sequential_lr([S.constant_lr(1.0, factor=0.5, total_iters=10),
      ...                             S.exponential_lr(1.0, gamma=0.5)], milestones=[2])
      >>> [schedule(t) for t in range(5)]
      [0.5, 0.5, 1.0, 0.5, 0.25]
    """
    schedules = list(schedules)
    milestones = [int(x) for x in milestones]
    check_sequential(len(schedules), len(milestones))
    starts = [0, *milestones]
    restarted: dict[int, TorchSchedule] = {}

    def child(i: int) -> TorchSchedule:
        # torch restarts child i at its milestone with _update_lr(0). MultiplicativeLR and SWALR
        # keep the current lr there, so they continue from the lr one step earlier; the others
        # restart from their closed form at epoch 0.
        s = schedules[i]
        if s.rebase is None or starts[i] == 0:
            return s
        if i not in restarted:
            # A host value (a Python int t), static even when first reached inside jit.
            restarted[i] = s.rebase(s_value(starts[i] - 1))
        return restarted[i]

    def s_value(t: int) -> float:
        i = bisect_right(milestones, t)
        return child(i)(t - starts[i])

    def formula(m, t):
        if m is HOST:
            return s_value(t)
        value = as_float(schedules[0](t))
        for i in range(1, len(schedules)):
            local = jnp.maximum(t - starts[i], 0)
            value = jnp.where(t >= starts[i], as_float(child(i)(local)), value)
        return value

    return TorchSchedule(formula, schedules[0].base)


def chained_scheduler(schedules: Sequence[TorchSchedule]) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.ChainedScheduler``: every scheduler steps, in order, on the
    same lr.

    When every member is multiplicative (Step, MultiStep, Exponential, Linear, Constant,
    Polynomial, Multiplicative), the chain is the product of the members' factors, O(1) per
    call. Otherwise it runs torch's recursion step by step: O(t) (a ``fori_loop`` for a traced
    ``t``).

    Args:
      schedules: the schedules, in the order torch steps them.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> S = optx.schedules
      >>> schedule = S.chained_scheduler([S.constant_lr(1.0, factor=0.5, total_iters=2),
      ...                                 S.exponential_lr(1.0, gamma=0.5)])
      >>> [schedule(t) for t in range(4)]
      [0.5, 0.25, 0.25, 0.125]
    """
    schedules = list(schedules)
    check_chained(len(schedules))
    base = schedules[0].base

    if all(s.multiplicative for s in schedules):

        def product(m, t):
            value = base if m is HOST else as_float(base)
            for s in schedules:
                value = value * (s(t) / s.base)
            return value

        return TorchSchedule(product, base, multiplicative=True)

    def apply(m, lr, e):
        for i, s in enumerate(schedules):
            if i > 0 and s.construction_reads_initial_lr:
                lr = m.cond(e == 0, lambda: base, lambda s=s, lr=lr: s.get_lr(m, lr, e))
            else:
                lr = s.get_lr(m, lr, e)
        return lr

    def recursion(m, t):
        if m is HOST:
            lr = base
            for e in range(t + 1):
                lr = apply(HOST, lr, e)
            return lr
        lr = as_float(apply(TRACED, as_float(base), 0))
        return jax.lax.fori_loop(1, t + 1, lambda e, x: as_float(apply(TRACED, x, e)), lr)

    return TorchSchedule(recursion, base)
