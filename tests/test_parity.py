"""float64 parity against torch for every optimizer in the registry: every option and their
combinations (``registry.OptimizerInfo.parity``), 50 steps, <=1e-10 relative (Muon: 30 steps);
torch's state entries, scheduled hyperparameters against torch's
param-group edits, and NAdam's float32 ``mu_product``.

To stay fast, one jitted step is compiled per optimizer, structural hyperparameters (the
flags closed over by the update: ``maximize``, ``nesterov``, SGD's ``momentum``, ...) and side
of zero of each hyperparameter whose zero is a torch branch (the layout's ``structural_zeros``:
a constant 0 leaves the branch out, so ``weight_decay=0`` and ``0.1`` compile apart); the
numeric hyperparameters of each configuration are put into the state with
``optx.set_hyperparams``, which does not recompile.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity import (
    SHAPES,
    apply_update,
    grad_fn,
    make_params,
    max_rel_error,
    run_torch,
    torch_step,
    trajectory,
)
from registry import BY_NAME, cases

import optx

TOL = 1e-10

_COMPILED: dict = {}


def _flag(info, key, value) -> bool:
    return key in info.structural or not isinstance(value, (int, float)) or isinstance(value, bool)


def run_optx_cached(info, kwargs, params0, steps, grads=grad_fn):
    """``parity.run_optx``, compiled once per code path; hyperparameters set in the state."""
    hp = optx.get_hyperparams(info.fn().init([jnp.asarray(p) for p in params0]))
    flags = {k: v for k, v in kwargs.items() if k not in hp or _flag(info, k, v)}
    numeric = {k: v for k, v in kwargs.items() if k not in flags}
    # Built with its own value of each branch-deciding hyperparameter: set_hyperparams keeps a
    # value on its side of zero (a constant 0 has no code for a nonzero one).
    branches = {k: v for k, v in numeric.items() if k in info.fn().layout.structural_zeros}
    shapes = tuple(np.shape(p) for p in params0)
    sides = sorted((k, v != 0) for k, v in branches.items())
    key = (info.name, repr(sorted(flags.items())), repr(sides), shapes)
    if key not in _COMPILED:
        tx = info.fn(**flags, **branches)
        _COMPILED[key] = (tx, jax.jit(functools.partial(apply_update, tx)))
    tx, step = _COMPILED[key]
    params = [jnp.asarray(p) for p in params0]
    state = optx.set_hyperparams(tx.init(params), **numeric) if numeric else tx.init(params)
    return trajectory(step, params, state, steps, grads)


def _masked_grads(params, k):
    # Exact zeros on a moving pattern: those entries are absent from torch's sparse gradient.
    return [g * (np.arange(g.size).reshape(g.shape) % 3 != k % 3) for g in grad_fn(params, k)]


def _run_torch_sparse(torch_cls, kwargs, params0, steps):
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    opt = torch_cls(ps, **kwargs)
    traj = []
    for k in range(steps):
        for p, g in zip(ps, _masked_grads([p.detach().numpy() for p in ps], k), strict=True):
            p.grad = torch.from_numpy(g).to_sparse()
        opt.step()
        traj.append([p.detach().numpy().copy() for p in ps])
    return traj


@pytest.mark.parametrize("info,kwargs", cases("parity"))
def test_parity_float64(info, kwargs):
    seed = len(kwargs) if info.parity_seed is None else info.parity_seed
    params0 = make_params(seed=seed, shapes=info.parity_shapes or SHAPES)
    steps = info.parity_steps
    if info.sparse_grads:
        expected = _run_torch_sparse(info.torch_cls, kwargs, params0, steps)
        got = run_optx_cached(info, kwargs, params0, steps, _masked_grads)
    else:
        expected = run_torch(info.torch_cls, kwargs, params0, steps)
        got = run_optx_cached(info, kwargs, params0, steps)
    assert max_rel_error(got, expected) <= info.parity_tol


def _first_and_last(field):
    """torch's defaults and the grid's last config (every option switched on)."""
    params = cases(field, "state_in_slots")
    by_opt: dict = {}
    for p in params:
        by_opt.setdefault(p.values[0].name, []).append(p)
    return [p for ps in by_opt.values() for p in (ps[0], ps[-1])]


def _run_both(info, kwargs, schedules, steps):
    """Runs torch and optx side by side; torch's param group gets each scheduled value before
    each step, as an lr scheduler (or a user) would set it. Returns both final states."""
    params0 = make_params(seed=1)
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    opt = info.torch_cls(ps, **kwargs)
    tx = info.fn(**{**kwargs, **schedules})
    params = [jnp.asarray(p) for p in params0]
    state = tx.init(params)
    step = jax.jit(functools.partial(apply_update, tx))
    for k in range(steps):
        for key, sched in schedules.items():
            opt.param_groups[0][key] = (
                tuple(float(v(k)) if callable(v) else v for v in sched) if isinstance(sched, tuple)
                else float(sched(k))
            )
        gs = torch_step(opt, ps, k)
        params, state = step(params, state, [jnp.asarray(g) for g in gs])
        assert max_rel_error([[np.asarray(p) for p in params]],
                             [[p.detach().numpy() for p in ps]]) <= TOL, f"step {k}"
    return opt, ps, state


@pytest.mark.parametrize("info,kwargs", _first_and_last("parity"))
def test_state_matches_torch(info, kwargs):
    """Every torch state entry has its optx counterpart under the same name, with the same value:
    per-parameter buffers in ``slots``, NAdam's ``mu_product`` in ``scalars`` (bit for bit)."""
    opt, ps, state = _run_both(info, kwargs, {}, 20)
    for i, p in enumerate(ps):
        torch_state = opt.state[p]
        assert ("step" in torch_state) == info.has_step
        if info.has_step:
            assert float(torch_state["step"]) == int(state.count) == 20
        assert set(torch_state) - {"step"} == set(state.slots) | set(state.scalars)
        for key, buf in state.slots.items():
            got, want = np.asarray(buf[i]), torch_state[key].numpy()
            assert max_rel_error([[got]], [[want]]) <= TOL, key
        for key, value in state.scalars.items():
            assert float(value) == float(torch_state[key]), key


@pytest.mark.parametrize(
    "info", [pytest.param(i, id=i.name) for i in BY_NAME.values() if i.scheduled])
def test_scheduled_hyperparams_match_torch_group_edits(info):
    """A scheduled hyperparameter equals torch with the param group's value set before each
    step, for every float hyperparameter (the state stores the value the next update uses)."""
    kwargs, schedules = info.scheduled
    _run_both(info, kwargs, schedules, 30)


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
            step = jax.jit(functools.partial(apply_update, tx))
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


def test_muon_refuses_non_matrices_like_torch():
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        torch.optim.Muon([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        optx.muon().init([np.zeros(3)])


@pytest.mark.parametrize("info", [pytest.param(i, id=i.name) for i in BY_NAME.values()])
def test_layout_has_step_matches_torch(info):
    """The declared layout's ``has_step`` is torch's: after one step, ``step`` is in its state."""
    p = torch.zeros(3, 2, requires_grad=True)
    opt = info.torch_cls([p])

    def closure():
        opt.zero_grad()
        loss = ((p - 1) ** 2).sum()
        loss.backward()
        return loss

    if info.needs_closure:
        opt.step(closure)
    else:
        p.grad = torch.ones(3, 2).to_sparse() if info.sparse_grads else torch.ones(3, 2)
        opt.step()
    assert ("step" in opt.state[p]) == info.has_step
