"""Issue 27.1-27.3: torch's parameter order (a dict's insertion order) in state_dicts both ways,
no silent mismatch of a nameless checkpoint, and param groups declared by name over one model
dict, whose gradient ``step`` takes whatever the groups, also after ``add_param_group``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

import optx.optim as O

torch.set_default_dtype(torch.float64)
X = np.random.default_rng(0).normal(size=(6, 4))


class Attention(nn.Module):
    """A LLaMA-style block: four projections of one shape, no bias, declared q, k, v, o (a dict
    of them sorts k, o, q, v)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (
            nn.Linear(4, 4, bias=False) for _ in range(4))

    def forward(self, x):
        a = torch.softmax(self.q_proj(x) @ self.k_proj(x).T, -1)
        return self.o_proj(a @ torch.tanh(self.v_proj(x)))


def jax_attention(p, x):
    a = jax.nn.softmax((x @ p["q_proj.weight"].T) @ (x @ p["k_proj.weight"].T).T, -1)
    return (a @ jnp.tanh(x @ p["v_proj.weight"].T)) @ p["o_proj.weight"].T


def _loss_t(model):
    return (model(torch.tensor(X)) ** 2).mean()


def _loss_j(p):
    return (jax_attention(p, jnp.asarray(X)) ** 2).mean()


def _torch_steps(model, opt, n):
    for _ in range(n):
        opt.zero_grad()
        _loss_t(model).backward()
        opt.step()


def _np_sd(sd):
    return {"state": {k: {n: v.numpy().copy() if torch.is_tensor(v) else v for n, v in s.items()}
                      for k, s in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]]}


def _torch_sd(sd):
    return {"state": {k: {n: torch.tensor(np.asarray(v)) for n, v in s.items()}
                      for k, s in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]]}


def _err(params, model):
    return max(float(np.max(np.abs(np.asarray(params[n]) - p.detach().numpy())))
               for n, p in model.named_parameters())


def test_nameless_torch_checkpoint_lands_on_torchs_parameters():
    model = Attention()
    topt = torch.optim.Adam(model.parameters(), lr=0.05)  # no names: the default
    _torch_steps(model, topt, 5)
    sd = _np_sd(topt.state_dict())
    assert "param_names" not in sd["param_groups"][0]
    params = {n: jnp.asarray(p.detach().numpy()) for n, p in model.named_parameters()}
    opt = O.Adam(params, lr=0.05)  # the dict keyed as named_parameters(), in its order
    opt.load_state_dict(sd)
    grad = jax.jit(jax.grad(_loss_j))
    for _ in range(5):
        opt.step(grad(opt.params))
    _torch_steps(model, topt, 5)
    assert _err(opt.params, model) <= 1e-10


def test_optx_checkpoint_of_a_dict_loads_into_torch_by_position():
    model = Attention()
    params = {n: jnp.asarray(p.detach().numpy()) for n, p in model.named_parameters()}
    opt = O.SGD(params, lr=0.1, momentum=0.9)
    grad = jax.jit(jax.grad(_loss_j))
    for _ in range(3):
        opt.step(grad(opt.params))
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.tensor(np.asarray(opt.params[n])))
    topt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    assert sd["param_groups"][0]["param_names"] == [n for n, _ in model.named_parameters()]
    topt.load_state_dict(_torch_sd({**sd, "param_groups": [
        {k: v for k, v in g.items() if k != "param_names"} for g in sd["param_groups"]]}))
    for _ in range(3):
        opt.step(grad(opt.params))
    _torch_steps(model, topt, 3)
    assert _err(opt.params, model) <= 1e-10


def test_shape_mismatch_on_load_names_the_parameters_and_the_order():
    torch.manual_seed(0)
    lin = nn.Linear(3, 2)
    topt = torch.optim.Adam(lin.parameters())
    lin(torch.ones(1, 3)).sum().backward()
    topt.step()
    sd = _np_sd(topt.state_dict())  # weight (2, 3) then bias (2,)
    # A dict built in the other order than the module's.
    opt = O.Adam({"bias": jnp.zeros(2), "weight": jnp.zeros((2, 3))})
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"parameter 0 \('bias'\).*shape.*order.*name"):
        opt.load_state_dict(sd)
    assert opt.state_dict()["state"] == before["state"] == {}


NO_DECAY = ("bias", "norm.weight")


def _model():
    torch.manual_seed(1)
    return nn.ModuleDict({"embed": nn.Linear(3, 4), "norm": nn.LayerNorm(4),
                          "head": nn.Linear(4, 2)})


def _forward_t(m, x):
    return m["head"](m["norm"](torch.tanh(m["embed"](x))))


def _forward_j(p, x):
    h = jnp.tanh(x @ p["embed.weight"].T + p["embed.bias"])
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mu) / jnp.sqrt(var + 1e-5) * p["norm.weight"] + p["norm.bias"]
    return h @ p["head.weight"].T + p["head.bias"]


def _groups(named, frozen):
    named = list(named)
    decay = [(n, p) for n, p in named if n not in frozen and not any(k in n for k in NO_DECAY)]
    no_decay = [(n, p) for n, p in named if n not in frozen and any(k in n for k in NO_DECAY)]
    return [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]


def test_named_groups_over_one_dict_with_an_unfreeze():
    """torch's fine-tuning groups (no decay for biases and norms) from named_parameters(), a
    frozen embedding unfrozen mid-run by add_param_group: opt.params stays one dict and step
    takes its gradient, whatever the groups."""
    model = _model()
    frozen = {"embed.weight", "embed.bias"}
    start = {n: jnp.asarray(p.detach().numpy()) for n, p in model.named_parameters()}
    topt = torch.optim.AdamW(_groups(model.named_parameters(), frozen), lr=0.05)
    opt = O.AdamW(_groups(start.items(), frozen), lr=0.05)
    assert set(opt.params) == set(start) - frozen
    x = np.random.default_rng(2).normal(size=(5, 3))

    def loss_j(trained):
        return jnp.mean(_forward_j({**start, **trained}, jnp.asarray(x)) ** 2)

    def torch_step():
        topt.zero_grad()
        (_forward_t(model, torch.tensor(x)) ** 2).mean().backward()
        topt.step()

    for _ in range(3):
        torch_step()
        opt.step(jax.grad(loss_j)(opt.params))
    for n, p in model.named_parameters():
        if n in frozen:
            p.requires_grad_(True)
    unfreeze = [(n, p) for n, p in model.named_parameters() if n in frozen]
    topt.add_param_group({"params": unfreeze, "lr": 0.01})
    opt.add_param_group({"params": [(n, start[n]) for n in start if n in frozen], "lr": 0.01})
    assert list(opt.params)[-2:] == ["embed.weight", "embed.bias"]
    assert len(opt.param_groups) == 3
    for _ in range(3):
        torch_step()
        opt.step(jax.grad(loss_j)(opt.params))
    assert _err(opt.params, model) <= 1e-10
    # The checkpoint is torch's, names included.
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert [g["param_names"] for g in sd["param_groups"]] == [
        g["param_names"] for g in tsd["param_groups"]]
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]
    # Every group's params is a list of arrays, as torch's.
    assert sum(p.size for g in opt.param_groups for p in g["params"]) == sum(
        p.numel() for g in topt.param_groups for p in g["params"])


def test_named_gradients_must_match_the_params():
    opt = O.SGD([("w", jnp.ones(2)), ("b", jnp.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"missing \['b'\], unexpected \['c'\]"):
        opt.step({"w": jnp.ones(2), "c": jnp.ones(1)})
    with pytest.raises(ValueError, match="all optimizer param groups should be with/without"):
        opt.add_param_group({"params": [jnp.ones(3)]})
