"""float64 parity against torch for RMSprop, Adagrad, Adadelta, NAdam and Rprop: every option
and their combinations, 50 steps, ≤1e-10 relative."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity import grad_fn, make_params, max_rel_error, run_optx, run_torch

import optx

STEPS = 50
TOL = 1e-10


def grid(**axes):
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


CONFIGS = {
    "rmsprop": (torch.optim.RMSprop, optx.rmsprop, [dict()] + grid(
        lr=[0.01], alpha=[0.9], eps=[1e-6], weight_decay=[0.0, 0.1], momentum=[0.0, 0.8],
        centered=[False, True], maximize=[False, True])),
    "adagrad": (torch.optim.Adagrad, optx.adagrad, [dict()] + grid(
        lr=[0.1], lr_decay=[0.0, 0.05], weight_decay=[0.0, 0.1],
        initial_accumulator_value=[0.0, 0.5], eps=[1e-8], maximize=[False, True])),
    "adadelta": (torch.optim.Adadelta, optx.adadelta, [dict()] + grid(
        lr=[1.0, 0.3], rho=[0.9, 0.5], eps=[1e-6, 1e-4], weight_decay=[0.0, 0.1],
        maximize=[False, True])),
    "nadam": (torch.optim.NAdam, optx.nadam, [dict()] + grid(
        lr=[0.01], betas=[(0.8, 0.95)], weight_decay=[0.0, 0.1], momentum_decay=[4e-3, 0.05],
        decoupled_weight_decay=[False, True], maximize=[False, True])),
    "rprop": (torch.optim.Rprop, optx.rprop, [dict()] + grid(
        lr=[0.01, 0.2], etas=[(0.5, 1.2), (0.3, 1.5)], step_sizes=[(1e-6, 50), (1e-3, 0.05)],
        maximize=[False, True])),
}

CASES = [(name, cls, fn, kw) for name, (cls, fn, kws) in CONFIGS.items() for kw in kws]


@pytest.mark.parametrize(
    "name,torch_cls,optx_fn,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_parity_float64(name, torch_cls, optx_fn, kwargs):
    params0 = make_params(seed=len(kwargs))
    expected = run_torch(torch_cls, kwargs, params0, STEPS)
    got = run_optx(optx_fn(**kwargs), params0, STEPS)
    assert max_rel_error(got, expected) <= TOL


def _last(configs):
    """torch's defaults and the grid's last config (every option switched on)."""
    return [configs[0], configs[-1]]


STATE_CASES = [(name, cls, fn, kw) for name, (cls, fn, kws) in CONFIGS.items()
               for kw in _last(kws)]


def _run_both(torch_cls, optx_fn, kwargs, schedules, steps):
    """Runs torch and optx side by side; torch's param group gets each scheduled value before
    each step, as an lr scheduler (or a user) would set it. Returns both final states."""
    params0 = make_params(seed=1)
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    opt = torch_cls(ps, **kwargs)
    tx = optx_fn(**{**kwargs, **schedules})
    params = [jnp.asarray(p) for p in params0]
    state = tx.init(params)
    step = jax.jit(lambda p, s, g: _apply(tx, p, s, g))
    for k in range(steps):
        for key, sched in schedules.items():
            opt.param_groups[0][key] = (
                tuple(float(v(k)) if callable(v) else v for v in sched) if isinstance(sched, tuple)
                else float(sched(k))
            )
        gs = grad_fn([p.detach().numpy() for p in ps], k)
        for p, g in zip(ps, gs, strict=True):
            p.grad = torch.from_numpy(np.array(g, copy=True))
        opt.step()
        params, state = step(params, state, [jnp.asarray(g) for g in gs])
        assert max_rel_error([[np.asarray(p) for p in params]],
                             [[p.detach().numpy() for p in ps]]) <= TOL, f"step {k}"
    return opt, ps, state


def _apply(tx, params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optx.apply_updates(params, updates), state


@pytest.mark.parametrize(
    "name,torch_cls,optx_fn,kwargs", STATE_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(STATE_CASES)],
)
def test_state_matches_torch(name, torch_cls, optx_fn, kwargs):
    """Every torch state entry has its optx counterpart under the same name, with the same value:
    per-parameter buffers in ``slots``, NAdam's ``mu_product`` in ``scalars`` (bit for bit)."""
    opt, ps, state = _run_both(torch_cls, optx_fn, kwargs, {}, 20)
    for i, p in enumerate(ps):
        torch_state = opt.state[p]
        assert float(torch_state["step"]) == int(state.count) == 20
        assert set(torch_state) - {"step"} == set(state.slots) | set(state.scalars)
        for key, buf in state.slots.items():
            got, want = np.asarray(buf[i]), torch_state[key].numpy()
            assert max_rel_error([[got]], [[want]]) <= TOL, key
        for key, value in state.scalars.items():
            assert float(value) == float(torch_state[key]), key


def _wave(base, amp):
    """A schedule usable with traced counts (optx) and Python ints (torch)."""
    return lambda count: base * (1.0 + amp * jnp.cos(0.3 * count))


SCHEDULED = [
    ("rmsprop", dict(centered=True), dict(lr=_wave(0.01, 0.5), alpha=_wave(0.9, 0.05),
                                          momentum=_wave(0.5, 0.5), weight_decay=_wave(0.1, 1))),
    ("adagrad", dict(), dict(lr=_wave(0.1, 0.5), lr_decay=_wave(0.05, 1), eps=_wave(1e-3, 0.5))),
    ("adadelta", dict(), dict(lr=_wave(0.5, 0.5), rho=_wave(0.8, 0.2))),
    ("nadam", dict(decoupled_weight_decay=True),
     dict(lr=_wave(0.01, 0.5), betas=(_wave(0.8, 0.1), 0.95), momentum_decay=_wave(0.01, 0.5),
          weight_decay=_wave(0.1, 1))),
    # lr only seeds Rprop's step sizes: later lr values change nothing, in torch as here.
    ("rprop", dict(), dict(lr=_wave(0.05, 0.5), etas=(_wave(0.4, 0.2), _wave(1.3, 0.1)),
                           step_sizes=(1e-3, _wave(0.05, 0.5)))),
]


@pytest.mark.parametrize("name,kwargs,schedules", SCHEDULED, ids=[c[0] for c in SCHEDULED])
def test_scheduled_hyperparams_match_torch_group_edits(name, kwargs, schedules):
    """A scheduled hyperparameter equals torch with the param group's value set before each
    step, for every float hyperparameter (the state stores the value the next update uses)."""
    torch_cls, optx_fn, _ = CONFIGS[name]
    _run_both(torch_cls, optx_fn, kwargs, schedules, 30)


def test_nadam_mu_product_float32_without_x64():
    """Without x64, ``mu_product`` is float32, as torch's is under its default float32 dtype
    (torch multiplies it in an f32 tensor, f32(mp * f32(mu))); with x64 it is float64, as torch's
    under default float64, and then bit-exact (``test_state_matches_torch``)."""
    params0 = make_params(seed=2, dtype=np.float32)
    torch.set_default_dtype(torch.float32)
    try:
        ps = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
        opt = torch.optim.NAdam(ps, lr=0.01, momentum_decay=0.05)
        with jax.enable_x64(False):
            tx = optx.nadam(lr=0.01, momentum_decay=0.05)
            params = [jnp.asarray(p) for p in params0]
            state = tx.init(params)
            step = jax.jit(lambda p, s, g: _apply(tx, p, s, g))
            for k in range(30):
                gs = grad_fn([p.detach().numpy() for p in ps], k)
                for p, g in zip(ps, gs, strict=True):
                    p.grad = torch.from_numpy(np.array(g, copy=True))
                opt.step()
                params, state = step(params, state, [jnp.asarray(g) for g in gs])
                mp = state.scalars["mu_product"]
                assert mp.dtype == jnp.float32
                # mu itself is computed in float32 here (torch: a Python double), so the
                # product agrees to float32 rounding rather than bit for bit.
                want = opt.state[ps[0]]["mu_product"].numpy()
                assert abs(float(mp) - float(want)) <= 1e-6 * abs(float(want))
            got = [[np.asarray(p) for p in params]]
    finally:
        torch.set_default_dtype(torch.float64)
    assert max_rel_error(got, [[p.detach().numpy() for p in ps]]) <= 1e-5
