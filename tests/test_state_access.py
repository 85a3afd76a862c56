"""optx.get_hyperparams / optx.set_hyperparams: log and change hyperparameters functionally."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optx


def make_params():
    return {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones(4)}


def grads_at(params, k):
    return jax.tree_util.tree_map(lambda p: jnp.cos(p + k) + 0.1 * p, params)


def make_step(tx, traces):
    @jax.jit
    def step(params, state, k):
        traces.append(1)  # runs only when jax traces, i.e. compiles
        updates, state = tx.update(grads_at(params, k), state, params)
        return optx.apply_updates(params, updates), state

    return step


def test_get_hyperparams_reads_torch_param_group_keys():
    state = optx.adam(lr=0.01, betas=(0.8, 0.9), weight_decay=0.5).init(make_params())
    hp = optx.get_hyperparams(state)
    assert set(hp) >= {"lr", "betas", "eps", "weight_decay"}
    assert float(hp["lr"]) == 0.01
    assert tuple(float(b) for b in hp["betas"]) == (0.8, 0.9)
    assert float(hp["weight_decay"]) == 0.5


def test_log_scheduled_lr_each_step():
    schedule = lambda count: 0.1 * 0.5**count
    tx = optx.sgd(lr=schedule, momentum=0.9)
    params = make_params()
    state = tx.init(params)
    traces: list[int] = []
    step = make_step(tx, traces)
    logged = [float(optx.get_hyperparams(state)["lr"])]
    for k in range(5):
        params, state = step(params, state, k)
        logged.append(float(optx.get_hyperparams(state)["lr"]))
    # The stored lr is the one the next update uses: schedule(count).
    assert logged == pytest.approx([schedule(c) for c in range(6)], rel=1e-15)
    assert len(traces) == 1


def test_set_lr_inside_jitted_loop_without_recompiling():
    params0 = make_params()
    tx = optx.adam(lr=0.1)
    traces: list[int] = []
    step = make_step(tx, traces)
    params, state = params0, tx.init(params0)
    for k in range(6):
        if k == 3:
            state = optx.set_hyperparams(state, lr=0.01, betas=(0.5, 0.6))
        params, state = step(params, state, k)
    assert len(traces) == 1
    assert step._cache_size() == 1
    assert float(optx.get_hyperparams(state)["lr"]) == 0.01

    # Reference: the same change written as schedules from the start.
    ref = optx.adam(
        lr=lambda c: jnp.where(c < 3, 0.1, 0.01),
        betas=(lambda c: jnp.where(c < 3, 0.9, 0.5), lambda c: jnp.where(c < 3, 0.999, 0.6)),
    )
    ref_params, ref_state = params0, ref.init(params0)
    ref_step = make_step(ref, [])
    for k in range(6):
        ref_params, ref_state = ref_step(ref_params, ref_state, k)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ref_params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_set_keeps_dtype_and_shape():
    state = optx.adam(lr=0.1).init(make_params())
    new = optx.set_hyperparams(state, lr=1)  # a Python int: stored as the old float array
    old_lr, new_lr = optx.get_hyperparams(state)["lr"], optx.get_hyperparams(new)["lr"]
    assert new_lr.dtype == old_lr.dtype and new_lr.shape == old_lr.shape
    assert float(new_lr) == 1.0
    assert float(optx.get_hyperparams(state)["lr"]) == 0.1  # the input state is unchanged


def test_set_scheduled_lr_applies_once_then_schedule_resumes():
    tx = optx.sgd(lr=lambda c: 0.1 / (c + 1))
    params = make_params()
    state = tx.init(params)
    step = make_step(tx, [])
    state = optx.set_hyperparams(state, lr=0.0)
    new_params, state = step(params, state, 0)
    for a, b in zip(jax.tree_util.tree_leaves(new_params), jax.tree_util.tree_leaves(params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # lr=0: no change
    assert float(optx.get_hyperparams(state)["lr"]) == pytest.approx(0.1 / 2)


@pytest.mark.parametrize(
    "make_tx",
    [
        lambda: optx.chain(optax.clip_by_global_norm(1.0), optx.sgd(lr=0.1, momentum=0.9)),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optx.sgd(lr=0.1, momentum=0.9)),
        lambda: optx.chain(optx.chain(optx.identity(), optx.sgd(lr=0.1, momentum=0.9))),
    ],
    ids=["optx.chain", "optax.chain", "nested"],
)
def test_chained_states(make_tx):
    tx = make_tx()
    params = make_params()
    state = tx.init(params)
    traces: list[int] = []
    step = make_step(tx, traces)
    params, state = step(params, state, 0)
    assert float(optx.get_hyperparams(state)["lr"]) == 0.1
    state = optx.set_hyperparams(state, lr=0.0, momentum=0.5)
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(tx.init(params))
    new_params, state = step(params, state, 1)
    for a, b in zip(jax.tree_util.tree_leaves(new_params), jax.tree_util.tree_leaves(params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(optx.get_hyperparams(state)["momentum"]) == 0.5
    assert len(traces) == 1


def test_errors():
    state = optx.adam().init(make_params())
    with pytest.raises(ValueError, match="unknown hyperparameter 'momentum'"):
        optx.set_hyperparams(state, momentum=0.9)
    with pytest.raises(ValueError, match="structure"):
        optx.set_hyperparams(state, betas=0.9)
    two = (state, optx.sgd().init(make_params()))
    with pytest.raises(ValueError, match="exactly one"):
        optx.get_hyperparams(two)
    with pytest.raises(ValueError, match="exactly one"):
        optx.set_hyperparams(two, lr=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        optx.get_hyperparams(optax.adam(1e-3).init(make_params()))


def test_lbfgs_state_is_found_like_the_others():
    # LbfgsState is another class than OptimizerState; the helpers find it by its hyperparams.
    tx = optx.lbfgs(lr=0.5)
    state = tx.init(make_params())
    assert float(optx.get_hyperparams(state)["lr"]) == 0.5
    state = optx.set_hyperparams(state, lr=0.25)
    assert type(state) is optx.LbfgsState
    assert float(optx.get_hyperparams(state)["lr"]) == 0.25
    chained = (optx.EmptyState(), state)
    assert float(optx.get_hyperparams(optx.set_hyperparams(chained, lr=0.125))["lr"]) == 0.125


def test_optax_inject_hyperparams_state_is_not_an_optx_state():
    # optax's state has a hyperparams field too; only optx's states count, so a chain of both
    # still holds exactly one.
    params = make_params()
    state = optax.chain(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
                        optx.adam(lr=0.01)).init(params)
    assert float(optx.get_hyperparams(state)["lr"]) == 0.01
