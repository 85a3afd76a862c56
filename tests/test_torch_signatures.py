"""Issue 26.1 and 26.5: each ``optx.optim`` class takes torch 2.13's constructor arguments (names,
order, defaults, kinds), so every call torch accepts is accepted and builds the same param
groups; plus the smaller object-model differences torch's tests catch."""

from __future__ import annotations

import inspect
import warnings

import jax.numpy as jnp
import pytest
import torch
from torch_versions import as_installed, newer, without_newer

import optx.optim as O

CLASSES = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "NAdam", "Rprop", "Adamax",
           "ASGD", "RAdam", "SparseAdam", "Adafactor", "Muon", "LBFGS"]
# Positional values torch's constructors take, per class (valid for every prefix).
POSITIONAL = {
    "SGD": (0.1, 0.9, 0.0, 0.01, True), "Adam": (0.01, (0.8, 0.9), 1e-6, 0.1, True),
    "AdamW": (0.01, (0.8, 0.9), 1e-6, 0.1, True), "RMSprop": (0.01, 0.9, 1e-6, 0.1, 0.5, True),
    "Adagrad": (0.1, 0.01, 0.1, 0.2, 1e-9), "Adadelta": (0.5, 0.8, 1e-5, 0.1),
    "NAdam": (0.01, (0.8, 0.9), 1e-6, 0.1, 0.003, True), "Rprop": (0.1, (0.4, 1.1), (1e-5, 5)),
    "Adamax": (0.01, (0.8, 0.9), 1e-6, 0.1), "ASGD": (0.1, 1e-3, 0.5, 10.0, 0.1),
    "RAdam": (0.01, (0.8, 0.9), 1e-6, 0.1, True), "SparseAdam": (0.01, (0.8, 0.9), 1e-6),
    "Adafactor": (0.1, -0.7, (None, 1e-2), 2.0, 0.1),
    "Muon": (0.01, 0.2, 0.9, False, (3.0, -4.0, 2.0), 1e-6, 3),
    "LBFGS": (0.5, 5, 7, 1e-6, 1e-8, 10, "strong_wolfe"),
}


def _params(name):
    shape = (2, 3) if name == "Muon" else (3,)
    return [jnp.ones(shape)], [torch.ones(shape, requires_grad=True)]


def _described(sig: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", CLASSES)
def test_signature_equals_torch(name):
    # Under a torch older than an argument optx follows (LBFGS's maximize before 2.14), that
    # argument is left out: tests/torch_versions.py.
    ours = inspect.signature(getattr(O, name))
    theirs = inspect.signature(getattr(torch.optim, name))
    assert without_newer(name, _described(ours)) == _described(theirs)
    init = inspect.signature(getattr(O, name).__init__)
    assert without_newer(name, _described(init)) == _described(theirs)


def _groups(opt, name=None):
    drop = {"params"} | (newer(name) if name else set())
    return [{k: v for k, v in g.items() if k not in drop} for g in opt.param_groups]


@pytest.mark.parametrize("name", CLASSES)
def test_every_positional_prefix_builds_torch_groups(name):
    values = POSITIONAL[name]
    for n in range(len(values) + 1):
        ours, theirs = _params(name)
        opt = getattr(O, name)(ours, *values[:n])
        topt = getattr(torch.optim, name)(theirs, *values[:n])
        assert _groups(opt, name) == _groups(topt), (name, n)
        defaults = {k: v for k, v in opt.defaults.items() if k not in newer(name)}
        assert defaults == topt.defaults, (name, n)


@pytest.mark.parametrize("name", CLASSES)
def test_bad_calls_raise_type_error_as_torch(name):
    ours, theirs = _params(name)
    too_many = (*POSITIONAL[name], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for args, kwargs in [(too_many, {}), ((), {"not_an_argument": 1}),
                         ((POSITIONAL[name][0],), {"lr": 0.1})]:
        with pytest.raises(TypeError):
            getattr(torch.optim, name)(theirs, *args, **kwargs)
        with pytest.raises(TypeError):
            getattr(O, name)(ours, *args, **kwargs)


def test_imagenet_idiom():
    # torch's ImageNet example: SGD(model.parameters(), args.lr, momentum=..., weight_decay=...)
    opt = O.SGD([jnp.ones(2)], 0.1, momentum=0.9, weight_decay=1e-4)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("name", CLASSES)
def test_class_docstring_documents_every_argument(name):
    doc = getattr(O, name).__doc__
    args = doc.split("Args:")[1].split("Example:")[0]
    for p in inspect.signature(getattr(O, name)).parameters:
        assert f"\n  {p}: " in args, f"{name}: {p} undocumented"
    assert ">>> " in doc.split("Example:")[1]


def test_adamw_groups_carry_decoupled_weight_decay_as_torch():
    opt, topt = O.AdamW([jnp.ones(2)]), torch.optim.AdamW([torch.ones(2, requires_grad=True)])
    assert _groups(opt) == _groups(topt)
    assert repr(opt) == repr(topt)
    # torch's Adam loading an AdamW state_dict becomes decoupled; AdamW loading Adam's stays so.
    adam, tadam = O.Adam([jnp.ones(2)]), torch.optim.Adam([torch.ones(2, requires_grad=True)])
    adam.load_state_dict(opt.state_dict())
    tadam.load_state_dict(topt.state_dict())
    assert adam.param_groups[0]["decoupled_weight_decay"] is True
    assert _groups(adam) == _groups(tadam)
    topt.load_state_dict(torch.optim.Adam([torch.ones(2, requires_grad=True)]).state_dict())
    opt.load_state_dict(O.Adam([jnp.ones(2)]).state_dict())
    assert _groups(opt) == _groups(topt)


def test_adam_loading_adamw_state_follows_torchs_trajectory():
    torch.manual_seed(0)
    w0 = torch.randn(3, dtype=torch.float64)
    tp = w0.clone().requires_grad_()
    topt = torch.optim.AdamW([tp], lr=0.1, weight_decay=0.5)
    opt = O.AdamW([jnp.asarray(w0.numpy())], lr=0.1, weight_decay=0.5)
    tp.grad = torch.ones(3, dtype=torch.float64)
    topt.step()
    opt.step([jnp.ones(3)])
    t2 = torch.optim.Adam([tp])
    t2.load_state_dict(topt.state_dict())
    o2 = O.Adam(opt.params)
    o2.load_state_dict(opt.state_dict())
    for _ in range(3):
        tp.grad = torch.ones(3, dtype=torch.float64)
        t2.step()
        o2.step([jnp.ones(3)])
    assert abs(o2.params[0] - jnp.asarray(tp.detach().numpy())).max() < 1e-12


@pytest.mark.parametrize("name", CLASSES)
def test_repr_equals_torch(name):
    ours, theirs = _params(name)
    ours_repr = as_installed(name, repr(getattr(O, name)(ours)))
    assert ours_repr == repr(getattr(torch.optim, name)(theirs))


def test_duplicate_params_warn_as_torch():
    x, t = jnp.ones(2), torch.ones(2, requires_grad=True)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        O.SGD([x, x], lr=0.1)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        torch.optim.SGD([t, t], lr=0.1)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]


@pytest.mark.parametrize("name", CLASSES)
def test_hyperparameters_checked_before_params_as_torch(name):
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)(None, lr=-1.0)
    with pytest.raises(ValueError) as ours:
        getattr(O, name)(None, lr=-1.0)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError):
        getattr(torch.optim, name)(None)
    with pytest.raises(TypeError):
        getattr(O, name)(None)


@pytest.mark.parametrize("loss", [lambda p: 3.0, lambda p: jnp.sum(p[0] ** 2).reshape(1)])
def test_lbfgs_closure_may_return_a_number_as_torch(loss):
    opt = O.LBFGS([jnp.ones(2)])
    assert float(opt.step(loss)) == float(jnp.ravel(jnp.asarray(loss([jnp.ones(2)])))[0])
