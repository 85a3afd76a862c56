"""100 jitted updates with a scheduled lr compile exactly once, for every optimizer."""

import jax
import jax.numpy as jnp
import pytest
from registry import infos

import optx


@pytest.mark.parametrize("info", infos("scheduled_lr"))
def test_scheduled_updates_compile_once(info):
    tx = info.fn(lr=lambda count: 0.1 * 0.99**count)
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones((1, 4) if info.matrices_only else 4)}
    state = tx.init(params)
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)  # runs only when jax traces, i.e. compiles
        updates, state = tx.update(grads, state, params)
        return optx.apply_updates(params, updates), state

    lrs = []
    for k in range(100):
        grads = jax.tree_util.tree_map(lambda p, k=k: jnp.cos(p + k), params)
        params, state = step(params, state, grads)
        lrs.append(float(optx.get_hyperparams(state)["lr"]))
    assert len(traces) == 1
    assert step._cache_size() == 1
    # The stored lr is the one the next update uses: 0.1 * 0.99**count.
    assert lrs[-1] == pytest.approx(0.1 * 0.99**100, rel=1e-12)
