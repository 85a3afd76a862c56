"""Bad input to the functional API gets a clear error that names the problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import infos

import optx

PARAMS = {"dense": {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}, "scale": jnp.ones(())}


def grads_like(params):
    return jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.5), params)


@pytest.fixture(params=infos("elementwise"))
def tx(request):
    return request.param.fn()


def test_missing_leaf_is_named(tx):
    state = tx.init(PARAMS)
    grads = grads_like(PARAMS)
    del grads["dense"]["b"]
    with pytest.raises(ValueError, match=r"missing leaves \[\"\['dense'\]\['b'\]\"\]"):
        tx.update(grads, state, PARAMS)


def test_extra_leaf_is_named(tx):
    state = tx.init(PARAMS)
    grads = grads_like(PARAMS)
    grads["dense"]["extra"] = jnp.ones(2)
    with pytest.raises(ValueError, match=r"unexpected leaves .*'extra'"):
        tx.update(grads, state, PARAMS)


def test_wrong_shape_is_named(tx):
    state = tx.init(PARAMS)
    grads = grads_like(PARAMS)
    grads["dense"]["w"] = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"\['dense'\]\['w'\] has shape \(2, 3\)"):
        tx.update(grads, state, PARAMS)


def test_wrong_dtype_is_named(tx):
    state = tx.init(PARAMS)
    grads = grads_like(PARAMS)
    grads["scale"] = jnp.ones((), jnp.float32)
    with pytest.raises(TypeError, match=r"\['scale'\] has dtype float32"):
        tx.update(grads, state, PARAMS)


def test_errors_inside_jit_too(tx):
    state = tx.init(PARAMS)
    grads = grads_like(PARAMS)
    grads["dense"]["w"] = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="has shape"):
        jax.jit(tx.update)(grads, state, PARAMS)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, np.int64])
def test_integer_params_rejected(tx, dtype):
    with pytest.raises(TypeError, match=r"\['steps'\] has dtype"):
        tx.init({"w": jnp.ones(3), "steps": jnp.zeros(3, dtype)})


def test_state_and_params_untouched_on_error(tx):
    state = tx.init(PARAMS)
    before = jax.tree_util.tree_map(np.array, (PARAMS, state))
    bad = grads_like(PARAMS)
    bad["dense"]["w"] = jnp.ones((2, 3))
    with pytest.raises(ValueError):
        tx.update(bad, state, PARAMS)
    after = jax.tree_util.tree_map(np.array, (PARAMS, state))
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, after)


def test_update_without_params_explains():
    tx = optx.adam()
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match="needs the current params"):
        tx.update(grads_like(PARAMS), state)
