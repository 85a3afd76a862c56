"""Host-side scheduler values are torch's Python floats, bit for bit, with jax_enable_x64 OFF.

torch does scheduler math on the host in Python floats; optx.optim.lr_scheduler runs the same
formulas (from optx.schedules) in the same operation order on Python floats, so
``get_last_lr()``, the lrs (and momenta) in ``param_groups`` and ReduceLROnPlateau's decisions
are equal as Python floats (``==``) to torch's, whatever x64 is. The cast to the parameter dtype
happens only inside the optimizer's update.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.optim.lr_scheduler as TL
from scheduler_cases import CASES, STEPS
from scheduler_cases import groups as _groups
from scheduler_cases import lam as _lam
from scheduler_cases import mult as _mult
from scheduler_cases import optimizers as _optimizers
from scheduler_cases import plain as _plain
from torch.optim import swa_utils as TS

import optx.optim as O
from optx.optim import lr_scheduler as L
from optx.optim import swa_utils as OS


def _assert_same(o_opt, t_opt, o_s, t_s, where):
    got, want = o_s.get_last_lr(), t_s.get_last_lr()
    assert all(type(v) is float for v in got), (where, got)
    assert got == want, (where, got, want)
    assert _groups(o_opt) == _groups(t_opt), (where, _groups(o_opt), _groups(t_opt))


def _run(o_opt, t_opt, o_s, t_s, step):
    _assert_same(o_opt, t_opt, o_s, t_s, "construction")
    for k in range(STEPS):
        o_opt._opt_called = True
        t_opt._opt_called = True
        step(o_s, k)
        step(t_s, k)
        _assert_same(o_opt, t_opt, o_s, t_s, k)


@pytest.fixture(autouse=True)
def _x64_off():
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert jnp.zeros(()).dtype == jnp.float32
        yield


@pytest.mark.parametrize("name", list(CASES))
def test_get_last_lr_is_torchs_python_float(name):
    cls, build = CASES[name]
    o_opt, t_opt = _optimizers(cls, lr=0.01) if cls == "Adam" else _optimizers()
    o_s, t_s = build(L, OS, o_opt), build(TL, TS, t_opt)
    _run(o_opt, t_opt, o_s, t_s, lambda s, k: s.step())
    # torch's state_dict, key for key and value for value (callables aside).
    assert _plain(o_s.state_dict()) == _plain(t_s.state_dict())


def test_reduce_lr_on_plateau_decisions_are_torchs():
    o_opt, t_opt = _optimizers()
    kw = dict(mode="max", factor=0.7, patience=2, threshold=0.01, cooldown=1,
              min_lr=[1e-3, 0.0])
    o_s, t_s = L.ReduceLROnPlateau(o_opt, **kw), TL.ReduceLROnPlateau(t_opt, **kw)
    metrics = np.float32(np.cos(np.arange(STEPS) * 0.7) + np.arange(STEPS) * 0.01)

    def step(s, k):
        s.step(metrics[k])

    _run(o_opt, t_opt, o_s, t_s, step)
    assert (o_s.best, o_s.num_bad_epochs, o_s.cooldown_counter) == (
        t_s.best, t_s.num_bad_epochs, t_s.cooldown_counter)
    assert o_s.state_dict() == t_s.state_dict()


def test_warm_restarts_fractional_epochs_are_torchs():
    o_opt, t_opt = _optimizers()
    o_s = L.CosineAnnealingWarmRestarts(o_opt, T_0=4, T_mult=2, eta_min=1e-4)
    t_s = TL.CosineAnnealingWarmRestarts(t_opt, T_0=4, T_mult=2, eta_min=1e-4)
    iters = 7

    def step(s, k):
        if k % 10 == 9:
            s.step()  # interleaved plain steps continue from the fractional position
        else:
            s.step(k // iters + (k % iters) / iters)

    _run(o_opt, t_opt, o_s, t_s, step)


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
                                  "ExponentialLR", "PolynomialLR", "CosineAnnealingLR"])
def test_step_with_epoch_uses_torchs_closed_form(name):
    _, build = CASES[name]
    o_opt, t_opt = _optimizers()
    o_s, t_s = build(L, OS, o_opt), build(TL, TS, t_opt)
    _run(o_opt, t_opt, o_s, t_s, lambda s, k: s.step((k * 7) % 45))


def test_update_casts_the_python_lr_to_float32_inside_the_step():
    """SGD + StepLR in float32: params follow torch's float32 run exactly, the group lr stays a
    Python float."""
    params = np.linspace(-1, 1, 5).astype(np.float32)
    opt = O.SGD(jnp.asarray(params), lr=0.1)
    sched = L.StepLR(opt, step_size=2, gamma=0.7)
    p = torch.tensor(params, requires_grad=True)
    t_opt = torch.optim.SGD([p], lr=0.1)
    t_sched = TL.StepLR(t_opt, step_size=2, gamma=0.7)
    for _ in range(6):
        opt.step(jnp.sin(3 * opt.params))
        p.grad = torch.sin(3 * p.detach())
        t_opt.step()
        sched.step()
        t_sched.step()
        assert opt.param_groups[0]["lr"] == t_opt.param_groups[0]["lr"]
        assert type(opt.param_groups[0]["lr"]) is float
    assert opt.params.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(opt.params), p.detach().numpy())


def test_same_floats_with_x64_on():
    """The host arithmetic does not depend on x64: every case again with it on."""
    with jax.enable_x64(True):
        for cls, build in CASES.values():
            o_opt, t_opt = _optimizers(cls, lr=0.01) if cls == "Adam" else _optimizers()
            o_s, t_s = build(L, OS, o_opt), build(TL, TS, t_opt)
            _run(o_opt, t_opt, o_s, t_s, lambda s, k: s.step())


RESUMED = {
    "StepLR": lambda M, S, o: M.StepLR(o, 4, 0.7, last_epoch=5),
    "MultiStepLR": lambda M, S, o: M.MultiStepLR(o, [3, 10, 10], 0.7, last_epoch=5),
    "ConstantLR": lambda M, S, o: M.ConstantLR(o, 0.3, 7, last_epoch=5),
    "LinearLR": lambda M, S, o: M.LinearLR(o, 0.3, 0.9, 17, last_epoch=5),
    "ExponentialLR": lambda M, S, o: M.ExponentialLR(o, 0.93, last_epoch=5),
    "PolynomialLR": lambda M, S, o: M.PolynomialLR(o, 40, 1.7, last_epoch=5),
    "CosineAnnealingLR": lambda M, S, o: M.CosineAnnealingLR(o, 13, 1e-3, last_epoch=5),
    "CosineAnnealingWarmRestarts": lambda M, S, o: M.CosineAnnealingWarmRestarts(
        o, 3, 2, 1e-3, last_epoch=5),
    "LambdaLR": lambda M, S, o: M.LambdaLR(o, _lam, last_epoch=5),
    "MultiplicativeLR": lambda M, S, o: M.MultiplicativeLR(o, _mult, last_epoch=5),
    "SWALR": lambda M, S, o: S.SWALR(o, 0.02, 23, last_epoch=5),
}


@pytest.mark.parametrize("name", list(RESUMED))
def test_resume_with_last_epoch_is_torchs(name):
    """A scheduler built with ``last_epoch >= 0`` on groups that already hold ``initial_lr``
    (torch's chainable forms then take their resume branches)."""
    o_opt, t_opt = _optimizers()
    for opt in (o_opt, t_opt):
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"] * 2
    o_s, t_s = RESUMED[name](L, OS, o_opt), RESUMED[name](TL, TS, t_opt)
    _run(o_opt, t_opt, o_s, t_s, lambda s, k: s.step())
