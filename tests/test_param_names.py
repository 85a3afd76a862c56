"""Named parameters (issue 15.7): ``(name, array)`` pairs and dict pytrees' key paths as names,
``param_names`` in ``state_dict()`` as torch 2.x writes them, and torch state_dicts loaded **by
name** into a pytree whose leaf order differs from the torch module's."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

import optx.optim as O

torch.set_default_dtype(torch.float64)

X = np.random.default_rng(0).normal(size=(5, 3))
Y = np.random.default_rng(1).normal(size=(5, 2))


class Net(nn.Module):
    """Module order encoder, decoder: a dict pytree sorts them the other way round."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(3, 4)
        self.decoder = nn.Linear(4, 2)

    def forward(self, x):
        return self.decoder(torch.tanh(self.encoder(x)))


def _jax_loss(p):
    h = jnp.tanh(jnp.asarray(X) @ p["encoder"]["weight"].T + p["encoder"]["bias"])
    out = h @ p["decoder"]["weight"].T + p["decoder"]["bias"]
    return jnp.mean((out - jnp.asarray(Y)) ** 2)


def _torch_steps(model, opt, n):
    for _ in range(n):
        opt.zero_grad()
        loss = torch.mean((model(torch.tensor(X)) - torch.tensor(Y)) ** 2)
        loss.backward()
        opt.step()


def _tree_from_module(model):
    tree: dict = {}
    for name, p in model.named_parameters():
        mod, leaf = name.split(".")
        tree.setdefault(mod, {})[leaf] = jnp.asarray(p.detach().numpy())
    return tree


def _sd_map(fn, sd):
    return {"state": {i: {k: fn(v) for k, v in s.items()} for i, s in sd["state"].items()},
            "param_groups": copy.deepcopy(sd["param_groups"])}


def _np(v):
    return v.detach().numpy().copy() if isinstance(v, torch.Tensor) else v


def _pt(v):
    return torch.tensor(np.asarray(v)) if isinstance(v, (np.ndarray, jax.Array)) else v


def _max_err(tree, model):
    named = dict(model.named_parameters())
    return max(float(np.max(np.abs(np.asarray(tree[m][k]) - named[f"{m}.{k}"].detach().numpy())))
               for m in tree for k in tree[m])


@pytest.mark.parametrize("cls,kw", [("Adam", {"lr": 0.01}),
                                    ("SGD", {"lr": 0.1, "momentum": 0.9})])
def test_torch_state_dict_loads_by_name_and_exports_back(cls, kw):
    model = Net()
    topt = getattr(torch.optim, cls)(model.named_parameters(), **kw)
    _torch_steps(model, topt, 3)
    sd = topt.state_dict()
    assert sd["param_groups"][0]["param_names"] == [
        "encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"]
    tree = _tree_from_module(model)
    opt = getattr(O, cls)(tree, **kw)
    assert opt.param_groups[0]["param_names"] == [  # the dict's insertion order: torch's
        "encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"]
    opt.load_state_dict(_sd_map(_np, sd))
    # The loaded (torch) order is kept, as torch keeps loaded names.
    assert opt.param_groups[0]["param_names"] == sd["param_groups"][0]["param_names"]
    grad = jax.jit(jax.grad(_jax_loss))
    for _ in range(3):
        opt.step(grad(opt.params))
    _torch_steps(model, topt, 3)
    assert _max_err(opt.params, model) <= 1e-12  # parameters are O(1)
    # Export in torch's order: torch (which loads by position) resumes from it.
    out = opt.state_dict()
    assert out["param_groups"][0]["param_names"] == sd["param_groups"][0]["param_names"]
    model2 = Net()
    with torch.no_grad():
        for name, p in model2.named_parameters():
            m, k = name.split(".")
            p.copy_(torch.tensor(np.asarray(opt.params[m][k])))
    topt2 = getattr(torch.optim, cls)(model2.named_parameters(), **kw)
    topt2.load_state_dict(_sd_map(_pt, out))
    for _ in range(2):
        opt.step(grad(opt.params))
    _torch_steps(model, topt, 2)
    _torch_steps(model2, topt2, 2)
    for a, b in zip(model.parameters(), model2.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10)
    assert _max_err(opt.params, model2) <= 1e-12


def test_named_pairs_export_loads_into_torch():
    """A list of (name, array) pairs in torch's order: state_dict() is torch's, param_names
    included, and torch resumes from it."""
    model = Net()
    pairs = [(n, jnp.asarray(p.detach().numpy())) for n, p in model.named_parameters()]
    opt = O.Adam(pairs, lr=0.01)
    assert list(opt.params) == [n for n, _ in pairs]  # one dict keyed by the names
    topt = torch.optim.Adam(model.named_parameters(), lr=0.01)

    def loss(params):
        return _jax_loss({m: {k: params[f"{m}.{k}"] for k in ("weight", "bias")}
                          for m in ("encoder", "decoder")})

    for _ in range(2):
        opt.step(loss)
    _torch_steps(model, topt, 2)
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd["param_groups"] == tsd["param_groups"]
    assert {i: sorted(s) for i, s in sd["state"].items()} == {
        i: sorted(s) for i, s in tsd["state"].items()}
    for i in tsd["state"]:
        np.testing.assert_allclose(sd["state"][i]["exp_avg"],
                                   tsd["state"][i]["exp_avg"].numpy(), rtol=1e-10)


def test_param_names_written_only_for_named_params_as_torch():
    t_plain = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1).state_dict()
    o_plain = O.SGD([jnp.zeros(2)], lr=0.1).state_dict()
    assert "param_names" not in t_plain["param_groups"][0]
    assert "param_names" not in o_plain["param_groups"][0]
    t_named = torch.optim.SGD([("w", torch.zeros(2, requires_grad=True))], lr=0.1)
    o_named = O.SGD([("w", jnp.zeros(2))], lr=0.1)
    assert o_named.state_dict()["param_groups"] == t_named.state_dict()["param_groups"]
    assert o_named.param_groups[0]["param_names"] == ["w"]


def test_pytree_key_paths_name_leaves_as_torch_names_modules():
    tree = {"layer1": {"weight": jnp.ones((2, 2)), "bias": jnp.ones(2)},
            "blocks": [{"w": jnp.ones(1)}, {"w": jnp.ones(1)}]}
    opt = O.SGD(tree, lr=0.1)
    assert opt.param_groups[0]["param_names"] == [  # insertion order, as torch's modules
        "layer1.weight", "layer1.bias", "blocks.0.w", "blocks.1.w"]
    seq = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 1))  # torch names children "0", "1"
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    opt = O.SGD([{"weight": jnp.ones(1), "bias": jnp.ones(1)}] * 2, lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    # Unnamed, as model.parameters(): a bare array, a list or tuple of arrays.
    for plain in (jnp.ones(2), [jnp.ones(2), jnp.ones(1)], (jnp.ones(2),)):
        assert "param_names" not in O.SGD(plain, lr=0.1).param_groups[0]


def test_missing_or_extra_name_is_named_and_changes_nothing():
    model = Net()
    topt = torch.optim.Adam(model.named_parameters(), lr=0.01)
    _torch_steps(model, topt, 1)
    sd = _sd_map(_np, topt.state_dict())
    tree = _tree_from_module(model)
    tree["head"] = {"weight": jnp.ones(2)}
    del tree["decoder"]["bias"]
    opt = O.Adam(tree, lr=0.01)
    before = (jax.tree_util.tree_map(np.asarray, opt.params),
              jax.tree_util.tree_map(np.asarray, opt.opt_state), copy.deepcopy(opt.param_groups[0]
                                                                          ["param_names"]))
    sd["param_groups"][0]["params"] = sd["param_groups"][0]["params"]
    with pytest.raises(ValueError, match=r"missing \['head.weight'\], unexpected "
                                         r"\['decoder.bias'\]"):
        opt.load_state_dict(sd)
    after = (jax.tree_util.tree_map(np.asarray, opt.params),
             jax.tree_util.tree_map(np.asarray, opt.opt_state), opt.param_groups[0]["param_names"])
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, before[:2], after[:2]))
    assert before[2] == after[2]
    assert int(opt.opt_state.count) == 0


def test_torch_errors_for_mixed_names():
    def both(make_t, make_o):
        with pytest.raises(ValueError) as t:
            make_t()
        with pytest.raises(ValueError) as o:
            make_o()
        assert str(o.value) == str(t.value)

    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    both(lambda: torch.optim.SGD([("a", a), b], lr=0.1),
         lambda: O.SGD([("a", jnp.zeros(1)), jnp.zeros(1)], lr=0.1))
    both(lambda: torch.optim.SGD([{"params": [("a", a)]}, {"params": [b]}], lr=0.1),
         lambda: O.SGD([{"params": [("a", jnp.zeros(1))]}, {"params": [jnp.zeros(1)]}], lr=0.1))
    both(lambda: torch.optim.SGD([{"params": [a]}, {"params": [("b", b)]}], lr=0.1),
         lambda: O.SGD([{"params": [jnp.zeros(1)]}, {"params": [("b", jnp.zeros(1))]}], lr=0.1))


def test_unnamed_optimizer_takes_loaded_names_positionally_as_torch():
    t = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    o = O.SGD([jnp.zeros(2)], lr=0.1)
    sd = {"state": {}, "param_groups": [{**o.state_dict()["param_groups"][0],
                                          "param_names": ["w"]}]}
    t.load_state_dict(copy.deepcopy(sd))
    o.load_state_dict(copy.deepcopy(sd))
    assert o.param_groups[0]["param_names"] == t.param_groups[0]["param_names"] == ["w"]
    named = O.SGD([("v", jnp.zeros(2))], lr=0.1)
    plain = {"state": {}, "param_groups": [{k: v for k, v in sd["param_groups"][0].items()
                                            if k != "param_names"}]}
    named.load_state_dict(plain)  # no names saved: positional, the current names stay
    assert named.param_groups[0]["param_names"] == ["v"]


def test_lbfgs_state_dict_loads_by_name_with_its_flat_vectors_reordered():
    """LBFGS keeps flat vectors over all parameters in parameter order: loaded by name into a
    dict pytree (another order) they are rearranged, and exported back in torch's order."""
    kw = {"lr": 1, "max_iter": 3, "history_size": 4}
    model = Net()
    topt = torch.optim.LBFGS(model.named_parameters(), **kw)

    def closure():
        topt.zero_grad()
        loss = torch.mean((model(torch.tensor(X)) - torch.tensor(Y)) ** 2)
        loss.backward()
        return loss

    for _ in range(2):
        topt.step(closure)
    opt = O.LBFGS(_tree_from_module(model), **kw)
    opt.load_state_dict(_sd_map(_np, topt.state_dict()))
    out = opt.state_dict()  # straight back: torch's own vectors
    tsd = topt.state_dict()
    for k in ("d", "prev_flat_grad"):
        np.testing.assert_array_equal(out["state"][0][k], tsd["state"][0][k].numpy())
    for a, b in zip(out["state"][0]["old_dirs"], tsd["state"][0]["old_dirs"]):
        np.testing.assert_array_equal(a, b.numpy())
    for _ in range(2):
        opt.step(_jax_loss)
        topt.step(closure)
    assert _max_err(opt.params, model) <= 1e-12
