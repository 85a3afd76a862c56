"""Multi-device correctness on 4 forced host devices (tests/conftest.py sets XLA_FLAGS).

* pmap: every optimizer with replicated state and ``lax.pmean``'d gradients equals the
  single-device run on the same global batch (float32, <= 1e-5).
* Sharded jit: on a 2x2 mesh with params sharded on one axis and replicated on the other,
  ``init`` (eager and jitted) gives every state slot its parameter's sharding, and donated
  updates keep the shardings of params and state.
* Cross-device pieces: schedules, ``reduce_lr_on_plateau(axis_name=...)``, LBFGS with a
  ``value_fn`` that averages across devices, and the ``optx.optim`` adapter.
"""

from __future__ import annotations

import functools
import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import optx
from optx.sharding import mean_across

N_DEV = 4
STEPS = 3
TOL = 1e-5

# One representative configuration per optimizer, exercising its slots (momentum buffers,
# amsgrad maxima, centered averages, factored moments, ...).
OPTIMIZERS = {
    "sgd": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": dict(lr=0.01, amsgrad=True, weight_decay=0.01),
    "adamw": dict(lr=0.01),
    "rmsprop": dict(lr=0.01, centered=True, momentum=0.5),
    "adagrad": dict(lr=0.1, lr_decay=0.01),
    "adadelta": dict(lr=1.0),
    "nadam": dict(lr=0.01),
    "rprop": dict(lr=0.01),
    "adamax": dict(lr=0.01),
    "asgd": dict(lr=0.01),
    "radam": dict(lr=0.01),
    "sparse_adam": dict(lr=0.01),
    "adafactor": dict(lr=0.01),
    "muon": dict(lr=0.01),
}
# Optimizers the other issues add later are picked up as soon as they are exported.
NAMES = [n for n in OPTIMIZERS if hasattr(optx, n)]
# torch's Muon only takes matrices.
MATRIX_ONLY = {"muon"}


def make_params(name: str) -> dict[str, jax.Array]:
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)}
    if name not in MATRIX_ONLY:
        params["b"] = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
    return params


def make_batch(n: int = N_DEV * 4) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(n, 8)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    return x, y


def loss_fn(params, x, y):
    pred = x @ params["w"] + params.get("b", 0.0)
    return jnp.mean((pred - y) ** 2)


def replicate(tree, n: int = N_DEV):
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n, *jnp.shape(a))), tree)


def shard_batch(a, n: int = N_DEV):
    return a.reshape(n, a.shape[0] // n, *a.shape[1:])


def single_device_run(tx, params, x, y, steps=STEPS):
    @jax.jit
    def step(p, s):
        g = jax.grad(loss_fn)(p, x, y)
        u, s = tx.update(g, s, p)
        return optx.apply_updates(p, u), s

    state = tx.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params, state


@functools.cache
def reference(name):
    """The single-device run of OPTIMIZERS[name], shared by the pmap and sharded tests."""
    tx = getattr(optx, name)(**OPTIMIZERS[name])
    x, y = make_batch()
    return single_device_run(tx, make_params(name), x, y)


def assert_replicas_equal(tree):
    for leaf in jax.tree_util.tree_leaves(tree):
        leaf = np.asarray(leaf)
        for i in range(1, leaf.shape[0]):
            np.testing.assert_array_equal(leaf[i], leaf[0])


# ---------------------------------------------------------------------------------------------
# pmap


@pytest.mark.parametrize("name", NAMES)
def test_pmap_pmean_equals_single_device(name):
    assert jax.local_device_count() == N_DEV
    tx = getattr(optx, name)(**OPTIMIZERS[name])
    params = make_params(name)
    x, y = make_batch()

    def step(p, s, xb, yb):
        g = jax.lax.pmean(jax.grad(loss_fn)(p, xb, yb), "dev")
        u, s = tx.update(g, s, p)
        return optx.apply_updates(p, u), s

    pstep = jax.pmap(step, axis_name="dev")
    rp, rs = replicate(params), replicate(tx.init(params))
    xs, ys = shard_batch(x), shard_batch(y)
    for _ in range(STEPS):
        rp, rs = pstep(rp, rs, xs, ys)

    expected_p, expected_s = reference(name)
    assert_replicas_equal(rp)
    assert_replicas_equal(rs)
    got_p = jax.tree_util.tree_map(lambda a: a[0], rp)
    got_s = jax.tree_util.tree_map(lambda a: a[0], rs)
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(got_p))
    chex.assert_trees_all_close(got_p, expected_p, rtol=TOL, atol=TOL)
    chex.assert_trees_all_close(got_s, expected_s, rtol=TOL, atol=TOL)


# ---------------------------------------------------------------------------------------------
# Sharded jit


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()[:N_DEV]).reshape(2, 2), ("data", "model"))


def param_shardings(mesh, params):
    # "w" is split over "model" (rows) and replicated over "data"; "b" is fully replicated.
    specs = {"w": P("model", None), "b": P()}
    return {k: NamedSharding(mesh, specs[k]) for k in params}


def assert_sharded_like(state_slots, params, shardings):
    """Every slot leaf shaped like its parameter carries that parameter's sharding."""
    checked = 0
    for slot_name, tree in state_slots.items():
        for k, leaf in tree.items():
            if leaf is None or leaf.shape != params[k].shape:
                continue  # Adafactor's factored row/column moments are smaller than the param
            assert leaf.sharding.is_equivalent_to(shardings[k], leaf.ndim), (
                slot_name, k, leaf.sharding, shardings[k])
            checked += 1
    return checked


@pytest.mark.parametrize("name", NAMES)
def test_sharded_jit_init_and_donated_updates(mesh, name):
    tx = getattr(optx, name)(**OPTIMIZERS[name])
    params = make_params(name)
    x, y = make_batch()
    expected_p, expected_s = reference(name)
    shardings = param_shardings(mesh, params)
    # device_put may alias a replicated leaf's buffer, which the donated steps then delete.
    sparams = jax.device_put(jax.tree_util.tree_map(jnp.copy, params), shardings)
    data_sharding = NamedSharding(mesh, P("data", None))
    sx, sy = jax.device_put(x, data_sharding), jax.device_put(y, data_sharding)

    eager_state = tx.init(sparams)
    jit_state = jax.jit(tx.init)(sparams)
    has_full_slots = name not in ("adafactor",) or "b" in params
    for state in (eager_state, jit_state):
        n = assert_sharded_like(state.slots, params, shardings)
        assert n > 0 or not has_full_slots

    @jax.jit
    def _step(p, s, xb, yb):
        g = jax.grad(loss_fn)(p, xb, yb)
        u, s = tx.update(g, s, p)
        return optx.apply_updates(p, u), s

    step = jax.jit(_step, donate_argnums=(0, 1))
    p, s = sparams, jit_state
    for _ in range(STEPS):
        old_leaf = p["w"]
        p, s = step(p, s, sx, sy)
        assert old_leaf.is_deleted()  # the params' buffers were donated
    for k, leaf in p.items():
        assert leaf.sharding.is_equivalent_to(shardings[k], leaf.ndim), (k, leaf.sharding)
    assert_sharded_like(s.slots, params, shardings)
    chex.assert_trees_all_close(p, expected_p, rtol=TOL, atol=TOL)
    chex.assert_trees_all_close(s.slots, expected_s.slots, rtol=TOL, atol=TOL)


# ---------------------------------------------------------------------------------------------
# Schedules under pmap


def _schedules():
    try:
        return importlib.import_module("optx.schedules")
    except ImportError:
        return None


def test_schedule_under_pmap_matches_single_device():
    sched_mod = _schedules()
    assert sched_mod is not None
    schedule = sched_mod.cosine_annealing_lr(0.05, T_max=4, eta_min=0.001)
    tx = optx.sgd(lr=schedule, momentum=0.9)
    params = make_params("sgd")
    x, y = make_batch()

    def step(p, s, xb, yb):
        g = jax.lax.pmean(jax.grad(loss_fn)(p, xb, yb), "dev")
        u, s = tx.update(g, s, p)
        return optx.apply_updates(p, u), s

    pstep = jax.pmap(step, axis_name="dev")
    rp, rs = replicate(params), replicate(tx.init(params))
    for t in range(1, 6):
        rp, rs = pstep(rp, rs, shard_batch(x), shard_batch(y))
        lr = np.asarray(optx.get_hyperparams(rs)["lr"])
        np.testing.assert_allclose(lr, np.full(N_DEV, float(schedule(t))), rtol=1e-12)
    expected_p, _ = single_device_run(tx, params, x, y, steps=5)
    assert_replicas_equal(rp)
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda a: a[0], rp), expected_p,
                                rtol=TOL, atol=TOL)


# ---------------------------------------------------------------------------------------------
# reduce_lr_on_plateau(axis_name=...)


def test_reduce_lr_on_plateau_axis_name_keeps_replicas_identical():
    plateau_kwargs = dict(factor=0.5, patience=1, threshold=0.0)
    tx = optx.chain(optx.sgd(lr=0.05), optx.reduce_lr_on_plateau(axis_name="dev",
                                                                 **plateau_kwargs))
    tx_single = optx.chain(optx.sgd(lr=0.05), optx.reduce_lr_on_plateau(**plateau_kwargs))
    params = make_params("sgd")
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    # Each device sees a different metric; their mean plateaus (1.0 at every step), so torch's
    # scheduler halves the lr. Without averaging, replicas would take different decisions.
    offsets = jnp.asarray([-3.0, -1.0, 1.0, 3.0], jnp.float32)

    def step(p, s, metric):
        u, s = tx.update(grads, s, p, value=metric)
        return optx.apply_updates(p, u), s

    pstep = jax.pmap(step, axis_name="dev")
    rp, rs = replicate(params), replicate(tx.init(params))
    sp, ss = params, tx_single.init(params)
    single = jax.jit(lambda p, s, m: tx_single.update(grads, s, p, value=m))
    for k in range(6):
        metrics = offsets * (k + 1) + 1.0  # mean is 1.0, per-device values diverge
        rp, rs = pstep(rp, rs, metrics)
        u, ss = single(sp, ss, jnp.float32(1.0))
        sp = optx.apply_updates(sp, u)
    assert_replicas_equal(rp)
    assert_replicas_equal(rs)
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda a: a[0], rp), sp,
                                rtol=TOL, atol=TOL)
    # The scale has actually dropped, so the test exercises a decision.
    moved = float(np.abs(np.asarray(sp["w"]) - np.asarray(params["w"])).max())
    assert moved < 6 * 0.05 - 1e-6


# ---------------------------------------------------------------------------------------------
# LBFGS under pmap


def test_lbfgs_under_pmap_with_averaging_value_fn():
    tx = optx.lbfgs(lr=1.0, max_iter=5, history_size=4, line_search_fn="strong_wolfe")
    params = make_params("lbfgs")
    x, y = make_batch()

    def step(p, s, xb, yb):
        # lax.pmean of the loss alone would average the value but not its gradient under pmap.
        value_fn = mean_across(lambda q: loss_fn(q, xb, yb), "dev")
        value, g = jax.value_and_grad(value_fn)(p)
        u, s = tx.update(g, s, p, value=value, value_fn=value_fn)
        return optx.apply_updates(p, u), s

    pstep = jax.pmap(step, axis_name="dev")
    rp, rs = replicate(params), replicate(tx.init(params))
    for _ in range(2):
        rp, rs = pstep(rp, rs, shard_batch(x), shard_batch(y))

    @jax.jit
    def single(p, s):
        def value_fn(q):
            return loss_fn(q, x, y)

        value, g = jax.value_and_grad(value_fn)(p)
        u, s = tx.update(g, s, p, value=value, value_fn=value_fn)
        return optx.apply_updates(p, u), s

    sp, ss = params, tx.init(params)
    for _ in range(2):
        sp, ss = single(sp, ss)
    assert_replicas_equal(rp)
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda a: a[0], rp), sp,
                                rtol=1e-4, atol=1e-5)
    assert float(loss_fn(sp, x, y)) < float(loss_fn(params, x, y))


# ---------------------------------------------------------------------------------------------
# The optx.optim adapter


def test_optim_adapter_keeps_param_sharding(mesh):
    try:
        optim = importlib.import_module("optx.optim")
    except ImportError:
        optim = None
    assert optim is not None and hasattr(optim, "Adam")
    params = make_params("adam")
    x, y = make_batch()
    expected, _ = single_device_run(optx.adam(lr=0.01, amsgrad=True), params, x, y)
    shardings = param_shardings(mesh, params)
    sparams = jax.device_put(jax.tree_util.tree_map(jnp.copy, params), shardings)
    opt = optim.Adam(sparams, lr=0.01, amsgrad=True)
    for _ in range(STEPS):
        grads = jax.grad(loss_fn)(opt.params, x, y)
        opt.step(grads)
    for k, leaf in opt.params.items():
        assert leaf.sharding.is_equivalent_to(shardings[k], leaf.ndim), (k, leaf.sharding)
    checked = 0
    for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(opt.opt_state):
        if not isinstance(leaf, jax.Array):
            continue
        for k, p in params.items():
            if leaf.shape == p.shape and leaf.ndim > 0:
                assert leaf.sharding.is_equivalent_to(shardings[k], leaf.ndim), (
                    leaf_path, leaf.sharding)
                checked += 1
    assert checked > 0
    chex.assert_trees_all_close(opt.params, expected, rtol=TOL, atol=TOL)
