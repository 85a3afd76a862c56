"""The state's hyperparameters: one packed array leaf behind a read-only mapping.

Every leaf of a state costs a jitted call about a microsecond to pass in and out, so all of an
optimizer's hyperparameters share one array (issue 34: five scalar leaves made the small-model
step 12-25 % slower than optax's). What users and the rest of optx see is unchanged: a mapping
of torch's group keys to 0-d arrays (pairs for ``betas``), read with ``get_hyperparams``,
replaced with ``set_hyperparams``, and carried through jit, vmap, pmap, pickling and tree_map.
"""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optx
from optx.state import Hyperparams

PARAMS = {"w": jnp.ones((3, 2)), "b": jnp.zeros((2,))}


def test_one_leaf_for_all_hyperparameters():
    state = optx.adam(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1).init(PARAMS)
    hp = state.hyperparams
    assert len(jax.tree_util.tree_leaves(hp)) == 1
    # The mapping: torch's keys, 0-d arrays, betas a pair; dict() is a plain dict.
    assert sorted(hp) == ["betas", "eps", "lr", "weight_decay"] and len(hp) == 4
    assert "lr" in hp and "momentum" not in hp
    plain = dict(hp)
    assert type(plain) is dict and isinstance(plain["betas"], tuple)
    np.testing.assert_allclose([float(plain["lr"]), float(plain["betas"][0]),
                                float(plain["betas"][1]), float(plain["weight_decay"])],
                               [0.01, 0.8, 0.9, 0.1], rtol=1e-7)
    assert all(np.shape(v) == () for v in jax.tree_util.tree_leaves(plain))
    with pytest.raises(TypeError):
        hp["lr"] = 0.1  # read-only: set_hyperparams returns a new state


def test_jit_passes_the_packed_leaf_through_and_set_hyperparams_rewrites_it():
    tx = optx.adam(lr=0.01)
    state = tx.init(PARAMS)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))
    _, new = step(PARAMS, state, PARAMS)
    assert new.hyperparams == state.hyperparams  # constants pass through unchanged
    changed = optx.set_hyperparams(new, lr=0.5, betas=(0.5, 0.6))
    assert float(optx.get_hyperparams(changed)["lr"]) == 0.5
    assert float(optx.get_hyperparams(new)["lr"]) == pytest.approx(0.01)  # not mutated
    assert jax.tree_util.tree_structure(changed) == jax.tree_util.tree_structure(new)
    _, after = step(PARAMS, changed, PARAMS)  # same structure: no recompile needed
    assert float(after.hyperparams["betas"][1]) == pytest.approx(0.6)


def test_a_schedule_rewrites_only_its_entry():
    tx = optx.sgd(lr=lambda count: 0.1 / (1 + count), momentum=0.9, weight_decay=0.01)
    state = tx.init(PARAMS)
    for _ in range(3):
        _, state = tx.update(PARAMS, state, PARAMS)
    hp = optx.get_hyperparams(state)
    assert float(hp["lr"]) == pytest.approx(0.1 / 4)
    assert float(hp["momentum"]) == pytest.approx(0.9)
    assert float(hp["weight_decay"]) == pytest.approx(0.01)


def test_stacked_states_read_per_replica():
    tx = optx.adam(lr=0.01)
    states = jax.vmap(lambda lr: optx.set_hyperparams(tx.init(PARAMS), lr=lr))(
        jnp.asarray([0.1, 0.2, 0.3]))
    np.testing.assert_allclose(optx.get_hyperparams(states)["lr"], [0.1, 0.2, 0.3], rtol=1e-7)
    assert np.shape(states.hyperparams["betas"][0]) == (3,)


def test_pickle_copy_tree_map_and_equality():
    state = optx.rmsprop(lr=0.01, momentum=0.5).init(PARAMS)
    hp = state.hyperparams
    back = pickle.loads(pickle.dumps(hp))
    assert back == hp and back.fixed == hp.fixed and back.who == hp.who == "optx.rmsprop"
    shapes = jax.tree_util.tree_map(jnp.shape, state)
    assert shapes.hyperparams["lr"] == (5,)  # the packed leaf's shape stands for each entry
    assert hp != optx.set_hyperparams(state, lr=0.02).hyperparams
    assert hp == dict(hp)


def test_gradient_through_a_hyperparameter():
    tx = optx.sgd(lr=0.1)

    def loss(lr):
        state = optx.set_hyperparams(tx.init(PARAMS), lr=lr)
        updates, _ = tx.update(PARAMS, state, PARAMS)
        return sum(jnp.sum(u) for u in jax.tree_util.tree_leaves(updates))

    # updates = -lr * g, g = params: d/dlr = -sum(params) = -6.
    assert float(jax.grad(loss)(0.1)) == pytest.approx(-6.0)


def test_bad_values_are_named_and_change_nothing():
    state = optx.adam(lr=0.01).init(PARAMS)
    with pytest.raises(ValueError, match="betas"):
        optx.set_hyperparams(state, betas=0.9)
    with pytest.raises(ValueError, match="unknown hyperparameter 'momentum'"):
        optx.set_hyperparams(state, momentum=0.9)
    assert float(state.hyperparams["lr"]) == pytest.approx(0.01)
    hp = Hyperparams({"lr": 0.1, "betas": (0.9, 0.99)})
    with pytest.raises(ValueError, match="shaped like"):
        hp.written({"betas": 0.9})


def test_an_edited_group_is_written_on_the_host():
    """The adapter's per-step path (an LR scheduler edits ``lr``): every entry given as a
    number builds the packed vector on the host, nothing read back from the device."""
    hp = optx.adam(lr=0.01).init(PARAMS).hyperparams
    group = {"lr": 0.5, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.0, "amsgrad": False}
    new = hp.written(group)
    assert isinstance(new.packed, np.ndarray) and new.packed.dtype == hp.packed.dtype
    assert float(new["lr"]) == 0.5 and float(new["betas"][0]) == pytest.approx(0.8)
    # A schedule in the group keeps the stored value (it advances itself in the update).
    kept = hp.written({**group, "lr": lambda count: 1.0})
    assert float(kept["lr"]) == pytest.approx(0.01) and float(kept["eps"]) == pytest.approx(1e-6)
