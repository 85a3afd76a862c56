"""Schedules made of schedules: torch's SequentialLR and ChainedScheduler."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from optx.schedules.torch_schedule import MULTIPLICATIVE, TorchSchedule, as_float


def sequential_lr(schedules: Sequence[TorchSchedule], milestones: Sequence[int]) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.SequentialLR``: ``schedules[i]`` runs from
    ``milestones[i-1]`` on, restarted at its own step 0 (torch restarts each scheduler from its
    closed form at epoch 0 when its milestone is reached).

    Children are built with the optimizer's lr. MultiplicativeLR and SWALR have no closed form and
    their restart (``_update_lr(0)``) keeps the current lr: they continue from the lr the previous
    child reached (MultiplicativeLR times ``lr_lambda(0)``). Duplicate milestones skip a child and
    a milestone at 0 starts with a later one. Not reproduced: a ChainedScheduler nested as a
    SequentialLR child, whose members torch re-steps outside their initial mode.
    """
    schedules = list(schedules)
    milestones = [int(m) for m in milestones]
    if len(schedules) < 1:
        raise ValueError("SequentialLR expects at least one scheduler, but got no scheduler.")
    if len(milestones) != len(schedules) - 1:
        raise ValueError(
            "Sequential Schedulers expects number of schedulers provided to be one more than the "
            f"number of milestone points, but got number of schedulers {len(schedules)} and the "
            f"number of milestones to be equal to {len(milestones)}"
        )
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
            # A static value even when first reached while tracing (inside jit).
            with jax.ensure_compile_time_eval():
                restarted[i] = s.rebase(float(closed_form(starts[i] - 1)))
        return restarted[i]

    def closed_form(t):
        if isinstance(t, int):
            i = bisect_right(milestones, t)
            return as_float(child(i)(t - starts[i]))
        t = jnp.asarray(t)
        value = as_float(schedules[0](t))
        for i in range(1, len(schedules)):
            local = jnp.maximum(t - starts[i], 0)
            value = jnp.where(t >= starts[i], as_float(child(i)(local)), value)
        return value

    return TorchSchedule(closed_form, schedules[0].base, "absolute", name="sequential_lr")


def chained_scheduler(schedules: Sequence[TorchSchedule]) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.ChainedScheduler``: every scheduler steps, in order, on the
    same lr.

    When every member is multiplicative (Step, MultiStep, Exponential, Linear, Constant,
    Polynomial, Multiplicative), the chain is the product of the members' factors, O(1) per
    call. Otherwise it runs torch's recursion step by step: O(t) (a ``fori_loop`` for a traced
    ``t``)."""
    schedules = list(schedules)
    if not schedules:
        raise ValueError("ChainedScheduler expects at least one scheduler")
    base = schedules[0].base

    if all(s.kind == MULTIPLICATIVE for s in schedules):

        def closed_form(t):
            value = as_float(base)
            for s in schedules:
                value = value * (as_float(s(t)) / s.base)
            return value

        return TorchSchedule(closed_form, base, MULTIPLICATIVE, name="chained_scheduler")

    def apply(lr, e):
        for i, s in enumerate(schedules):
            if i > 0 and s.name == "cyclic_lr" and isinstance(e, int) and e == 0:
                # CyclicLR's construction step reads base_lrs before replacing them with its
                # base_lr: it yields the optimizer's initial_lr, set by the first scheduler.
                lr = as_float(base)
                continue
            a, b = s.step_map(e)
            lr = a * lr + b
        return lr

    def recursion(t):
        lr = apply(as_float(base), 0)
        return jax.lax.fori_loop(1, t + 1, lambda e, lr: apply(lr, e), lr)

    compiled = jax.jit(recursion)

    def stepped(t):
        # A Python int goes through one compiled loop rather than t op-by-op steps.
        return compiled(t) if isinstance(t, int) else recursion(jnp.asarray(t))

    return TorchSchedule(stepped, base, "absolute", name="chained_scheduler")
