"""optx.optim.lr_scheduler against torch.optim.lr_scheduler: every class's lr (and momentum)
sequence, the step-order warning, chaining/sequencing and state_dict."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import pytest
import torch
import torch.optim.lr_scheduler as TL

import optx.optim as O
from optx.optim import lr_scheduler as L

torch.set_default_dtype(torch.float64)

STEPS = 40


def _pair(cls="SGD", **kw):
    kw = kw or {"lr": 0.1, "momentum": 0.9}
    groups_o = [{"params": jnp.zeros(2)}, {"params": jnp.zeros(1), "lr": 0.05}]
    groups_t = [{"params": [torch.zeros(2)]}, {"params": [torch.zeros(1)], "lr": 0.05}]
    return getattr(O, cls)(groups_o, **kw), getattr(torch.optim, cls)(groups_t, **kw)


CASES = [
    ("LambdaLR", dict(lr_lambda=lambda e: 0.95**e)),
    ("MultiplicativeLR", dict(lr_lambda=lambda e: 0.9)),
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.5)),
    ("ConstantLR", dict(factor=0.5, total_iters=4)),
    ("LinearLR", dict(start_factor=0.25, total_iters=6)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("PolynomialLR", dict(total_iters=8, power=2.0)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001)),
    ("CosineAnnealingWarmRestarts", dict(T_0=3, T_mult=2, eta_min=0.001)),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=4, mode="triangular2")),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=3, mode="exp_range", gamma=0.9)),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=STEPS + 1)),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=STEPS + 1, three_phase=True,
                        anneal_strategy="linear")),
]


def _compare(o_opt, t_opt, o_s, t_s, n=STEPS, metric=None):
    worst = 0.0
    for k in range(n):
        for og, tg in zip(o_opt.param_groups, t_opt.param_groups):
            worst = max(worst, abs(og["lr"] - tg["lr"]))
            if "momentum" in tg:
                worst = max(worst, abs(og["momentum"] - tg["momentum"]))
            if "betas" in tg:
                worst = max(worst, abs(og["betas"][0] - tg["betas"][0]))
        assert o_s.get_last_lr() == pytest.approx(t_s.get_last_lr(), abs=1e-14)
        assert getattr(o_s, "last_epoch", None) == getattr(t_s, "last_epoch", None)
        o_opt._opt_called = True
        t_opt._opt_called = True
        if metric is None:
            o_s.step()
            t_s.step()
        else:
            o_s.step(metric(k))
            t_s.step(metric(k))
    return worst


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_scheduler_matches_torch(name, kw):
    o_opt, t_opt = _pair()
    o_s, t_s = getattr(L, name)(o_opt, **kw), getattr(TL, name)(t_opt, **kw)
    assert o_s.base_lrs == pytest.approx(t_s.base_lrs)
    assert [g["initial_lr"] for g in o_opt.param_groups] == pytest.approx(
        [g["initial_lr"] for g in t_opt.param_groups])
    assert _compare(o_opt, t_opt, o_s, t_s) <= 1e-14


@pytest.mark.parametrize("name,kw", [
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=4)),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=STEPS + 1)),
])
def test_momentum_cycling_writes_betas(name, kw):
    o_opt, t_opt = _pair("Adam", lr=0.01)
    o_s, t_s = getattr(L, name)(o_opt, **kw), getattr(TL, name)(t_opt, **kw)
    assert _compare(o_opt, t_opt, o_s, t_s) <= 1e-14


def test_reduce_lr_on_plateau_matches_torch():
    o_opt, t_opt = _pair()
    kw = dict(mode="min", factor=0.5, patience=2, cooldown=1, min_lr=[0.0, 0.01])
    o_s, t_s = L.ReduceLROnPlateau(o_opt, **kw), TL.ReduceLROnPlateau(t_opt, **kw)

    def metric(k):
        return 1.0 / (1 + k) if k < 5 else 0.2 + 0.01 * (k % 3)

    assert _compare(o_opt, t_opt, o_s, t_s, metric=metric) <= 1e-14
    assert o_s.best == t_s.best and o_s.num_bad_epochs == t_s.num_bad_epochs


def test_reduce_lr_on_plateau_takes_one_element_arrays():
    # A loss kept as a (1,) array, as torch's float(tensor([x])) accepts it; more elements
    # raise torch's ValueError.
    o_opt, t_opt = _pair()
    o_s, t_s = L.ReduceLROnPlateau(o_opt, patience=0), TL.ReduceLROnPlateau(t_opt, patience=0)
    for k, x in enumerate([1.0, 2.0, 3.0]):
        o_s.step(jnp.array([[x]]) if k % 2 else jnp.array([x]))
        t_s.step(torch.tensor([x]))
    assert o_s.get_last_lr() == t_s.get_last_lr() and o_s.best == t_s.best
    with pytest.raises(ValueError, match="only one element"):
        o_s.step(jnp.array([1.0, 2.0]))


def test_sequential_and_chained_match_torch():
    o_opt, t_opt = _pair()
    o1, t1 = L.LinearLR(o_opt, start_factor=0.1, total_iters=4), TL.LinearLR(
        t_opt, start_factor=0.1, total_iters=4)
    o2, t2 = L.ExponentialLR(o_opt, gamma=0.9), TL.ExponentialLR(t_opt, gamma=0.9)
    o_s = L.SequentialLR(o_opt, [o1, o2], milestones=[5])
    t_s = TL.SequentialLR(t_opt, [t1, t2], milestones=[5])
    assert _compare(o_opt, t_opt, o_s, t_s) <= 1e-14

    o_opt, t_opt = _pair()
    o1, t1 = L.StepLR(o_opt, step_size=4, gamma=0.5), TL.StepLR(t_opt, step_size=4, gamma=0.5)
    o2, t2 = L.ExponentialLR(o_opt, gamma=0.95), TL.ExponentialLR(t_opt, gamma=0.95)
    o_s, t_s = L.ChainedScheduler([o1, o2]), TL.ChainedScheduler([t1, t2])
    assert _compare(o_opt, t_opt, o_s, t_s) <= 1e-14


def test_warning_when_scheduler_steps_before_optimizer():
    o_opt, _ = _pair()
    sched = L.StepLR(o_opt, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    o_opt, _ = _pair()
    sched = L.StepLR(o_opt, step_size=2)
    o_opt.step([jnp.zeros(2), jnp.zeros(1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()


def _order_warnings(M, opt, grads):
    """The order warnings of torch's protocol in three situations."""
    out = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step(grads)  # a step before any scheduler wraps step(): does not count
        s1 = M.StepLR(opt, step_size=2)
        s1.step()
        out.append(len(caught))
        opt.step(grads)  # counted from now on, for every later scheduler
        s2 = M.ExponentialLR(opt, gamma=0.9)
        s2.step()
        out.append(len(caught))
        opt.step = opt.step.__wrapped__.__get__(opt)  # step() replaced after the schedulers
        M.StepLR(opt, step_size=2)
        out.append([str(w.message)[:20] for w in caught])
    return out


def test_order_warning_counts_steps_as_torch_does():
    o_opt, t_opt = _pair()
    ours = _order_warnings(L, o_opt, [jnp.zeros(2), jnp.zeros(1)])
    t_params = [p for g in t_opt.param_groups for p in g["params"]]
    for p in t_params:
        p.grad = torch.zeros_like(p)
    theirs = _order_warnings(TL, t_opt, None)
    assert ours == theirs


def test_state_dict_round_trip_resumes():
    o_opt, t_opt = _pair()
    o_s = L.CosineAnnealingLR(o_opt, T_max=10)
    t_s = TL.CosineAnnealingLR(t_opt, T_max=10)
    for _ in range(4):
        o_opt._opt_called = True
        t_opt._opt_called = True
        o_s.step()
        t_s.step()
    sd = o_s.state_dict()
    assert sd["last_epoch"] == t_s.state_dict()["last_epoch"] == 4
    assert sd["base_lrs"] == t_s.state_dict()["base_lrs"]
    o_opt2, _ = _pair()
    o_opt2.load_state_dict(o_opt.state_dict())
    o_s2 = L.CosineAnnealingLR(o_opt2, T_max=10)
    o_s2.load_state_dict(sd)
    assert _compare(o_opt2, t_opt, o_s2, t_s, n=8) <= 1e-14


@pytest.mark.parametrize("which", ["cos+exp", "restarts+step", "lambda+mult", "seq-cos-mult"])
def test_composites_of_non_multiplicative_schedulers_match_torch(which):
    o_opt, t_opt = _pair()

    def members(opt, M):
        if which == "cos+exp":
            return [M.CosineAnnealingLR(opt, T_max=5), M.ExponentialLR(opt, gamma=0.9)]
        if which == "restarts+step":
            return [M.CosineAnnealingWarmRestarts(opt, T_0=3), M.StepLR(opt, 2)]
        if which == "lambda+mult":
            return [M.LambdaLR(opt, lambda e: 1 / (e + 1)), M.MultiplicativeLR(opt, lambda e: 0.9)]
        return [M.CosineAnnealingLR(opt, T_max=4), M.MultiplicativeLR(opt, lambda e: 0.8)]

    if which.startswith("seq"):
        o_s = L.SequentialLR(o_opt, members(o_opt, L), milestones=[3])
        t_s = TL.SequentialLR(t_opt, members(t_opt, TL), milestones=[3])
    else:
        o_s = L.ChainedScheduler(members(o_opt, L))
        t_s = TL.ChainedScheduler(members(t_opt, TL))
    assert _compare(o_opt, t_opt, o_s, t_s, n=20) <= 1e-14
