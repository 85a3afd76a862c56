"""Issue 33.5: load_state_dict errors that name the problem, the optimizer unchanged."""

from __future__ import annotations

import copy

import jax.numpy as jnp
import numpy as np
import pytest

import optx.optim as O


def _loss(params):
    return jnp.sum((params[0] - 1.0) ** 4) + jnp.sum(jnp.cos(params[0]))


def _arrays(opt):
    sd = opt.state_dict()
    return sd["param_groups"], {k: np.asarray(v) for k, v in sd["state"].get(0, {}).items()
                                if not isinstance(v, list)}


def _unchanged(opt, before):
    groups, state = _arrays(opt)
    assert groups == before[0] and state.keys() == before[1].keys()
    assert all(np.array_equal(state[k], before[1][k]) for k in state)


def test_load_state_dict_of_none_names_it():
    opt = O.Adam([jnp.ones(3)], lr=0.1)
    opt.step([jnp.ones(3)])
    before = _arrays(opt)
    with pytest.raises(ValueError, match="state_dict must be a dict.*got NoneType"):
        opt.load_state_dict(None)
    _unchanged(opt, before)
    opt.step([jnp.ones(3)])


@pytest.fixture(scope="module")
def lbfgs_sd():
    opt = O.LBFGS([jnp.linspace(-1.0, 2.0, 4)], lr=0.5, max_iter=2)
    for _ in range(2):
        opt.step(_loss)
    sd = opt.state_dict()
    assert sd["state"][0]["n_iter"] > 0 and "d" in sd["state"][0]
    return sd


@pytest.mark.parametrize("case", ["d", "old_dirs", "old_dirs-rows", "func_evals", "n_iter"])
def test_lbfgs_load_refuses_huge_values_naming_them(lbfgs_sd, case):
    opt = O.LBFGS([jnp.linspace(-1.0, 2.0, 4)], lr=0.5, max_iter=2)
    opt.step(_loss)
    before = _arrays(opt)
    bad = copy.deepcopy(lbfgs_sd)
    entry = bad["state"][0]
    huge = np.broadcast_to(np.float64(1.0), (2**42,))  # 32 TiB if copied
    if case == "d":
        entry["d"], match = huge, "'d' must be a float vector of shape"
    elif case == "old_dirs":
        entry["old_dirs"] = [huge] * len(entry["old_dirs"])
        match = "'old_dirs' must be a float vector of shape"
    elif case == "old_dirs-rows":
        entry["old_dirs"] = np.broadcast_to(np.float64(1.0), (2**40, 4))
        match = "history lists must have equal lengths <= history_size"
    else:
        entry[case], match = 10**12, f"'{case}' must be at most 2147483647"
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(bad)
    _unchanged(opt, before)
    opt.step(_loss)  # usable
