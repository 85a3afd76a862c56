"""Hardening of the adapter: bad gradients change nothing, checkpoints without pickle, long
runs without memory or compile-cache growth, NaN propagation as in torch."""

import gc
import resource

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import optx
import optx.optim


def _params():
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.zeros(3)}


def _snapshot(opt):
    return jax.tree_util.tree_map(np.array, (opt.params, opt.opt_state))


@pytest.mark.parametrize("bad", ["missing", "extra", "shape", "dtype"])
def test_adapter_bad_gradients_raise_and_change_nothing(bad):
    opt = optx.optim.Adam(_params(), lr=0.1)
    opt.step(jax.tree_util.tree_map(jnp.ones_like, opt.params))
    before = _snapshot(opt)
    grads = jax.tree_util.tree_map(jnp.ones_like, opt.params)
    if bad == "missing":
        del grads["b"]
    elif bad == "extra":
        grads["c"] = jnp.ones(2)
    elif bad == "shape":
        grads["w"] = jnp.ones((3, 2))
    else:
        grads["w"] = grads["w"].astype(jnp.float32)
    with pytest.raises((ValueError, TypeError), match=r"\['(b|c|w)'\]"):
        opt.step(grads)
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, _snapshot(opt))
    opt.step(jax.tree_util.tree_map(jnp.ones_like, opt.params))  # still usable


def test_adapter_rejects_integer_params():
    with pytest.raises(TypeError, match="dtype int32"):
        optx.optim.SGD({"w": jnp.ones(3), "n": jnp.zeros(3, jnp.int32)}, lr=0.1)


def test_state_dict_saves_and_loads_without_pickle(tmp_path):
    opt = optx.optim.NAdam([{"params": _params(), "lr": 0.05}, {"params": [jnp.ones(4)]}])
    sched = optx.optim.lr_scheduler.StepLR(opt, 2)
    for _ in range(3):
        opt.step(jax.tree_util.tree_map(jnp.ones_like, opt.params))
        sched.step()
    path = tmp_path / "ckpt.npz"
    optx.optim.save(opt.state_dict(), path)
    np.load(path, allow_pickle=False)  # plain arrays only
    restored = optx.optim.NAdam([{"params": _params(), "lr": 0.05}, {"params": [jnp.ones(4)]}])
    restored.load_state_dict(optx.optim.load(path))
    sd, rsd = opt.state_dict(), restored.state_dict()
    assert rsd["param_groups"] == sd["param_groups"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, rsd["state"], sd["state"])
    sched_path = tmp_path / "sched.npz"
    optx.optim.save(sched.state_dict(), sched_path)
    assert optx.optim.load(sched_path)["last_epoch"] == sched.state_dict()["last_epoch"]


def test_pickled_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __optx_meta__=np.asarray([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        optx.optim.load(path)


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_5000_adapter_steps_do_not_grow_memory_or_caches():
    opt = optx.optim.SGD(_params(), lr=0.01, momentum=0.9)
    sched = optx.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    grads = jax.tree_util.tree_map(jnp.ones_like, opt.params)
    for _ in range(200):  # warm up: compile, allocator pools
        opt.step(grads)
        sched.step()
    gc.collect()
    rss0 = _rss_mb()
    caches0 = jax.tree_util.tree_map(lambda f: f, _jit_cache_sizes(opt))
    for k in range(5000):
        opt.step(grads)
        sched.step()
        if k % 500 == 0:
            opt.param_groups[0]["momentum"] = 0.8 + 0.01 * (k // 500)
    gc.collect()
    assert _rss_mb() - rss0 < 20
    assert _jit_cache_sizes(opt) == caches0


def _jit_cache_sizes(opt):
    sizes = []
    for value in vars(opt).values():
        fns = value.values() if isinstance(value, dict) else [value]
        for fn in fns:
            if hasattr(fn, "_cache_size"):
                sizes.append(fn._cache_size())
    return sizes


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_nan_gradients_propagate_as_in_torch(name):
    params0 = np.linspace(-1.0, 1.0, 4)
    grads = [np.array([0.1, np.nan, 0.2, -0.3]), np.array([0.2, 0.1, np.inf, 0.1])]
    p = torch.tensor(params0.copy(), requires_grad=True)
    topt = getattr(torch.optim, name)([p], lr=0.1)
    opt = getattr(optx.optim, name)(jnp.asarray(params0), lr=0.1)
    for g in grads:
        p.grad = torch.tensor(g)
        topt.step()
        opt.step(jnp.asarray(g))
    np.testing.assert_array_equal(np.isnan(np.asarray(opt.params)), np.isnan(p.detach().numpy()))
    finite = np.isfinite(p.detach().numpy())
    np.testing.assert_allclose(np.asarray(opt.params)[finite], p.detach().numpy()[finite],
                               rtol=1e-12)



@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_sgd_momentum_inf_gradient_gives_torchs_params(momentum):
    """An inf gradient with a momentum buffer steps the parameter to torch's -inf/+inf (not NaN:
    the step picks the buffer or the gradient, it does not weigh both), and a momentum set to 0
    at run time steps along the gradient as torch does."""
    params0 = np.array([1.0, 2.0, 3.0, 4.0])
    grads = [np.ones(4), np.array([np.inf, 1.0, -np.inf, np.nan])]
    p = torch.tensor(params0.copy(), requires_grad=True)
    topt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    opt = optx.optim.SGD(jnp.asarray(params0), lr=0.1, momentum=0.9)
    for k, g in enumerate(grads):
        if k == 1:
            topt.param_groups[0]["momentum"] = opt.param_groups[0]["momentum"] = momentum
        p.grad = torch.tensor(g)
        topt.step()
        opt.step(jnp.asarray(g))
    np.testing.assert_array_equal(np.asarray(opt.params), p.detach().numpy())


def test_apply_if_finite_skips_nan_steps_then_lets_them_through():
    tx = optx.apply_if_finite(optx.sgd(lr=0.1), max_consecutive_errors=2)
    params = jnp.ones(2)
    state = tx.init(params)
    nan = jnp.array([jnp.nan, 1.0])
    for expected_finite in (True, True, False):
        updates, state = tx.update(nan, state, params)
        params = optx.apply_updates(params, updates)
        assert bool(jnp.all(jnp.isfinite(params))) is expected_finite
