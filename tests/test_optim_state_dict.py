"""optx.optim state_dict in torch's layout: real torch state_dicts load into optx and continue the
same trajectory, optx's load into torch and do the same, and a malformed one changes nothing."""

from __future__ import annotations

import copy

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from registry import cases

import optx
import optx.optim as O

torch.set_default_dtype(torch.float64)

SHAPES = [(3,), (2, 2)]


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in SHAPES]


def _grads(params, k):
    return [np.sin(np.asarray(p) * (k + 1)) + 0.1 * np.asarray(p) for p in params]


def _tree_map_sd(fn, sd):
    return {
        "state": {i: {k: fn(v) for k, v in s.items()} for i, s in sd["state"].items()},
        "param_groups": copy.deepcopy(sd["param_groups"]),
    }


def _to_numpy(v):
    return v.detach().numpy().copy() if isinstance(v, torch.Tensor) else v


def _to_torch(v):
    return torch.tensor(np.asarray(v)) if isinstance(v, np.ndarray) else v


def _torch_steps(topt, leaves, start, n):
    for k in range(start, start + n):
        for leaf, g in zip(leaves, _grads([x.detach().numpy() for x in leaves], k)):
            leaf.grad = torch.tensor(g)
        topt.step()


def _optx_steps(opt, start, n):
    for k in range(start, start + n):
        opt.step([jnp.asarray(g) for g in _grads(opt.params, k)])


def _err(opt, leaves):
    return max(float(np.max(np.abs(np.asarray(a) - b.detach().numpy())))
               for a, b in zip(opt.params, leaves))


def _require(cls):
    assert hasattr(O, cls), f"{cls} missing from optx.optim"


@pytest.mark.parametrize("info,kw", cases("state_dict"))
def test_torch_state_dict_resumes_in_optx(info, kw):
    cls = info.torch_name
    _require(cls)
    leaves = [torch.tensor(p, requires_grad=True) for p in _params()]
    topt = getattr(torch.optim, cls)(leaves, **kw)
    _torch_steps(topt, leaves, 0, 3)
    sd = _tree_map_sd(_to_numpy, topt.state_dict())
    opt = getattr(O, cls)([jnp.asarray(x.detach().numpy()) for x in leaves], **kw)
    opt.load_state_dict(sd)
    _torch_steps(topt, leaves, 3, 3)
    _optx_steps(opt, 3, 3)
    assert _err(opt, leaves) <= 1e-10


@pytest.mark.parametrize("info,kw", cases("state_dict"))
def test_optx_state_dict_resumes_in_torch(info, kw):
    cls = info.torch_name
    _require(cls)
    opt = getattr(O, cls)([jnp.asarray(p) for p in _params()], **kw)
    _optx_steps(opt, 0, 3)
    sd = opt.state_dict()
    leaves = [torch.tensor(np.asarray(p), requires_grad=True) for p in opt.params]
    topt = getattr(torch.optim, cls)(leaves, **kw)
    topt.load_state_dict(_tree_map_sd(_to_torch, sd))
    # Same keys as torch's own state after the same number of steps.
    ref_leaves = [torch.tensor(p, requires_grad=True) for p in _params()]
    ref = getattr(torch.optim, cls)(ref_leaves, **kw)
    _torch_steps(ref, ref_leaves, 0, 3)
    assert {i: sorted(s) for i, s in ref.state_dict()["state"].items()} == {
        i: sorted(s) for i, s in sd["state"].items()
    }
    _torch_steps(topt, leaves, 3, 3)
    _optx_steps(opt, 3, 3)
    assert _err(opt, leaves) <= 1e-10
    # And optx's own round trip is the identity.
    again = getattr(O, cls)([jnp.asarray(p) for p in opt.params], **kw)
    again.load_state_dict(opt.state_dict())
    _optx_steps(again, 6, 1)
    _optx_steps(opt, 6, 1)
    for a, b in zip(again.params, opt.params):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_state_dict_numbers_leaves_across_groups_and_loads_hyperparams():
    opt = O.Adam([{"params": {"b": jnp.ones(2), "a": jnp.zeros(3)}},
                  {"params": [jnp.ones(1)], "lr": 0.5}], lr=0.1)
    opt.step([{"a": jnp.ones(3), "b": jnp.ones(2)}, [jnp.ones(1)]])
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["state"][0]["exp_avg"].shape == (2,)  # torch's order: 'b' was inserted first
    assert sd["state"][0]["step"].dtype == np.float32 and sd["state"][0]["step"] == 1
    sd["param_groups"][1]["lr"] = 0.25
    opt.load_state_dict(sd)
    assert opt.param_groups[1]["lr"] == 0.25


def _bad(sd, how):
    sd = _tree_map_sd(lambda v: v, sd)
    if how == "groups":
        sd["param_groups"].append(dict(sd["param_groups"][0]))
    elif how == "size":
        sd["param_groups"][0]["params"] = [0]
    elif how == "json_key":  # parameter numbers as strings, as after a JSON round trip
        sd["state"] = {str(k): v for k, v in sd["state"].items()}
    elif how == "orphan":  # state for a parameter no group lists
        sd["state"][7] = sd["state"].pop(1)
    elif how == "step":
        sd["state"][1]["step"] = np.asarray(-5.0, np.float32)
    elif how == "missing":
        del sd["state"][1]["exp_avg_sq"]
    elif how == "shape":
        sd["state"][1]["exp_avg"] = np.zeros((5,))
    elif how == "dtype":
        sd["state"][1]["exp_avg"] = np.zeros((2, 2), dtype=np.int32)
    elif how == "other":  # another optimizer's state
        sd["state"][1] = {"momentum_buffer": np.zeros((2, 2))}
    return sd


@pytest.mark.parametrize("how", ["groups", "size", "json_key", "orphan", "step", "missing",
                                 "shape", "dtype", "other"])
def test_malformed_state_dict_changes_nothing(how):
    opt = O.Adam([jnp.asarray(p) for p in _params()], lr=0.01)
    _optx_steps(opt, 0, 2)
    before = opt.state_dict()
    with pytest.raises(ValueError):
        opt.load_state_dict(_bad(before, how))
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for i in before["state"]:
        for k in before["state"][i]:
            np.testing.assert_array_equal(after["state"][i][k], before["state"][i][k])


def _lbfgs_problem():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 4))
    a = a @ a.T + np.eye(4)
    return a, rng.normal(size=4), rng.normal(size=4)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_state_dict_both_ways(line_search_fn):
    _require("LBFGS")
    a, b, x0 = _lbfgs_problem()
    kw = dict(lr=0.5, max_iter=3, history_size=2, line_search_fn=line_search_fn)

    def loss_fn(p):
        return 0.5 * p @ jnp.asarray(a) @ p - jnp.asarray(b) @ p + 0.1 * jnp.sum(p**4)

    def torch_opt(x_np):
        x = torch.tensor(np.asarray(x_np), requires_grad=True)
        opt = torch.optim.LBFGS([x], **kw)

        def closure():
            opt.zero_grad()
            loss = 0.5 * x @ torch.tensor(a) @ x - torch.tensor(b) @ x + 0.1 * torch.sum(x**4)
            loss.backward()
            return loss

        return opt, x, closure

    def to_numpy_entry(v):
        if isinstance(v, list):
            return [None if t is None else t.detach().numpy().copy() for t in v]
        return _to_numpy(v)

    def to_torch_entry(v):
        if isinstance(v, list):
            return [None if t is None else torch.tensor(np.asarray(t)) for t in v]
        return _to_torch(v)

    # torch -> optx
    topt, x, closure = torch_opt(x0)
    for _ in range(2):
        topt.step(closure)
    sd = _tree_map_sd(to_numpy_entry, topt.state_dict())
    opt = O.LBFGS(jnp.asarray(x.detach().numpy()), **kw)
    opt.load_state_dict(sd)
    for _ in range(2):
        topt.step(closure)
        opt.step(closure=loss_fn)
    np.testing.assert_allclose(np.asarray(opt.params), x.detach().numpy(), atol=1e-10)

    # optx -> torch
    sd = opt.state_dict()
    assert sorted(sd["state"][0]) == sorted(topt.state_dict()["state"][0])
    topt2, x2, closure2 = torch_opt(opt.params)
    topt2.load_state_dict(_tree_map_sd(to_torch_entry, sd))
    for _ in range(2):
        topt2.step(closure2)
        opt.step(closure=loss_fn)
    np.testing.assert_allclose(np.asarray(opt.params), x2.detach().numpy(), atol=1e-10)

    bad = opt.state_dict()
    bad["state"][0]["d"] = np.zeros(7)
    with pytest.raises(ValueError, match="'d'"):
        opt.load_state_dict(bad)


def test_loaded_state_does_not_alias_the_callers_arrays():
    """torch tensors turned into numpy arrays share torch's memory; continuing torch after
    loading must not change optx's state."""
    p = [torch.tensor(np.linspace(-1, 1, 4), requires_grad=True)]
    topt = torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    for k in range(3):
        p[0].grad = torch.sin(p[0].detach() * 3 + k)
        topt.step()
    sd = topt.state_dict()
    sd_np = {"state": {i: {k: v.numpy() if isinstance(v, torch.Tensor) else v
                           for k, v in s.items()} for i, s in sd["state"].items()},
             "param_groups": sd["param_groups"]}
    opt = optx.optim.SGD([jnp.asarray(p[0].detach().numpy())], lr=0.05, momentum=0.9,
                         nesterov=True, weight_decay=1e-3)
    opt.load_state_dict(sd_np)
    for k in range(3, 8):
        g = torch.sin(p[0].detach() * 3 + k)
        p[0].grad = g.clone()
        topt.step()  # mutates the arrays sd_np holds
        opt.step([jnp.asarray(g.numpy())])
    np.testing.assert_allclose(np.asarray(opt.params[0]), p[0].detach().numpy(), rtol=1e-12)
