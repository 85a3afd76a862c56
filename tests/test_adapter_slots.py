"""Issue 34: the adapter as objects that own their state.

* the step path: a warm ``opt.step(grads)`` after an ``lr`` edit enters at most 5 optx files
  with at most 8 file-to-file transitions (``sys.settrace``);
* ``opt.params = tree``: new values, same structure/shapes/dtypes, state kept; a mismatch is a
  ``ValueError`` naming it and changes nothing;
* an empty param group after the first, as torch accepts it (schedulefree's test_foreach);
* ``load_state_dict`` with several groups: all of them or none.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import optx
import optx.optim as O

OPTX_DIR = os.path.dirname(optx.__file__)


def _files_entered(fn):
    """The optx files entered while ``fn()`` runs, in order, consecutive repeats merged."""
    path: list[str] = []

    def tracer(frame, event, arg):
        if event == "call":
            name = frame.f_code.co_filename
            if name.startswith(OPTX_DIR):
                rel = os.path.relpath(name, OPTX_DIR)
                if not path or path[-1] != rel:
                    path.append(rel)
        return None

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return path


def test_warm_step_after_an_lr_edit_stays_in_few_files():
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    opt = O.Adam(params, lr=1e-3)
    opt.step(grads)
    opt.step(grads)
    opt.param_groups[0]["lr"] = 2e-3
    path = _files_entered(lambda: opt.step(grads))
    assert len(set(path)) <= 5 and len(path) - 1 <= 8, " -> ".join(path)
    np.testing.assert_allclose(float(opt.opt_state.hyperparams["lr"]), 2e-3)
    assert opt.trace_count == 1


# ---------------------------------------------------------------- opt.params = tree
def _named():
    return {"w": jnp.arange(6.0).reshape(3, 2), "b": jnp.ones(2)}


@pytest.mark.parametrize("mode", ["tree", "groups", "named"])
def test_params_setter_replaces_values_and_keeps_state(mode):
    if mode == "tree":
        opt = O.Adam(_named(), lr=0.1)
    elif mode == "groups":
        opt = O.Adam([{"params": [jnp.ones(2)]}, {"params": {"v": jnp.zeros(3)}, "lr": 0.2}],
                     lr=0.1)
    else:
        opt = O.Adam(list(_named().items()), lr=0.1)
    grads = jax.tree_util.tree_map(jnp.ones_like, opt.params)
    opt.step(grads)
    before = jax.tree_util.tree_map(np.asarray, opt.opt_state)
    new = jax.tree_util.tree_map(lambda p: p * 0 + 7.0, opt.params)
    opt.params = new
    assert jax.tree_util.tree_structure(opt.params) == jax.tree_util.tree_structure(new)
    jax.tree_util.tree_map(np.testing.assert_array_equal, opt.params, new)
    jax.tree_util.tree_map(np.testing.assert_array_equal, opt.opt_state, before)
    new_leaf = jax.tree_util.tree_leaves(new)[0]
    assert all(p is not new_leaf for p in jax.tree_util.tree_leaves(opt.params))  # own copies
    opt.step(grads)  # donates its params, never the caller's
    np.asarray(new_leaf)
    listed = {id(p) for g in opt.param_groups for p in g["params"]}
    assert listed == {id(p) for p in jax.tree_util.tree_leaves(opt.params)}


@pytest.mark.parametrize("bad, message", [
    ({"w": jnp.zeros((3, 2))}, r"missing \['b'\]"),
    ({"w": jnp.zeros((2, 3)), "b": jnp.ones(2)}, r"'w' is float\d+\[2, 3\]"),
    ({"w": jnp.zeros((3, 2), jnp.int32), "b": jnp.ones(2)}, r"'w' is int32\[3, 2\]"),
])
def test_params_setter_refuses_a_mismatch_and_changes_nothing(bad, message):
    opt = O.SGD(list(_named().items()), lr=0.1)
    before = jax.tree_util.tree_map(np.asarray, opt.params)
    with pytest.raises(ValueError, match=message):
        opt.params = bad
    jax.tree_util.tree_map(np.testing.assert_array_equal, opt.params, before)


def test_params_setter_names_the_group_count_and_structure():
    opt = O.SGD([{"params": [jnp.ones(2)]}, {"params": [jnp.ones(3)]}], lr=0.1)
    with pytest.raises(ValueError, match="params for 2 param groups"):
        opt.params = [[jnp.ones(2)]]
    with pytest.raises(ValueError, match="group 1's structure"):
        opt.params = [[jnp.ones(2)], (jnp.ones(3),)]
    assert opt.params[1][0].shape == (3,)


# ---------------------------------------------------------------- empty groups
def test_an_empty_group_after_the_first_works_as_in_torch():
    w0, g0 = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    w = torch.tensor(w0, requires_grad=True)
    topt = torch.optim.Adam([{"params": [w]}, {"params": []}], lr=0.1)
    opt = O.Adam([{"params": [jnp.asarray(w0)]}, {"params": []}], lr=0.1)
    for _ in range(2):
        w.grad = torch.tensor(g0)
        topt.step()
        opt.step([[jnp.asarray(g0)], []])
    np.testing.assert_allclose(np.asarray(opt.params[0][0]), w.detach().numpy(), rtol=1e-12)
    ts, os_ = topt.state_dict(), opt.state_dict()
    assert [g["params"] for g in os_["param_groups"]] == [[0], []]
    assert [sorted(g) for g in os_["param_groups"]] == [sorted(g) for g in ts["param_groups"]]
    for key, value in ts["state"][0].items():
        np.testing.assert_allclose(np.asarray(os_["state"][0][key]), value.numpy(), rtol=1e-12)
    assert opt.param_groups[1]["params"] == [] and topt.param_groups[1]["params"] == []
    opt.add_param_group({"params": []})  # torch's add_param_group takes one too
    topt.add_param_group({"params": []})
    assert len(opt.param_groups) == len(topt.param_groups) == 3
    opt.load_state_dict(opt.state_dict())


# ---------------------------------------------------------------- one commit
def test_load_state_dict_of_several_groups_is_all_or_nothing():
    opt = O.Adam([{"params": [jnp.ones(2)]}, {"params": [jnp.ones(3)], "lr": 0.5}], lr=0.1)
    opt.step([[jnp.ones(2)], [jnp.ones(3)]])
    sd = opt.state_dict()
    good = jax.tree_util.tree_map(lambda x: x, sd)
    sd["param_groups"][0]["lr"] = 0.01
    sd["state"][1]["exp_avg"] = np.zeros(7)  # group 1's entry is broken
    before = jax.tree_util.tree_map(np.asarray, opt.opt_state)
    with pytest.raises(ValueError, match="param group 1"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.1  # group 0 untouched although it was valid
    jax.tree_util.tree_map(np.testing.assert_array_equal, opt.opt_state, before)
    opt.load_state_dict(good)
    opt.step([[jnp.ones(2)], [jnp.ones(3)]])


def test_a_state_array_as_the_gradient_is_copied_not_donated():
    """The step donates params and state; XLA refuses a call that also reads a donated buffer
    (and deletes nothing), so the step copies that gradient and runs again."""
    opt, ref = (O.Adam({"w": jnp.ones(3)}, lr=0.1) for _ in range(2))
    for o in (opt, ref):
        o.step({"w": jnp.asarray([1.0, -2.0, 0.5])})
    g = np.asarray(opt.opt_state.slots["exp_avg"]["w"])
    opt.step(opt.opt_state.slots["exp_avg"])
    ref.step({"w": jnp.asarray(g)})
    np.testing.assert_array_equal(opt.params["w"], ref.params["w"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, opt.opt_state, ref.opt_state)
