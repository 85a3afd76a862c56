"""Issue 26.3 and 26.4: ``opt.state`` is torch's mapping (parameter -> dict of its state, user
entries kept through state_dict), the functional state is ``opt.opt_state``, and optimizers
(with their schedulers) deepcopy and pickle into copies that step on exactly as the original."""

from __future__ import annotations

import copy
import gc
import pickle
import weakref

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from registry import OPTIMIZERS

import optx
import optx.optim as O
from optx.optim import lr_scheduler

torch.set_default_dtype(torch.float64)


def _pair(cls="Adam", **kw):
    x = np.array([1.0, -2.0, 0.5])
    y = np.array([[0.5, 1.5], [2.0, -1.0]])
    _pair.given = [jnp.asarray(x), jnp.asarray(y)]
    opt = getattr(O, cls)(_pair.given, **kw)
    tp = [torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)]
    return opt, getattr(torch.optim, cls)(tp, **kw), tp


def _step(opt, topt, tp, k=0):
    g = [np.sin(np.arange(3) + k), np.cos(np.arange(4).reshape(2, 2) + k)]
    for p, x in zip(tp, g):
        p.grad = torch.tensor(x)
    topt.step()
    opt.step([jnp.asarray(x) for x in g])


def test_state_is_keyed_by_parameter_with_torch_keys_and_values():
    opt, topt, tp = _pair("Adam", lr=0.1, amsgrad=True)
    given = _pair.given[0]
    _step(opt, topt, tp)
    assert len(opt.state) == len(topt.state) == 2
    for p, t in zip(opt.params, tp):
        assert p in opt.state
        assert sorted(opt.state[p]) == sorted(topt.state[t])
        for k, v in topt.state[t].items():
            np.testing.assert_allclose(np.asarray(opt.state[p][k]), v.numpy(), rtol=1e-12)
    assert list(opt.state) == list(opt.params)  # iteration yields the parameters
    assert [dict(v) for v in opt.state.values()] == [dict(opt.state[p]) for p in opt.params]
    # An array the user gave (optx copies it) finds its parameter too.
    assert float(opt.state[given]["step"]) == 1
    with pytest.raises(KeyError):
        opt.state[jnp.ones(3)]
    old = opt.params[0]
    _step(opt, topt, tp)
    with pytest.raises(KeyError, match="replaced by a step"):
        opt.state[old]
    assert jnp.ones(3) not in opt.state
    assert isinstance(opt.opt_state, optx.OptimizerState)


def test_user_entries_travel_through_state_dict_as_torch():
    opt, topt, tp = _pair("SGD", lr=0.1, momentum=0.9)
    _step(opt, topt, tp)
    for o, p in ((opt, opt.params[1]), (topt, tp[1])):
        o.state["custom"] = {"epoch": 3}
        o.state[p]["note"] = "frozen later"
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd["state"]["custom"] == tsd["state"]["custom"] == {"epoch": 3}
    assert sd["state"][1]["note"] == tsd["state"][1]["note"] == "frozen later"
    fresh = O.SGD([jnp.zeros(3), jnp.zeros((2, 2))], lr=0.1, momentum=0.9)
    fresh.load_state_dict(sd)
    assert fresh.state["custom"] == {"epoch": 3}
    assert fresh.state[fresh.params[1]]["note"] == "frozen later"
    assert fresh.state_dict()["state"].keys() == sd["state"].keys()
    # torch's state is a defaultdict(dict): reading a new key creates it.
    assert opt.state["new"] == {} and "new" in opt.state


def test_writes_through_the_mapping_take_effect_at_the_next_step():
    opt, topt, tp = _pair("Adam", lr=0.1)
    _step(opt, topt, tp)
    new = np.full((2, 2), 0.3)
    opt.state[opt.params[1]]["exp_avg"] = new
    with torch.no_grad():
        topt.state[tp[1]]["exp_avg"].copy_(torch.tensor(new))
    opt.state[opt.params[0]]["step"] = 7  # a per-parameter step, as torch's
    topt.state[tp[0]]["step"].fill_(7)
    _step(opt, topt, tp, 1)
    for a, b in zip(opt.params, tp):
        np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), rtol=1e-12)
    # A wrong value raises and changes nothing.
    before = opt.state_dict()
    with pytest.raises(ValueError, match="exp_avg.*shape"):
        opt.state[opt.params[1]]["exp_avg"] = np.zeros(5)
    with pytest.raises(ValueError, match="step"):
        opt.state[opt.params[1]]["step"] = -1
    after = opt.state_dict()
    for i in before["state"]:
        for k, v in before["state"][i].items():
            np.testing.assert_array_equal(after["state"][i][k], v)


def test_deleting_a_parameters_state_restarts_it_as_torch():
    opt, topt, tp = _pair("Adam", lr=0.1)
    for k in range(2):
        _step(opt, topt, tp, k)
    del opt.state[opt.params[0]]
    del topt.state[tp[0]]
    _step(opt, topt, tp, 2)
    assert float(opt.state[opt.params[0]]["step"]) == 1
    for a, b in zip(opt.params, tp):
        np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), rtol=1e-12)


def _copies(opt):
    return [copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))]


@pytest.mark.parametrize("info", [pytest.param(i, id=i.name) for i in OPTIMIZERS])
def test_copies_step_on_exactly_as_the_original(info):
    kw = info.variants or {}
    shapes = ((2, 3), (3, 2)) if info.matrices_only else ((3,), (2, 2))
    params = [jnp.asarray(np.linspace(-1, 1, int(np.prod(s))).reshape(s)) for s in shapes]
    opt = getattr(O, info.torch_name)(params, **kw)

    def loss(ps):
        return sum(jnp.sum(jnp.sin(p) * (i + 1.0)) for i, p in enumerate(ps))

    def step(o):
        return o.step(loss) if info.needs_closure else o.step(
            [jnp.cos(p) * (i + 1.0) for i, p in enumerate(o.params)])

    step(opt)
    copies = _copies(opt)
    for o in [opt, *copies]:
        step(o)
        step(o)
    for c in copies:
        for a, b in zip(c.params, opt.params):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert c.param_groups[0].keys() == opt.param_groups[0].keys()
        assert repr(c) == repr(opt)


def test_copies_with_a_scheduler_and_hooks_as_torch():
    opt = O.SGD([jnp.ones(2)], lr=0.1, momentum=0.9)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    opt.register_step_post_hook(lambda *a: None)
    for _ in range(3):
        opt.step([jnp.ones(2)])
        sched.step()
    copies = [copy.deepcopy(sched), pickle.loads(pickle.dumps(sched))]
    for s in [sched, *copies]:
        for _ in range(3):
            s.optimizer.step([jnp.ones(2)])
            s.step()
    for c in copies:
        assert c.get_last_lr() == sched.get_last_lr()
        assert c.optimizer is not opt
        np.testing.assert_array_equal(np.asarray(c.optimizer.params[0]), np.asarray(opt.params[0]))
        assert not c.optimizer._optimizer_step_post_hooks  # torch copies no hooks either
    t = torch.optim.SGD([torch.ones(2, requires_grad=True)], lr=0.1)
    t.register_step_post_hook(lambda *a: None)
    assert not copy.deepcopy(t)._optimizer_step_post_hooks


def test_no_cyclic_references_as_torch():
    gc.disable()
    try:
        opt = O.Adam([{"params": [jnp.ones(2)]}, {"params": [jnp.ones(3)], "lr": 0.5}], lr=0.1)
        opt.step([[jnp.ones(2)], [jnp.ones(3)]])
        opt.step(lambda ps: jnp.sum(ps[0][0]) + jnp.sum(ps[1][0] ** 2))
        _ = opt.state[opt.params[0][0]]["exp_avg"], opt.param_groups[0]["lr"]
        ref = weakref.ref(opt)
        del opt, _
        assert ref() is None  # freed by reference counting alone
    finally:
        gc.enable()
