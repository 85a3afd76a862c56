"""float64 parity against torch for Adamax, ASGD, RAdam, SparseAdam, Adafactor (every option and
their combinations, 50 steps, <=1e-10 relative) and Muon (10 steps, bfloat16 accuracy, <=1e-2).

To stay fast, one jitted step is compiled per optimizer and code path (the flags closed over by
the update: ``maximize``, ``nesterov``, ``adjust_lr_fn``, ...); the numeric hyperparameters of each
configuration are put into the state with ``optx.set_hyperparams``, which does not recompile.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity import grad_fn, make_params, max_rel_error, run_torch
from test_parity_elementwise import grid

import optx

STEPS = 50
TOL = 1e-10

_COMPILED: dict = {}


def _structural(value) -> bool:
    return not isinstance(value, (int, float)) or isinstance(value, bool)


def run_optx_cached(optx_fn, kwargs, params0, steps, grads=grad_fn):
    """``parity.run_optx``, compiled once per code path; hyperparameters set in the state."""
    hp = optx.get_hyperparams(optx_fn().init([jnp.asarray(p) for p in params0]))
    flags = {k: v for k, v in kwargs.items() if k not in hp or _structural(v)}
    numeric = {k: v for k, v in kwargs.items() if k not in flags}
    shapes = tuple(np.shape(p) for p in params0)
    key = (optx_fn.__name__, repr(sorted(flags.items())), shapes)
    if key not in _COMPILED:
        tx = optx_fn(**flags)

        def step(params, state, g):
            updates, state = tx.update(g, state, params)
            return optx.apply_updates(params, updates), state

        _COMPILED[key] = (tx, jax.jit(step))
    tx, step = _COMPILED[key]
    params = [jnp.asarray(p) for p in params0]
    state = optx.set_hyperparams(tx.init(params), **numeric) if numeric else tx.init(params)
    traj = []
    for k in range(steps):
        g = [jnp.asarray(x) for x in grads([np.asarray(p) for p in params], k)]
        params, state = step(params, state, g)
        traj.append([np.asarray(p) for p in params])
    return traj

CONFIGS = {
    "adamax": (
        torch.optim.Adamax,
        optx.adamax,
        [dict()]
        + grid(
            lr=[0.01],
            betas=[(0.8, 0.95)],
            eps=[1e-8, 1e-3],
            weight_decay=[0.0, 0.1],
            maximize=[False, True],
        ),
    ),
    "asgd": (
        torch.optim.ASGD,
        optx.asgd,
        [dict()]
        + grid(
            lr=[0.05],
            lambd=[1e-4, 0.05],
            alpha=[0.75, 0.5],
            t0=[1e6, 10.0],
            weight_decay=[0.0, 0.1],
            maximize=[False, True],
        ),
    ),
    "radam": (
        torch.optim.RAdam,
        optx.radam,
        [dict()]
        + grid(
            lr=[0.01],
            betas=[(0.9, 0.999), (0.5, 0.9)],
            weight_decay=[0.0, 0.1],
            decoupled_weight_decay=[False, True],
            maximize=[False, True],
        ),
    ),
}

CASES = [(name, cls, fn, kw) for name, (cls, fn, kws) in CONFIGS.items() for kw in kws]


@pytest.mark.parametrize(
    "name,torch_cls,optx_fn,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_parity_float64(name, torch_cls, optx_fn, kwargs):
    params0 = make_params(seed=len(kwargs))
    expected = run_torch(torch_cls, kwargs, params0, STEPS)
    got = run_optx_cached(optx_fn, kwargs, params0, STEPS)
    assert max_rel_error(got, expected) <= TOL


def _masked_grads(params, k):
    # Exact zeros on a moving pattern: those entries are absent from torch's sparse gradient.
    return [g * (np.arange(g.size).reshape(g.shape) % 3 != k % 3) for g in grad_fn(params, k)]


@pytest.mark.parametrize(
    "kwargs",
    [dict(), *grid(lr=[0.01], betas=[(0.8, 0.95)], eps=[1e-8, 1e-4], maximize=[False, True])],
)
def test_sparse_adam_parity(kwargs):
    params0 = make_params(seed=1, shapes=((4, 3), (6,)))
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    opt = torch.optim.SparseAdam(ps, **kwargs)
    expected = []
    for k in range(STEPS):
        for p, g in zip(ps, _masked_grads([p.detach().numpy() for p in ps], k), strict=True):
            p.grad = torch.from_numpy(g).to_sparse()
        opt.step()
        expected.append([p.detach().numpy().copy() for p in ps])
    got = run_optx_cached(optx.sparse_adam, kwargs, params0, STEPS, _masked_grads)
    assert max_rel_error(got, expected) <= TOL


ADAFACTOR = [dict()] + grid(
    lr=[0.01, 0.5],
    beta2_decay=[-0.8, -0.5],
    eps=[(None, 1e-3), (1e-6, 1e-2)],
    d=[1.0, 1.5],
    weight_decay=[0.0, 0.1],
    maximize=[False, True],
)


@pytest.mark.parametrize("kwargs", ADAFACTOR, ids=[str(i) for i in range(len(ADAFACTOR))])
def test_adafactor_parity(kwargs):
    params0 = make_params(seed=2, shapes=((4, 3), (2, 3, 5), (6,), ()))
    expected = run_torch(torch.optim.Adafactor, kwargs, params0, STEPS)
    got = run_optx_cached(optx.adafactor, kwargs, params0, STEPS)
    assert max_rel_error(got, expected) <= TOL


MUON = [dict()] + grid(
    lr=[0.02],
    weight_decay=[0.0, 0.1],
    momentum=[0.9],
    nesterov=[False, True],
    adjust_lr_fn=[None, "original", "match_rms_adamw"],
)


@pytest.mark.parametrize("kwargs", MUON, ids=[str(i) for i in range(len(MUON))])
def test_muon_parity_to_bfloat16_accuracy(kwargs):
    params0 = make_params(seed=4, shapes=((6, 4), (3, 5)))
    expected = run_torch(torch.optim.Muon, kwargs, params0, 10)
    got = run_optx_cached(optx.muon, kwargs, params0, 10)
    assert max_rel_error(got, expected) <= 1e-2


def test_muon_refuses_non_matrices_like_torch():
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        torch.optim.Muon([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        optx.muon().init([np.zeros(3)])
