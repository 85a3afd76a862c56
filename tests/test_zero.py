"""ZeRO-1 (optimizer state sharded over 4 forced host devices, params replicated), three ways:

* ``optx.sharding.zero_shardings`` / ``zero_place`` as the state's shardings of a jitted step:
  the compiled HLO all-gathers the params only, never the state;
* ``optx.sharding.zero(tx, axis_name)`` under ``pmap`` / ``shard_map``;
* ``optx.optim.ZeroRedundancyOptimizer`` (param groups, lr schedulers, torch's state_dict).

Targets: each device holds <= 1/4 of Adam's state + 1%, measured from the addressable shards;
20 float64 steps equal the unsharded optimizer's to 1e-12 relative for Adam, AdamW, SGD
(momentum), RMSprop and Adafactor, with a schedule.
"""

from __future__ import annotations

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import optx
from optx.sharding import ZeroState, zero, zero_place, zero_shardings

N_DEV = 4
STEPS = 20
TOL = 1e-12
# The five, each with a schedule on lr (a torch scheduler's closed form).
SCHEDULE = optx.schedules.step_lr(0.05, step_size=5, gamma=0.5)
OPTIMIZERS = {
    "adam": dict(weight_decay=0.01, amsgrad=True),
    "adamw": dict(weight_decay=0.01),
    "sgd": dict(momentum=0.9, nesterov=True),
    "rmsprop": dict(momentum=0.5, centered=True),
    "adafactor": dict(),
}
CLASSES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop",
           "adafactor": "Adafactor"}


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()[:N_DEV]), ("data",))


def make_params():
    # "v" has no dimension divisible by 4: replicated by zero_shardings, padded by zero().
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(16, 12))),
        "b": jnp.asarray(rng.normal(size=(12,))),
        "v": jnp.asarray(rng.normal(size=(6,))),
    }


def loss_fn(p):
    return sum(jnp.sum(jnp.sin(3 * x) + x**2) for x in jax.tree_util.tree_leaves(p))


grad_fn = jax.jit(jax.grad(loss_fn))


def assert_close(got, expected, tol=TOL):
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got),
                            jax.tree_util.tree_leaves(expected), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, path
        if not np.issubdtype(b.dtype, np.inexact):
            np.testing.assert_array_equal(a, b)
            continue
        err = np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)
        assert err <= tol, (jax.tree_util.keystr(path), err)


def per_device_bytes(tree) -> dict:
    out: collections.Counter = collections.Counter()
    for leaf in jax.tree_util.tree_leaves(tree):
        for shard in leaf.addressable_shards:
            out[shard.device] += shard.data.nbytes
    return out


def total_bytes(tree) -> int:
    return sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(tree))


def memory_params():
    # A small float32 MLP: 256 -> 128 -> 10.
    rng = np.random.default_rng(0)
    shapes = {"w1": (256, 128), "b1": (128,), "w2": (128, 10), "b2": (10,)}
    return {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}


def assert_quarter(sharded_state, unsharded_state):
    full = total_bytes(unsharded_state)
    per_device = per_device_bytes(sharded_state)
    assert len(per_device) == N_DEV
    assert max(per_device.values()) <= full / N_DEV + 0.01 * full, (dict(per_device), full)


@pytest.fixture(scope="module")
def reference():
    """20 unsharded steps of each optimizer: (params, state) per name."""
    out = {}
    for name, kwargs in OPTIMIZERS.items():
        tx = getattr(optx, name)(lr=SCHEDULE, **kwargs)

        @jax.jit
        def step(p, s, tx=tx):
            u, s = tx.update(grad_fn(p), s, p)
            return optx.apply_updates(p, u), s

        p = make_params()
        s = tx.init(p)
        for _ in range(STEPS):
            p, s = step(p, s)
        out[name] = (p, s)
    return out


# ---------------------------------------------------------------------------------------------
# zero_shardings: jit


def test_zero_shardings_rules(mesh):
    params = {"a": jnp.zeros((6, 16)), "b": jnp.zeros((8, 12)), "c": jnp.zeros((6,)),
              "m": jnp.zeros((16, 12))}
    state = optx.adam(lr=0.1).init(params)
    sh = zero_shardings(state, mesh)
    specs = {k: v.spec for k, v in sh.slots["exp_avg"].items()}
    # The largest dimension divisible by 4; none divisible: replicated.
    assert specs == {"a": P(None, "data"), "b": P(None, "data"), "c": P(), "m": P("data", None)}
    assert sh.count.spec == P()
    assert all(s.spec == P() for s in jax.tree_util.tree_leaves(sh.hyperparams))
    # Adafactor's factored moments are split along their long side.
    fstate = optx.adafactor().init({"m": jnp.zeros((16, 12))})
    fsh = zero_shardings(fstate, mesh)
    assert fsh.slots["row_var"]["m"].spec == P("data", None)
    assert fsh.slots["col_var"]["m"].spec == P(None, "data")
    # zero_place puts the state there.
    placed = zero_place(state, mesh)
    assert placed.slots["exp_avg"]["m"].sharding == sh.slots["exp_avg"]["m"]


def _all_gather_shapes(hlo: str) -> list[tuple[int, ...]]:
    shapes = []
    for m in re.finditer(r"= (\(?[^=]*?\)?) all-gather(?:-start)?\(", hlo):
        for dims in re.findall(r"[a-z]+\d*\[([\d,]*)\]", m.group(1)):
            shapes.append(tuple(int(d) for d in dims.split(",") if d))
    return shapes


def test_jit_gathers_params_never_state(mesh):
    params = make_params()
    tx = optx.adam(lr=SCHEDULE)
    state = tx.init(params)
    rep = NamedSharding(mesh, P())
    ss = zero_shardings(state, mesh)

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optx.apply_updates(p, u), s

    fn = jax.jit(step, in_shardings=(rep, ss, rep), out_shardings=(rep, ss), donate_argnums=(0, 1))
    hlo = fn.lower(params, state, params).compile().as_text()
    gathered = sorted(_all_gather_shapes(hlo))
    # One all-gather per split parameter (w, b), of the parameter's shape; "v" is updated whole
    # on every device; the two Adam slots of each parameter are never gathered.
    assert gathered == sorted([(16, 12), (12,)]), gathered
    assert "all-to-all" not in hlo

    p = jax.device_put(params, rep)
    s = zero_place(state, mesh)
    p, s = fn(p, s, grad_fn(p))
    assert s.slots["exp_avg"]["w"].sharding.spec == P("data", None)
    assert p["w"].sharding.is_fully_replicated


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_jit_zero_trajectory_equals_unsharded(mesh, reference, name):
    tx = getattr(optx, name)(lr=SCHEDULE, **OPTIMIZERS[name])
    rep = NamedSharding(mesh, P())
    params = make_params()
    state = tx.init(params)
    ss = zero_shardings(state, mesh)

    def step(p, s):
        u, s = tx.update(grad_fn(p), s, p)
        return optx.apply_updates(p, u), s

    fn = jax.jit(step, in_shardings=(rep, ss), out_shardings=(rep, ss), donate_argnums=(0, 1))
    p, s = jax.device_put(params, rep), zero_place(state, mesh)
    for _ in range(STEPS):
        p, s = fn(p, s)
    assert_close(p, reference[name][0])
    assert_close(s, reference[name][1])


def test_jit_zero_adam_memory(mesh):
    params = memory_params()
    state = optx.adam(lr=1e-3).init(params)
    assert_quarter(zero_place(state, mesh), state)


# ---------------------------------------------------------------------------------------------
# zero(tx, axis_name): pmap / shard_map


def replicate(tree):
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (N_DEV, *jnp.shape(a))), tree)


def test_pmap_init_keeps_a_slice_and_hyperparams_see_through():
    tx = zero(optx.adam(lr=0.01), "dev")
    params = make_params()
    state = jax.pmap(tx.init, axis_name="dev")(replicate(params))
    assert isinstance(state, ZeroState)
    # 1/4 of every flattened leaf, padded: 192 -> 48, 12 -> 3, 6 -> 2.
    shapes = {k: v.shape for k, v in state.inner_state.slots["exp_avg"].items()}
    assert shapes == {"w": (N_DEV, 48), "b": (N_DEV, 3), "v": (N_DEV, 2)}
    np.testing.assert_array_equal(optx.get_hyperparams(state)["lr"], np.full(N_DEV, 0.01))
    state = jax.pmap(lambda s: optx.set_hyperparams(s, lr=0.02))(state)
    np.testing.assert_array_equal(optx.get_hyperparams(state)["lr"], np.full(N_DEV, 0.02))


def test_not_elementwise_updates_whole_leaves():
    params = make_params()
    for inner, kwargs in ((optx.adafactor(), {}), (optx.adam(), {"elementwise": False})):
        state = jax.pmap(zero(inner, "dev", **kwargs).init, axis_name="dev")(replicate(params))
        # Each replica holds the whole (unsliced) state.
        assert jax.tree_util.tree_map(lambda a: a.shape[1:], state.inner_state) == (
            jax.tree_util.tree_map(jnp.shape, inner.init(params)))
    assert not optx.muon().update.elementwise and optx.sgd().update.elementwise


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_pmap_zero_trajectory_equals_unsharded(reference, name):
    tx = zero(getattr(optx, name)(lr=SCHEDULE, **OPTIMIZERS[name]), "dev")

    def step(p, s):
        u, s = tx.update(grad_fn(p), s, p)
        return optx.apply_updates(p, u), s

    pstep = jax.pmap(step, axis_name="dev")
    p = replicate(make_params())
    s = jax.pmap(tx.init, axis_name="dev")(p)
    for _ in range(STEPS):
        p, s = pstep(p, s)
    for i in range(N_DEV):
        assert_close(jax.tree_util.tree_map(lambda a, i=i: a[i], p), reference[name][0])
    np.testing.assert_array_equal(np.asarray(s.inner_state.count), STEPS)


def test_pmap_zero_adam_memory():
    params = memory_params()
    tx = zero(optx.adam(lr=1e-3), "dev")
    state = jax.pmap(tx.init, axis_name="dev")(replicate(params))
    assert_quarter(state, optx.adam(lr=1e-3).init(params))


def test_shard_map_zero_equals_unsharded(mesh, reference):
    tx = zero(optx.adam(lr=SCHEDULE, **OPTIMIZERS["adam"]), "data")
    params = make_params()
    # Sliced leaves are P("data") (global shape: the padded flat leaf), scalars replicated.
    shapes = jax.eval_shape(jax.pmap(tx.init, axis_name="data"), replicate(params))
    specs = jax.tree_util.tree_map(lambda s: P("data") if s.ndim > 1 else P(), shapes)
    init = jax.jit(jax.shard_map(tx.init, mesh=mesh, in_specs=P(), out_specs=specs))

    def step(p, s):
        u, s = tx.update(grad_fn(p), s, p)
        return optx.apply_updates(p, u), s

    # all_gather's result is the same on every device, which shard_map cannot infer.
    sstep = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), specs),
                                  out_specs=(P(), specs), check_vma=False))
    p, s = params, init(params)
    assert s.inner_state.slots["exp_avg"]["w"].shape == (192,)
    for _ in range(STEPS):
        p, s = sstep(p, s)
    assert_close(p, reference["adam"][0])
    # The global slot is the unsharded one, flattened (and padded).
    assert_close(s.inner_state.slots["exp_avg"]["w"].reshape(16, 12),
                 reference["adam"][1].slots["exp_avg"]["w"])


# ---------------------------------------------------------------------------------------------
# optx.optim.ZeroRedundancyOptimizer


def make_groups():
    p = make_params()
    return [{"params": {"w": p["w"]}}, {"params": {"b": p["b"], "v": p["v"]}, "lr": 0.02}]


def run_adapter(opt, steps=STEPS):
    sched = optx.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    for _ in range(steps):
        opt.step(grad_fn(opt.params))
        sched.step()
    return opt


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_adapter_trajectory_with_groups_and_scheduler(mesh, name):
    cls = getattr(optx.optim, CLASSES[name])
    kwargs = dict(lr=0.05, **OPTIMIZERS[name])
    ref = run_adapter(cls(make_groups(), **kwargs))
    opt = run_adapter(optx.optim.ZeroRedundancyOptimizer(make_groups(), cls, mesh, **kwargs))
    assert isinstance(opt, cls) and isinstance(opt, optx.optim.ZeroRedundancyOptimizer)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups]
    assert_close(opt.params, ref.params)
    assert_close(opt.opt_state, ref.opt_state)
    for p in jax.tree_util.tree_leaves(opt.params):
        assert p.sharding.is_fully_replicated
    if name != "adafactor":
        assert opt.opt_state[0].slots[next(iter(opt.opt_state[0].slots))]["w"].sharding.spec == P(
            "data", None)


def test_adapter_state_dict_is_full_and_load_reshards(mesh):
    kwargs = dict(lr=0.05, weight_decay=0.01)
    ref = run_adapter(optx.optim.AdamW(make_groups(), **kwargs), steps=3)
    opt = run_adapter(
        optx.optim.ZeroRedundancyOptimizer(make_groups(), optx.optim.AdamW, mesh, **kwargs),
        steps=3)
    opt.consolidate_state_dict()
    opt.consolidate_state_dict(to=0)
    sd, expected = opt.state_dict(), ref.state_dict()
    assert sd["param_groups"] == expected["param_groups"]
    assert sd["state"].keys() == expected["state"].keys()
    for i, entry in expected["state"].items():
        assert sd["state"][i].keys() == entry.keys()
        for k, v in entry.items():
            assert isinstance(sd["state"][i][k], np.ndarray) and sd["state"][i][k].shape == v.shape
            np.testing.assert_allclose(sd["state"][i][k], v, rtol=TOL, atol=0)
    # The state itself stayed sharded.
    assert opt.opt_state[0].slots["exp_avg"]["w"].sharding.spec == P("data", None)

    # A fresh ZeRO optimizer loading the full state re-shards it and continues like the reference.
    fresh = optx.optim.ZeroRedundancyOptimizer(
        [{"params": {"w": opt.params[0]["w"]}}, {"params": dict(opt.params[1]), "lr": 0.02}],
        optx.optim.AdamW, mesh, **kwargs)
    fresh.load_state_dict(sd)
    assert fresh.opt_state[0].slots["exp_avg"]["w"].sharding.spec == P("data", None)
    for o in (fresh, ref):
        o.step(grad_fn(o.params))
    assert_close(fresh.params, ref.params)

    # torch's own ZeroRedundancyOptimizer layout is torch.optim's: torch loads it.
    tparams = [torch.zeros(16, 12, dtype=torch.float64, requires_grad=True)]
    tparams2 = [torch.zeros(12, dtype=torch.float64, requires_grad=True),
                torch.zeros(6, dtype=torch.float64, requires_grad=True)]
    topt = torch.optim.AdamW([{"params": tparams}, {"params": tparams2, "lr": 0.02}], **kwargs)
    topt.load_state_dict({"state": {i: {k: torch.as_tensor(v) for k, v in e.items()}
                                    for i, e in sd["state"].items()},
                          "param_groups": sd["param_groups"]})
    assert torch.equal(topt.state[tparams[0]]["exp_avg"],
                       torch.as_tensor(expected["state"][0]["exp_avg"]))


def test_adapter_adam_memory(mesh):
    params = memory_params()
    opt = optx.optim.ZeroRedundancyOptimizer(params, optx.optim.Adam, mesh, lr=1e-3)
    opt.step(jax.tree_util.tree_map(jnp.ones_like, params))
    reference = optx.optim.Adam(params, lr=1e-3)
    reference.step(jax.tree_util.tree_map(jnp.ones_like, params))
    assert_quarter(opt.opt_state, reference.opt_state)


def test_adapter_arguments(mesh):
    params = make_params()
    # torch's class is mapped to optx's; mesh=None is every device.
    opt = optx.optim.ZeroRedundancyOptimizer(params, torch.optim.SGD, lr=0.1, momentum=0.9)
    assert isinstance(opt, optx.optim.SGD) and opt.mesh.size == jax.device_count()
    assert "ZeroRedundancyOptimizer" in repr(opt)
    with pytest.raises(ValueError, match="Mesh"):
        optx.optim.ZeroRedundancyOptimizer(params, optx.optim.SGD, process_group=object(), lr=1)
    with pytest.raises(ValueError, match="overlap_with_ddp"):
        optx.optim.ZeroRedundancyOptimizer(params, optx.optim.SGD, overlap_with_ddp=True, lr=1)
    with pytest.raises(TypeError, match="optimizer_class"):
        optx.optim.ZeroRedundancyOptimizer(params, dict, lr=1)
    with pytest.raises(ValueError, match="process index"):
        opt.consolidate_state_dict(to=1)
    # Params assigned through a group (one device) are placed again at the next step.
    opt.param_groups[0]["params"] = make_params()
    opt.step(grad_fn(opt.params))
    assert all(p.sharding.is_fully_replicated for p in jax.tree_util.tree_leaves(opt.params))
    assert opt.opt_state.slots["momentum_buffer"]["w"].sharding.spec == P("data", None)


def test_adapter_positional_closure(mesh):
    # torch's opt.step(closure): the callable must not be placed on the mesh as grads.
    def loss(p):
        return sum(jnp.sum(x ** 2) for x in jax.tree_util.tree_leaves(p))

    ref = optx.optim.AdamW(make_params(), lr=0.05)
    opt = optx.optim.ZeroRedundancyOptimizer(make_params(), optx.optim.AdamW, mesh, lr=0.05)
    for _ in range(3):
        assert_close(opt.step(loss), ref.step(loss))
    assert_close(opt.params, ref.params)
