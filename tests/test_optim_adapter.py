"""optx.optim's stateful Optimizer against real torch.optim: trajectories, param groups,
hyperparameter edits between steps, compile-once, closures and repr."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import optx.optim as O
from optx.optim import lr_scheduler as L

torch.set_default_dtype(torch.float64)

SHAPES = {"a": (3,), "b": (2, 2)}
STEPS = 5


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s) for k, s in SHAPES.items()}


def _grads(params_np, k):
    # A gradient that depends on the params (as in training) plus a step-dependent term.
    return {key: np.sin(v * (k + 1)) + 0.1 * v for key, v in params_np.items()}


def _torch_opt(cls, params_np, **kw):
    leaves = [torch.tensor(v, requires_grad=True) for v in jax.tree_util.tree_leaves(params_np)]
    return getattr(torch.optim, cls)(leaves, **kw), leaves


def _set_torch_grads(leaves, grads_np):
    for leaf, g in zip(leaves, jax.tree_util.tree_leaves(grads_np)):
        leaf.grad = torch.tensor(g)


def _to_np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _err(opt_params, leaves):
    return max(
        float(np.max(np.abs(np.asarray(a) - b.detach().numpy())))
        for a, b in zip(jax.tree_util.tree_leaves(opt_params), leaves)
    )


CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.5, "dampening": 0.3, "maximize": True}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True}),
    ("AdamW", {"lr": 0.01, "amsgrad": True}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("Adadelta", {"weight_decay": 0.1}),
    ("NAdam", {"decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("Rprop", {}),
    ("Adamax", {"weight_decay": 0.1}),
    ("ASGD", {"t0": 2}),
    ("RAdam", {"decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("Adafactor", {"lr": 0.05}),
]


def _available(cls):
    return hasattr(O, cls) and hasattr(torch.optim, cls)


@pytest.mark.parametrize("cls,kw", CONFIGS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CONFIGS)])
def test_trajectory_matches_torch(cls, kw):
    assert _available(cls), f"{cls} missing from optx.optim"
    p0 = _params()
    opt = getattr(O, cls)(jax.tree_util.tree_map(jnp.array, p0), **kw)
    topt, leaves = _torch_opt(cls, p0, **kw)
    for k in range(STEPS):
        g = _grads(_to_np(opt.params), k)
        opt.step(jax.tree_util.tree_map(jnp.asarray, g))
        _set_torch_grads(leaves, g)
        topt.step()
    assert _err(opt.params, leaves) <= 1e-10
    assert opt.trace_count == 1


def test_param_groups_per_group_lr_and_add_param_group():
    p0, p1, p2 = _params(0), _params(1), _params(2)
    opt = O.SGD(
        [{"params": jax.tree_util.tree_map(jnp.array, p0)},
         {"params": jax.tree_util.tree_map(jnp.array, p1), "lr": 0.5, "momentum": 0.8}],
        lr=0.1, momentum=0.9,
    )
    t0 = [torch.tensor(v, requires_grad=True) for v in jax.tree_util.tree_leaves(p0)]
    t1 = [torch.tensor(v, requires_grad=True) for v in jax.tree_util.tree_leaves(p1)]
    t2 = [torch.tensor(v, requires_grad=True) for v in jax.tree_util.tree_leaves(p2)]
    topt = torch.optim.SGD([{"params": t0}, {"params": t1, "lr": 0.5, "momentum": 0.8}],
                           lr=0.1, momentum=0.9)
    assert isinstance(opt.params, list) and len(opt.params) == 2
    for k in range(STEPS):
        if k == 2:
            opt.add_param_group({"params": jax.tree_util.tree_map(jnp.array, p2), "lr": 0.01})
            topt.add_param_group({"params": t2, "lr": 0.01})
        gs = [_grads(_to_np(p), k) for p in opt.params]
        opt.step([jax.tree_util.tree_map(jnp.asarray, g) for g in gs])
        for leaves, g in zip([t0, t1, t2], gs):
            _set_torch_grads(leaves, g)
        topt.step()
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[2]["momentum"] == 0.9
    assert _err(opt.params, t0 + t1 + t2) <= 1e-10


@pytest.mark.parametrize("cls,kw,edits", [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05},
     {"lr": 0.03, "momentum": 0.5, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01}, {"lr": 0.2, "betas": (0.5, 0.9), "eps": 1e-3}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.3}, {"alpha": 0.5, "momentum": 0.6}),
])
def test_edits_between_steps_match_torch_without_recompiling(cls, kw, edits):
    # Values on the same side of zero: a zero/nonzero flip recompiles once, where torch switches
    # branch (tests/test_torch_branches.py).
    p0 = _params()
    opt = getattr(O, cls)(jax.tree_util.tree_map(jnp.array, p0), **kw)
    topt, leaves = _torch_opt(cls, p0, **kw)
    for k in range(STEPS):
        if k == 2:
            for key, v in edits.items():
                opt.param_groups[0][key] = v
                topt.param_groups[0][key] = v
        g = _grads(_to_np(opt.params), k)
        opt.step(jax.tree_util.tree_map(jnp.asarray, g))
        _set_torch_grads(leaves, g)
        topt.step()
    assert _err(opt.params, leaves) <= 1e-10
    assert opt.trace_count == 1


@pytest.mark.parametrize("cls,kw", [
    ("SGD", {"lr": 0.1}),  # torch quirk: momentum raised from 0 allocates the buffer then
])
def test_structural_edits_rebuild_and_match_torch(cls, kw):
    p0 = _params()
    opt = getattr(O, cls)(jax.tree_util.tree_map(jnp.array, p0), **kw)
    topt, leaves = _torch_opt(cls, p0, **kw)
    key, value = "momentum", 0.9
    for k in range(STEPS):
        if k == 2:
            opt.param_groups[0][key] = value
            topt.param_groups[0][key] = value
        g = _grads(_to_np(opt.params), k)
        opt.step(jax.tree_util.tree_map(jnp.asarray, g))
        _set_torch_grads(leaves, g)
        topt.step()
    assert _err(opt.params, leaves) <= 1e-10


def test_200_scheduled_steps_with_lr_and_momentum_edits_compile_once():
    p0 = _params()
    opt = O.SGD(jax.tree_util.tree_map(jnp.array, p0), lr=0.1, momentum=0.9)
    topt, leaves = _torch_opt("SGD", p0, lr=0.1, momentum=0.9)
    sched = L.OneCycleLR(opt, max_lr=0.05, total_steps=200)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.05, total_steps=200)
    step = jax.jit(lambda p, k: jax.tree_util.tree_map(lambda v: jnp.sin(v * (k + 1)) + 0.1 * v, p))
    for k in range(200):
        g = step(opt.params, k)
        g_np = _to_np(g)
        opt.step(g)
        _set_torch_grads(leaves, g_np)
        topt.step()
        sched.step() if k < 199 else None
        tsched.step() if k < 199 else None
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), abs=1e-15)
        assert opt.param_groups[0]["momentum"] == pytest.approx(
            topt.param_groups[0]["momentum"], abs=1e-15)
    assert opt.trace_count == 1
    assert _err(opt.params, leaves) <= 1e-10


def test_closure_returns_loss_and_matches_torch():
    p0 = _params()
    opt = O.Adam(jax.tree_util.tree_map(jnp.array, p0), lr=0.05)
    topt, leaves = _torch_opt("Adam", p0, lr=0.05)

    def loss_fn(p):
        return jnp.sum(p["a"] ** 2) + jnp.sum(jnp.cos(p["b"]))

    def tclosure():
        topt.zero_grad()
        loss = torch.sum(leaves[0] ** 2) + torch.sum(torch.cos(leaves[1]))
        loss.backward()
        return loss

    for _ in range(STEPS):
        loss = opt.step(closure=loss_fn)
        tloss = topt.step(tclosure)
        assert float(loss) == pytest.approx(float(tloss.detach()), abs=1e-12)
    assert _err(opt.params, leaves) <= 1e-10


def test_lbfgs_closure_matches_torch():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 4))
    a = a @ a.T + np.eye(4)
    b = rng.normal(size=4)
    x0 = rng.normal(size=4)
    opt = O.LBFGS(jnp.array(x0), lr=1, max_iter=5, history_size=3,
                  line_search_fn="strong_wolfe")
    x = torch.tensor(x0, requires_grad=True)
    topt = torch.optim.LBFGS([x], lr=1, max_iter=5, history_size=3, line_search_fn="strong_wolfe")
    ja, jb, ta, tb = jnp.array(a), jnp.array(b), torch.tensor(a), torch.tensor(b)

    def loss_fn(p):
        return 0.5 * p @ ja @ p - jb @ p + 0.1 * jnp.sum(p**4)

    def tclosure():
        topt.zero_grad()
        loss = 0.5 * x @ ta @ x - tb @ x + 0.1 * torch.sum(x**4)
        loss.backward()
        return loss

    for _ in range(3):
        loss = opt.step(closure=loss_fn)
        tloss = topt.step(tclosure)
        assert float(loss) == pytest.approx(float(tloss.detach()), abs=1e-10)
    np.testing.assert_allclose(np.asarray(opt.params), x.detach().numpy(), atol=1e-10)


def test_repr_matches_torch():
    p = jnp.zeros(1)
    assert repr(O.Adam(p, lr=0.1)) == repr(torch.optim.Adam([torch.zeros(1)], lr=0.1))
    assert repr(O.SGD([{"params": p}, {"params": jnp.zeros(1), "lr": 0.5}], lr=0.1)) == repr(
        torch.optim.SGD([{"params": [torch.zeros(1)]}, {"params": [torch.zeros(1)], "lr": 0.5}],
                        lr=0.1)
    )


def test_zero_grad_noop_state_and_bad_kwargs():
    opt = O.Adam({"w": jnp.ones(2)})
    opt.zero_grad()
    assert opt.opt_state.count == 0
    with pytest.raises(TypeError):
        O.Adam({"w": jnp.ones(2)}, momentum=0.9)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        O.Adam({"w": jnp.ones(2)}, lr=-1.0)


def test_step_keeps_sharding():
    devices = jax.devices()
    assert len(devices) >= 2, "make test forces 4 host devices"
    mesh = jax.sharding.Mesh(np.array(devices[:2]), ("x",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
    w = jax.device_put(jnp.arange(8.0), sharding)
    opt = O.AdamW({"w": w}, lr=0.1)
    opt.step({"w": jax.device_put(jnp.ones(8), sharding)})
    assert opt.params["w"].sharding.is_equivalent_to(sharding, 1)
    assert opt.opt_state.slots["exp_avg"]["w"].sharding.is_equivalent_to(sharding, 1)


_FUNCTIONAL = {
    "SGD": "sgd", "Adam": "adam", "AdamW": "adamw", "RMSprop": "rmsprop", "Adagrad": "adagrad",
    "Adadelta": "adadelta", "NAdam": "nadam", "Rprop": "rprop", "Adamax": "adamax",
    "ASGD": "asgd", "RAdam": "radam", "SparseAdam": "sparse_adam", "Adafactor": "adafactor",
    "Muon": "muon",
}


@pytest.mark.parametrize("cls", sorted(_FUNCTIONAL))
def test_adapter_equals_functional(cls):
    """Every class (Muon and SparseAdam included, whose torch parity is tested elsewhere and
    sparse-only) is its functional constructor driven step by step (both jitted)."""
    import optx

    assert hasattr(O, cls), f"{cls} missing from optx.optim"
    rng = np.random.default_rng(1)
    p0 = [rng.normal(size=(3, 2)), rng.normal(size=(2, 4))]
    grads = [[rng.normal(size=(3, 2)), rng.normal(size=(2, 4))] for _ in range(3)]
    opt = getattr(O, cls)([jnp.asarray(p) for p in p0])
    tx = getattr(optx, _FUNCTIONAL[cls])()
    params = [jnp.asarray(p) for p in p0]
    state = tx.init(params)

    @jax.jit
    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return optx.apply_updates(params, updates), state

    for g in grads:
        opt.step([jnp.asarray(x) for x in g])
        params, state = step(params, state, [jnp.asarray(x) for x in g])
    for a, b in zip(opt.params, params):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-13)


def test_muon_adapter_matches_torch():
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(4, 3))
    opt = O.Muon([jnp.asarray(p0)], lr=0.02)
    x = torch.tensor(p0, requires_grad=True)
    topt = torch.optim.Muon([x], lr=0.02)
    for _ in range(3):
        g = np.sin(np.asarray(opt.params[0]))
        opt.step([jnp.asarray(g)])
        x.grad = torch.tensor(g)
        topt.step()
    assert _err(opt.params, [x]) <= 1e-13


def test_lbfgs_rejects_param_groups_like_torch():
    with pytest.raises(ValueError, match="parameter groups"):
        O.LBFGS([{"params": jnp.zeros(1)}, {"params": jnp.zeros(1)}])


@pytest.mark.parametrize("kw", [
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    {"lr": 0.1, "momentum": 0.5, "dampening": 0.3},
])
def test_sgd_momentum_lowered_to_zero_and_back_leaves_the_buffer_alone(kw):
    # torch skips the buffer entirely while momentum == 0 and resumes from the old buffer when
    # it is raised again; optx must reproduce both the steps and the buffer (kept unused in the
    # state while the momentum is 0, as torch keeps it).
    p0 = _params()
    opt = O.SGD(jax.tree_util.tree_map(jnp.array, p0), **kw)
    topt, leaves = _torch_opt("SGD", p0, **kw)
    schedule = {2: 0.0, 5: kw["momentum"]}
    for k in range(8):
        if k in schedule:
            opt.param_groups[0]["momentum"] = schedule[k]
            topt.param_groups[0]["momentum"] = schedule[k]
        g = _grads(_to_np(opt.params), k)
        opt.step(jax.tree_util.tree_map(jnp.asarray, g))
        _set_torch_grads(leaves, g)
        topt.step()
        assert _err(opt.params, leaves) <= 1e-10, k
        ours = opt.state_dict()["state"]
        for i, leaf in enumerate(leaves):
            want = topt.state[leaf]["momentum_buffer"].numpy()
            np.testing.assert_allclose(np.asarray(ours[i]["momentum_buffer"]), want,
                                       rtol=1e-10, atol=1e-12)
    assert opt.trace_count == 3  # once, then once per zero/nonzero flip (torch's branch)
