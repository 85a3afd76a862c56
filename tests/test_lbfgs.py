"""optx.lbfgs against real torch.optim.LBFGS (with a closure), in float64.

Each config runs several ``update`` calls (torch ``step(closure)`` calls) with ``max_iter`` small
enough that steps stop mid-way, a history shorter than the number of iterations, both line
searches and two learning rates. The update is jitted once per config and reused for every step.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax import lax
from torch_versions import as_installed

import optx

torch.set_default_dtype(torch.float64)

STEPS = 5
RTOL = 1e-8


# Each problem is written once over an array namespace, so jnp and torch evaluate the same formula.
def rosenbrock(xp):
    def f(p):
        x = p["x"]
        return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    return f


def sum_of_cosines(xp):
    # Nonconvex: cosines of a fixed linear map plus a weak quadratic so it stays bounded below.
    a = np.linspace(-1.0, 1.5, 12).reshape(3, 4)

    def f(p):
        w, b = p["w"], p["b"]
        aa = xp.asarray(a) if xp is jnp else torch.from_numpy(a)
        z = (aa * w).sum() + xp.cos(3.0 * w).sum() + xp.cos(2.0 * b + w[0, :2]).sum()
        return z + 0.05 * (w**2).sum() + 0.05 * (b**2).sum()

    return f


def _start(problem: str) -> dict[str, np.ndarray]:
    if problem == "rosen2":
        return {"x": np.array([-1.2, 1.0])}
    if problem == "rosen10":
        return {"x": np.linspace(-1.5, 1.2, 10)}
    rng = np.random.default_rng(3)
    return {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(2,))}


def _loss(problem: str, xp) -> Callable:
    return sum_of_cosines(xp) if problem == "cos" else rosenbrock(xp)


def run_torch(problem, kwargs, steps=STEPS):
    p0 = _start(problem)
    # Sorted keys: torch's flat vectors then follow ravel_pytree's (dict) leaf order.
    tp = {k: torch.tensor(p0[k].copy(), requires_grad=True) for k in sorted(p0)}
    f = _loss(problem, torch)
    opt = torch.optim.LBFGS(list(tp.values()), **kwargs)

    def closure():
        opt.zero_grad()
        loss = f(tp)
        loss.backward()
        return loss

    traj = []
    for _ in range(steps):
        opt.step(closure)
        traj.append({k: v.detach().numpy().copy() for k, v in tp.items()})
    return traj, opt


_STEP_CACHE: dict = {}


def _jitted_step(problem, kwargs):
    """One jitted step per (problem, structural options); ``lr`` lives in the state as data."""
    key = (problem, tuple(sorted((k, v) for k, v in kwargs.items() if k != "lr")))
    if key not in _STEP_CACHE:
        f = _loss(problem, jnp)
        tx = optx.lbfgs(**{k: v for k, v in kwargs.items() if k != "lr"})

        @jax.jit
        def step(params, state):
            value, grads = jax.value_and_grad(f)(params)
            updates, state = tx.update(grads, state, params, value=value, value_fn=f)
            return optx.apply_updates(params, updates), state

        _STEP_CACHE[key] = (tx, step)
    return _STEP_CACHE[key]


def run_optx(problem, kwargs, steps=STEPS):
    params = {k: jnp.asarray(v) for k, v in _start(problem).items()}
    tx, step = _jitted_step(problem, kwargs)
    state = tx.init(params)
    lr = kwargs.get("lr", 1.0)
    state = state._replace(hyperparams={"lr": jnp.asarray(lr, state.hyperparams["lr"].dtype)})
    traj = []
    for _ in range(steps):
        params, state = step(params, state)
        traj.append({k: np.asarray(v) for k, v in params.items()})
    return traj, state, step


def rel_error(a: dict, b: dict) -> float:
    num = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    den = max(max(float(np.max(np.abs(b[k]))) for k in b), 1e-300)
    return num / den


CONFIGS = [
    dict(line_search_fn=ls, max_iter=mi, history_size=hs, lr=lr)
    for ls, mi, hs, lr in itertools.product([None, "strong_wolfe"], [1, 3, 7], [2, 100], [1.0, 0.5])
]
# Every combination on the 10-D Rosenbrock; a spread of them (each option value) on the others.
CASES = [("rosen10", CONFIGS), ("cos", CONFIGS[::3]), ("rosen2", CONFIGS[::5])]


@pytest.mark.parametrize("problem,configs", CASES, ids=[c[0] for c in CASES])
def test_trajectories_match_torch(problem, configs):
    worst = 0.0
    for kwargs in configs:
        t_traj, t_opt = run_torch(problem, kwargs)
        o_traj, state, _ = run_optx(problem, kwargs)
        for k, (a, b) in enumerate(zip(o_traj, t_traj)):
            err = rel_error(a, b)
            worst = max(worst, err)
            assert err <= RTOL, (problem, kwargs, k, err)
        ts = t_opt.state[t_opt._params[0]]
        assert int(state.func_evals) == ts["func_evals"], kwargs
        assert int(state.n_iter) == ts["n_iter"], kwargs
        assert int(state.history_count) == len(ts["old_dirs"]), kwargs
        np.testing.assert_allclose(float(state.t), float(ts["t"]), rtol=1e-6, atol=1e-12)
    print(f"lbfgs {problem}: worst relative error {worst:.2e} over {len(configs)} configs")


@pytest.mark.parametrize("problem", ["rosen2", "cos"])
def test_default_config_and_state_fields(problem):
    # Defaults (max_iter=20, history 100): 20 iterations a step. Not on the 10-D Rosenbrock,
    # where float64 rounding of reductions (torch's vs XLA's summation order) is amplified by
    # the ill-conditioned valley to ~5e-8 after 60 iterations with identical control flow.
    kwargs = dict(line_search_fn="strong_wolfe")
    t_traj, t_opt = run_torch(problem, kwargs, steps=3)
    o_traj, state, _ = run_optx(problem, kwargs, steps=3)
    for a, b in zip(o_traj, t_traj):
        assert rel_error(a, b) <= RTOL
    ts = t_opt.state[t_opt._params[0]]
    n = int(state.history_count)
    rows = [(int(state.history_start) + i) % 100 for i in range(n)]
    np.testing.assert_allclose(
        np.asarray(state.old_dirs)[rows], torch.stack(ts["old_dirs"]).numpy(), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(
        np.asarray(state.prev_flat_grad), ts["prev_flat_grad"].numpy(), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(float(state.H_diag), float(ts["H_diag"]), rtol=1e-6)
    assert int(state.func_evals) == ts["func_evals"]
    assert optx.lbfgs().init({"x": jnp.zeros(3)}).old_dirs.shape == (100, 3)


def test_max_eval_default_and_bad_line_search():
    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        optx.lbfgs(line_search_fn="backtracking")
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optx.lbfgs(lr=-1)


def test_compiles_once():
    kwargs = dict(line_search_fn="strong_wolfe", history_size=2, max_iter=3)
    _, state, step = run_optx("rosen2", kwargs, 1)
    params = {"x": jnp.array([-1.2, 1.0])}
    before = step._cache_size()
    for lr in (1.0, 0.5, 0.25, 1.0):
        # A new lr is data in the state: no recompilation either.
        state = state._replace(hyperparams={"lr": jnp.asarray(lr, jnp.float64)})
        params, state = step(params, state)
    assert step._cache_size() == before == 1


def test_pmap_with_pmean_loss_matches_single_device():
    n_dev = 4
    assert jax.local_device_count() >= n_dev
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n_dev, 8, 5))
    y = rng.normal(size=(n_dev, 8))

    def local_loss(p, a, y):
        return jnp.mean((a @ p["w"] - y) ** 2) + 0.1 * jnp.sum(jnp.cos(p["w"]))

    tx = optx.lbfgs(line_search_fn="strong_wolfe", max_iter=5, history_size=3)
    p0 = {"w": jnp.asarray(rng.normal(size=(5,)))}

    def step(p, s, a, y):
        def value_fn(q):
            # pmap differentiates each device's copy of the params separately; passing them
            # through pmean (an identity on replicated values) makes the gradient the average
            # too, so every device sees the same loss and gradient and takes the same branches.
            return lax.pmean(local_loss(lax.pmean(q, "i"), a, y), "i")

        value, grads = jax.value_and_grad(value_fn)(p)
        updates, s = tx.update(grads, s, p, value=value, value_fn=value_fn)
        return optx.apply_updates(p, updates), s

    pstep = jax.pmap(step, axis_name="i")

    def rep(tree):
        return jax.tree_util.tree_map(lambda x: jnp.stack([x] * n_dev), tree)

    pp, ps = rep(p0), rep(tx.init(p0))

    full_a, full_y = a.reshape(-1, 5), y.reshape(-1)

    def full_loss(p):
        return local_loss(p, full_a, full_y)

    @jax.jit
    def sstep(p, s):
        value, grads = jax.value_and_grad(full_loss)(p)
        updates, s = tx.update(grads, s, p, value=value, value_fn=full_loss)
        return optx.apply_updates(p, updates), s

    sp, ss = p0, tx.init(p0)
    for _ in range(3):
        pp, ps = pstep(pp, ps, a, y)
        sp, ss = sstep(sp, ss)
    w = np.asarray(pp["w"])
    for i in range(n_dev):
        np.testing.assert_allclose(w[i], w[0], rtol=0, atol=0)
    np.testing.assert_allclose(w[0], np.asarray(sp["w"]), rtol=1e-9, atol=1e-12)
    assert int(ps.func_evals[0]) == int(ss.func_evals)


def test_init_state_can_be_donated():
    # Every slot of a fresh state is its own buffer: jit may donate it (XLA refuses a buffer
    # donated twice), as the optx.optim step does right after init or load_state_dict.
    tx = optx.lbfgs(max_iter=3)
    params = {"x": jnp.array([-1.2, 1.0]), "y": jnp.ones(3)}

    def loss(p):
        return jnp.sum((p["x"] - 1.0) ** 2) + jnp.sum(p["y"] ** 4)

    state = tx.init(params)
    leaves = jax.tree_util.tree_leaves(state)
    assert len({x.unsafe_buffer_pointer() for x in leaves}) == len(leaves)

    @jax.jit
    def step(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = tx.update(grads, s, p, value=value, value_fn=loss)
        return optx.apply_updates(p, updates), s

    donated = jax.jit(step, donate_argnums=(0, 1))
    p1, s1 = step(params, state)
    p2, s2 = donated(jax.tree_util.tree_map(jnp.copy, params), state)
    np.testing.assert_array_equal(np.asarray(p1["x"]), np.asarray(p2["x"]))
    assert int(s2.func_evals) == int(s1.func_evals)


def _torch_quartic(tp):
    return torch.sum((tp[0] - 1.0) ** 2) + torch.sum(tp[1] ** 4)


def _jax_quartic(p):
    return jnp.sum((p[0] - 1.0) ** 2) + jnp.sum(p[1] ** 4)


@pytest.mark.parametrize("kwargs", [{}, {"max_iter": 3}, {"max_iter": 7, "max_eval": 4}])
def test_adapter_group_holds_resolved_max_eval_like_torch(kwargs):
    p0 = [np.ones(4), np.full(3, 0.5)]
    tp = [torch.tensor(p, requires_grad=True) for p in p0]
    to = torch.optim.LBFGS(tp, **kwargs)
    jo = optx.optim.LBFGS([jnp.asarray(p) for p in p0], **kwargs)
    group = {k: v for k, v in jo.param_groups[0].items() if k != "params"}
    # torch 2.14's maximize, which a torch 2.13 lacks (tests/torch_versions.py)
    assert as_installed("LBFGS", group) == {
        k: v for k, v in to.param_groups[0].items() if k != "params"}
    assert as_installed("LBFGS", jo.defaults) == to.defaults
    # The functional default stays None (API contract) and resolves the same way.
    assert inspect.signature(optx.lbfgs).parameters["max_eval"].default is None

    # torch loads optx's state_dict (before any step, and after two) and steps identically.
    for n_before in (0, 2):
        jo = optx.optim.LBFGS([jnp.asarray(p) for p in p0], **kwargs)
        for _ in range(n_before):
            jo.step(_jax_quartic)
        tp = [torch.tensor(np.asarray(p), requires_grad=True) for p in jo.params]
        to = torch.optim.LBFGS(tp, **kwargs)
        sd = jo.state_dict()
        to.load_state_dict(jax.tree_util.tree_map(
            lambda x: torch.tensor(np.asarray(x)) if isinstance(x, (np.ndarray, jax.Array))
            else x, sd))

        def closure():
            to.zero_grad()
            loss = _torch_quartic(tp)
            loss.backward()
            return loss

        to.step(closure)
        jo.step(_jax_quartic)
        for t, j in zip(tp, jo.params):
            np.testing.assert_allclose(t.detach().numpy(), np.asarray(j), rtol=1e-10, atol=1e-12)


def test_adapter_step_right_after_load_state_dict():
    # A freshly initialised state (no step yet) round-trips and is donated by the next step.
    jo = optx.optim.LBFGS([jnp.ones(4), jnp.full(3, 0.5)], max_iter=3)
    jo.load_state_dict(jo.state_dict())
    jo.step(_jax_quartic)
    jo.step(_jax_quartic)
