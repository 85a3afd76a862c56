"""Schedulers follow param groups added after they were built, exactly as torch's do.

torch's schedulers read a group added later through ``param_groups`` wherever their formula
does (the chainable decays, CosineAnnealingLR's ratio branch, ReduceLROnPlateau) and fail
where they read per-group lists built at construction (``base_lrs``, ``lr_lambdas``,
``max_lrs``) or keys set at construction (``initial_lr``, ``swa_lr``): zip's ``ValueError`` or
a ``KeyError``. Each case runs on both sides (build, step, add a group, step on) and the
trajectories must be equal: every ``get_last_lr()``, every group's lr and momentum, where torch
raises the same exception and message at the same step, and the state_dict after it all.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.optim.lr_scheduler as TL
from scheduler_cases import CASES, groups, optimizers, plain
from torch.optim import swa_utils as TS

from optx.optim import lr_scheduler as L
from optx.optim import swa_utils as OS

NEW_GROUP = {"lr": 0.05}


def _add_group(opt, extra):
    if isinstance(opt, torch.optim.Optimizer):
        opt.add_param_group({"params": [torch.zeros(3)], **NEW_GROUP, **extra})
    else:
        opt.add_param_group({"params": jnp.zeros(3, jnp.float32), **NEW_GROUP, **extra})


def _trajectory(opt, sched, before, after, step, extra):
    """What a user sees: the lrs after each step, the error where one is raised, and the
    scheduler's state_dict at the end."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for k in range(before + after):
            if k == before:
                _add_group(opt, extra)
                out.append(("added", sched.get_last_lr(), groups(opt)))
            opt._opt_called = True
            try:
                step(sched, k)
            except Exception as e:
                out.append((type(e).__name__, str(e), groups(opt)))
                break
            out.append((k, sched.get_last_lr(), groups(opt)))
    out.append(("state", plain(sched.state_dict())))
    return out


def _compare(build, cls="SGD", before=3, after=12, step=lambda s, k: s.step(), extra=None):
    o_opt, t_opt = optimizers(cls)
    got = _trajectory(o_opt, build(L, OS, o_opt), before, after, step, extra or {})
    want = _trajectory(t_opt, build(TL, TS, t_opt), before, after, step, extra or {})
    assert got == want
    return want


@pytest.mark.parametrize("before", [0, 3])
@pytest.mark.parametrize("name", list(CASES))
def test_group_added_later_is_scheduled_as_torch(name, before):
    cls, build = CASES[name]
    _compare(build, cls, before=before)


def test_cosine_annealing_anneals_a_group_added_later():
    """The issue's case: torch goes on annealing the new group (ratio branch) over a whole half
    period, and raises only at the trough step, which reads base_lrs."""
    want = _compare(lambda M, S, o: M.CosineAnnealingLR(o, T_max=30, eta_min=1e-3), after=25)
    assert all(isinstance(k, int) for k, *_ in want[:3] + want[4:-1])
    assert len(want[-2][1]) == 3 and want[-2][1][2] < NEW_GROUP["lr"]
    trough = _compare(lambda M, S, o: M.CosineAnnealingLR(o, T_max=5), after=6)
    assert trough[-2][0] == "ValueError"


# Groups added with the keys a scheduler set at construction: torch then schedules them too.
WITH_KEYS = {
    "OneCycleLR": ("SGD", lambda M, S, o: M.OneCycleLR(o, max_lr=0.3, total_steps=40),
                   {"initial_lr": 0.012, "max_lr": 0.3, "min_lr": 1e-6, "max_momentum": 0.95,
                    "base_momentum": 0.85}),
    "SWALR": ("SGD", lambda M, S, o: S.SWALR(o, swa_lr=0.02, anneal_epochs=7),
              {"swa_lr": 0.004}),
    "LambdaLR-initial_lr": ("SGD", lambda M, S, o: M.LambdaLR(o, lambda e: 0.9**e),
                            {"initial_lr": 0.05}),
}


@pytest.mark.parametrize("name", list(WITH_KEYS))
def test_group_added_with_the_schedulers_keys(name):
    cls, build, extra = WITH_KEYS[name]
    _compare(build, cls, extra=extra)


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
                                  "ExponentialLR", "PolynomialLR", "CosineAnnealingLR"])
def test_step_with_epoch_after_a_group_is_added(name):
    """The closed forms map base_lrs: one value short, as in torch."""
    _compare(CASES[name][1], step=lambda s, k: s.step(k + 1) if k > 3 else s.step())


@pytest.mark.parametrize("min_lr", [0.0, [1e-3, 0.0]])
def test_reduce_lr_on_plateau_with_a_group_added_later(min_lr):
    """A scalar min_lr extends to the new group; a list raises torch's RuntimeError at the first
    reduction."""
    metrics = np.float32(1.0 + np.arange(30) * 0.01)  # never improves: reduces every 3 steps

    def build(M, S, o):
        return M.ReduceLROnPlateau(o, factor=0.5, patience=2, min_lr=min_lr)

    want = _compare(build, before=2, after=20, step=lambda s, k: s.step(metrics[k]))
    if isinstance(min_lr, list):
        assert want[-2][0] == "RuntimeError"
    else:
        assert want[-2][1][2] < NEW_GROUP["lr"]
