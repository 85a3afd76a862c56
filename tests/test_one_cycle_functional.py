"""``OneCycleLR`` with the functional API (issue 37, docs/porting.md "Schedules"): the lr is
:func:`optx.schedules.one_cycle_lr` and, as torch cycles SGD's ``momentum`` and Adam's/AdamW's
``beta1`` by default (``cycle_momentum=True``), that hyperparameter is
:func:`optx.schedules.one_cycle_momentum` with the same cycle (it needs ``max_lr`` for the
phase boundaries). Compared with torch's optimizer + ``OneCycleLR`` over a whole cycle in
float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from parity import make_params, max_rel_error, run_optx, run_torch

import optx
from optx.schedules import one_cycle_lr, one_cycle_momentum

torch.set_default_dtype(torch.float64)

CYCLE = dict(max_lr=0.05, total_steps=16, pct_start=0.25)


def _torch_one_cycle(cls, kwargs, params0, steps):
    class WithScheduler:  # run_torch's cls: the optimizer, its scheduler stepped after it
        def __init__(self, ps, **kw):
            self.opt = cls(ps, **kw)
            self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, **CYCLE)

        def step(self):
            self.opt.step()
            self.sched.step()

    return run_torch(WithScheduler, kwargs, params0, steps)


CASES = {
    "sgd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True),
            lambda: optx.sgd(lr=one_cycle_lr(**CYCLE), momentum=one_cycle_momentum(**CYCLE),
                             nesterov=True)),
    "adam": (torch.optim.Adam, dict(lr=0.1),
             lambda: optx.adam(lr=one_cycle_lr(**CYCLE),
                               betas=(one_cycle_momentum(**CYCLE), 0.999))),
    "adamw": (torch.optim.AdamW, dict(lr=0.1, weight_decay=0.1),
              lambda: optx.adamw(lr=one_cycle_lr(**CYCLE),
                                 betas=(one_cycle_momentum(**CYCLE), 0.999), weight_decay=0.1)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_one_cycle_functional_matches_torch(name):
    cls, kwargs, make = CASES[name]
    params0 = make_params(5)
    want = _torch_one_cycle(cls, kwargs, params0, CYCLE["total_steps"])
    got = run_optx(make(), params0, CYCLE["total_steps"])
    err = max_rel_error(got, want)
    assert err <= 1e-10, err


def test_without_cycling_momentum_differs():
    """The constant-beta1 port is not torch's OneCycleLR (its default cycle_momentum=True)."""
    cls, kwargs, _ = CASES["adam"]
    params0 = make_params(5)
    want = _torch_one_cycle(cls, kwargs, params0, CYCLE["total_steps"])
    got = run_optx(optx.adam(lr=one_cycle_lr(**CYCLE)), params0, CYCLE["total_steps"])
    assert max_rel_error(got, want) > 1e-4
    assert np.isfinite(max_rel_error(got, want))
