"""optx.optim against torch.optim where a review found them apart: a group added to an optimizer
built from one pytree, tuple hyperparameters given as lists, state_dicts from older torch or with
state for some parameters only, LBFGS loaded before its first step, replaced group params, and
torch's errors for duplicate or missing parameters."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import optx.optim as O

torch.set_default_dtype(torch.float64)

pytestmark = pytest.mark.skipif(
    not jax.config.jax_enable_x64, reason="float64 trajectories are compared"
)

SHAPES = [(3,), (2, 2)]


def _params(seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in shapes]


def _grads(k, shapes=SHAPES):
    rng = np.random.default_rng(100 + k)
    return [rng.normal(size=s) for s in shapes]


def _torch_step(opt, tparams, grads):
    for p, g in zip(tparams, grads):
        p.grad = None if g is None else torch.tensor(g)
    opt.step()


def _close(tparams, jparams, atol=1e-12):
    for t, j in zip(tparams, jparams):
        np.testing.assert_allclose(np.asarray(j), t.detach().numpy(), rtol=1e-10, atol=atol)


def _to_numpy_sd(sd):
    def conv(x):
        if isinstance(x, torch.Tensor):
            return x.detach().numpy().copy()
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, list):
            return [conv(v) for v in x]
        return x

    return conv(copy.deepcopy(sd))


def _to_torch_sd(sd):
    def conv(x):
        if isinstance(x, (np.ndarray, jax.Array)):
            return torch.tensor(np.asarray(x))
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, list):
            return [conv(v) for v in x]
        return x

    return conv(sd)


# ---------------------------------------------------------------- 1. add_param_group on a pytree
def test_add_param_group_to_single_pytree_makes_it_multi_group():
    p0, p1 = _params()
    t0, t1 = (torch.tensor(p, requires_grad=True) for p in (p0, p1))
    topt = torch.optim.Adam([t0], lr=0.1)
    topt.add_param_group({"params": [t1], "lr": 0.05})
    opt = O.Adam([jnp.asarray(p0)], lr=0.1)
    opt.add_param_group({"params": [jnp.asarray(p1)], "lr": 0.05})
    assert isinstance(opt.params, list) and len(opt.params) == 2
    assert isinstance(opt.opt_state, list) and len(opt.opt_state) == 2
    with pytest.raises(ValueError, match="2 param groups"):
        opt.step([jnp.ones(3)])  # one group's grads no longer do
    for k in range(3):
        g0, g1 = _grads(k)
        _torch_step(topt, [t0, t1], [g0, g1])
        opt.step([[jnp.asarray(g0)], [jnp.asarray(g1)]])
        _close([t0, t1], [opt.params[0][0], opt.params[1][0]])
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert float(sd["state"][1]["step"]) == float(topt.state_dict()["state"][1]["step"])


def test_add_param_group_to_single_pytree_closure_gets_the_groups():
    opt = O.SGD({"w": jnp.ones(3)}, lr=0.1)
    opt.add_param_group({"params": {"head": jnp.ones(2)}, "lr": 0.5})
    loss = opt.step(lambda ps: jnp.sum(ps[0]["w"] ** 2) + jnp.sum(ps[1]["head"] ** 2))
    assert float(loss) == 5.0
    np.testing.assert_allclose(opt.params[0]["w"], 0.8 * np.ones(3))
    np.testing.assert_allclose(opt.params[1]["head"], np.zeros(2))


def test_failed_add_param_group_keeps_single():
    opt = O.SGD([jnp.ones(3)], lr=0.1)
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [jnp.ones(2)], "lr": -1.0})
    opt.step([jnp.ones(3)])  # still one pytree
    assert isinstance(opt.params, list) and opt.params[0].shape == (3,)


# ---------------------------------------------------------------- 2. tuples given as lists
@pytest.mark.parametrize("where", ["ctor", "add_param_group", "setitem", "load_state_dict"])
def test_betas_as_list_like_torch(where):
    betas = [0.8, 0.99]
    p0 = _params()
    tp = [torch.tensor(p, requires_grad=True) for p in p0]
    topt = torch.optim.Adam(tp, lr=0.1, betas=betas)
    if where == "ctor":
        opt = O.Adam([jnp.asarray(p) for p in p0], lr=0.1, betas=betas)
    elif where == "add_param_group":
        opt = O.Adam([{"params": [jnp.asarray(p0[0])]}], lr=0.1)
        opt.add_param_group({"params": [jnp.asarray(p0[1])], "betas": betas})
        opt.param_groups[0]["betas"] = tuple(betas)
    else:
        opt = O.Adam([jnp.asarray(p) for p in p0], lr=0.1)
        if where == "setitem":
            opt.param_groups[0]["betas"] = betas
        else:
            sd = opt.state_dict()
            sd["param_groups"][0]["betas"] = betas
            opt.load_state_dict(sd)
    assert all(g["betas"] == (0.8, 0.99) for g in opt.param_groups)
    for k in range(3):
        g = _grads(k)
        _torch_step(topt, tp, g)
        opt.step([[jnp.asarray(x)] for x in g] if where == "add_param_group"
                 else [jnp.asarray(x) for x in g])
    flat = jax.tree_util.tree_leaves(opt.params)
    _close(tp, flat)


def test_rprop_etas_as_list_like_torch():
    p0 = _params()
    tp = [torch.tensor(p, requires_grad=True) for p in p0]
    topt = torch.optim.Rprop(tp, etas=[0.4, 1.3], step_sizes=[1e-5, 10])
    opt = O.Rprop([jnp.asarray(p) for p in p0], etas=[0.4, 1.3], step_sizes=[1e-5, 10])
    for k in range(3):
        g = _grads(k)
        _torch_step(topt, tp, g)
        opt.step([jnp.asarray(x) for x in g])
    _close(tp, opt.params)


# ---------------------------------------------------------------- 3. LBFGS loaded before a step
def test_lbfgs_loads_state_dict_before_first_step():
    x0 = np.array([1.0, -0.5, 2.0])

    def loss(p):
        return jnp.sum((p[0] - 1.0) ** 2) + jnp.sum(p[0] ** 4)

    t = torch.tensor(x0, requires_grad=True)
    topt = torch.optim.LBFGS([t], lr=1, max_iter=3)

    def closure():
        topt.zero_grad()
        v = torch.sum((t - 1.0) ** 2) + torch.sum(t**4)
        v.backward()
        return v

    opt = O.LBFGS([jnp.asarray(x0)], lr=1, max_iter=3)
    opt.load_state_dict(opt.state_dict())
    for _ in range(2):
        topt.step(closure)
        opt.step(loss)
    _close([t], opt.params)


# ---------------------------------------------------------------- 4. older torch state_dicts
_NEWER_KEYS = ("foreach", "maximize", "capturable", "differentiable", "fused",
               "decoupled_weight_decay", "amsgrad")


def test_old_torch_state_dict_lacking_newer_keys_loads_as_in_torch():
    p0 = _params()
    tp = [torch.tensor(p, requires_grad=True) for p in p0]
    topt = torch.optim.Adam(tp, lr=0.1)
    for k in range(2):
        _torch_step(topt, tp, _grads(k))
    sd = _to_numpy_sd(topt.state_dict())
    for key in _NEWER_KEYS:
        sd["param_groups"][0].pop(key)
    # torch's __setstate__ fills them with its defaults, whatever the instance was built with
    t2 = [torch.tensor(p.detach().numpy(), requires_grad=True) for p in tp]
    topt2 = torch.optim.Adam(t2, lr=0.1, maximize=True, amsgrad=True)
    topt2.load_state_dict(_to_torch_sd(sd))
    opt = O.Adam([jnp.asarray(p.detach().numpy()) for p in tp], lr=0.1, maximize=True,
                 amsgrad=True)
    opt.load_state_dict(sd)
    want = {k: v for k, v in topt2.param_groups[0].items() if k != "params"}
    got = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    assert got == want
    for k in range(2, 4):
        g = _grads(k)
        _torch_step(topt2, t2, g)
        opt.step([jnp.asarray(x) for x in g])
    _close(t2, opt.params)


@pytest.mark.parametrize("key", ["lr", "betas"])
def test_state_dict_lacking_a_hyperparameter_raises(key):
    opt = O.Adam([jnp.asarray(p) for p in _params()], lr=0.1)
    opt.step([jnp.asarray(g) for g in _grads(0)])
    sd = opt.state_dict()
    del sd["param_groups"][0][key]
    sd["param_groups"][0]["eps"] = 0.5
    with pytest.raises(ValueError, match=f"lacks \\['{key}'\\]"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["eps"] == 1e-8


def test_required_hyperparameter_without_default():
    import optx

    class NoDefaultLR(O.Optimizer):
        @staticmethod
        def _constructor(lr, momentum=0.0):
            return optx.sgd(lr, momentum)

    with pytest.raises(ValueError, match="required optimization parameter lr"):
        NoDefaultLR([jnp.ones(2)])
    opt = NoDefaultLR([{"params": [jnp.ones(2)], "lr": 0.1}])
    sd = opt.state_dict()
    del sd["param_groups"][0]["lr"]
    with pytest.raises(ValueError, match="lacks \\['lr'\\]"):
        opt.load_state_dict(sd)


# ---------------------------------------------------------------- 5. state for some params only
_PARTIAL = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True), SHAPES),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1), SHAPES),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True), SHAPES),
    ("Adadelta", dict(lr=0.5), SHAPES),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.2), SHAPES),
    ("Muon", dict(lr=0.02), [(3, 2), (2, 4)]),  # Newton-Schulz in bfloat16, as torch
]


@pytest.mark.parametrize("name,kw,shapes", _PARTIAL)
def test_state_for_some_parameters_only_loads_as_in_torch(name, kw, shapes):
    p0 = _params(shapes=shapes)
    tp = [torch.tensor(p, requires_grad=True) for p in p0]
    topt = getattr(torch.optim, name)(tp, **kw)
    for k in range(2):  # the second parameter never has a gradient: torch keeps no state for it
        _torch_step(topt, tp, [_grads(k, shapes)[0], None])
    sd = _to_numpy_sd(topt.state_dict())
    if 1 in sd["state"]:  # Adagrad creates all its state up front: drop one, and load that
        del sd["state"][1]
        topt.load_state_dict(_to_torch_sd(sd))
    assert list(sd["state"]) == [0]
    opt = getattr(O, name)([jnp.asarray(p.detach().numpy()) for p in tp], **kw)
    opt.load_state_dict(sd)
    for k in range(2, 5):
        g = _grads(k, shapes)
        _torch_step(topt, tp, g)
        opt.step([jnp.asarray(x) for x in g])
    _close(tp, opt.params, atol=1e-2 if name == "Muon" else 1e-12)


@pytest.mark.parametrize("name,kw", [
    ("RMSprop", dict(lr=0.01, momentum=0.5)),
    ("Adagrad", dict(lr=0.1)),
    ("Adadelta", dict(lr=0.5)),
])
def test_different_steps_load_where_the_update_never_reads_them(name, kw):
    tp = [torch.tensor(p, requires_grad=True) for p in _params()]
    topt = getattr(torch.optim, name)(tp, **kw)
    _torch_step(topt, tp, [_grads(0)[0], None])
    for k in range(1, 3):
        _torch_step(topt, tp, _grads(k))
    sd = _to_numpy_sd(topt.state_dict())
    assert sd["state"][0]["step"] != sd["state"][1]["step"]
    opt = getattr(O, name)([jnp.asarray(p.detach().numpy()) for p in tp], **kw)
    opt.load_state_dict(sd)
    for k in range(3, 5):
        g = _grads(k)
        _torch_step(topt, tp, g)
        opt.step([jnp.asarray(x) for x in g])
    _close(tp, opt.params)


@pytest.mark.parametrize("name,kw", [
    ("Adam", dict(lr=0.1)),
    ("Rprop", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1)),
    ("NAdam", dict(lr=0.1)),
    ("ASGD", dict(lr=0.1, t0=1)),
])
def test_state_for_some_parameters_only_loads_exactly_where_steps_matter(name, kw):
    """Parameters with different steps keep them (per-parameter step counts), so even updates
    that read the step (bias corrections, dampening's first step) continue torch's run."""
    tp = [torch.tensor(p, requires_grad=True) for p in _params()]
    topt = getattr(torch.optim, name)(tp, **kw)
    _torch_step(topt, tp, [_grads(0)[0], None])
    _torch_step(topt, tp, _grads(1))
    sd = _to_numpy_sd(topt.state_dict())
    opt = getattr(O, name)([jnp.asarray(p.detach().numpy()) for p in tp], **kw)
    opt.load_state_dict(sd)
    for k in range(2, 5):
        g = _grads(k)
        _torch_step(topt, tp, g)
        opt.step([jnp.asarray(x) for x in g])
    _close(tp, opt.params)


# ---------------------------------------------------------------- 6. replacing group['params']
def _adam_pair():
    p0 = _params()
    tp = [torch.tensor(p, requires_grad=True) for p in p0]
    return tp, torch.optim.Adam(tp, lr=0.1), O.Adam([jnp.asarray(p) for p in p0], lr=0.1)


def _step_both(topt, tp, opt, k, shapes=SHAPES):
    g = _grads(k, shapes)
    _torch_step(topt, tp, g)
    opt.step([jnp.asarray(x) for x in g])


@pytest.mark.parametrize("new_shapes", [SHAPES, [(5,), (1, 3)]])
def test_replaced_params_get_fresh_state_as_in_torch(new_shapes):
    tp, topt, opt = _adam_pair()
    for k in range(3):
        _step_both(topt, tp, opt, k)
    new = _params(seed=7, shapes=new_shapes)
    ntp = [torch.tensor(p, requires_grad=True) for p in new]
    topt.param_groups[0]["params"] = ntp
    opt.param_groups[0]["params"] = [jnp.asarray(p) for p in new]
    for k in range(3, 5):
        _step_both(topt, ntp, opt, k, new_shapes)
    _close(ntp, opt.params)
    assert [float(s["step"]) for s in opt.state_dict()["state"].values()] == [2.0, 2.0]


def test_params_assigned_back_keep_their_state():
    tp, topt, opt = _adam_pair()
    for k in range(4):
        _step_both(topt, tp, opt, k)
        topt.param_groups[0]["params"] = topt.param_groups[0]["params"]
        opt.param_groups[0]["params"] = opt.param_groups[0]["params"]
    _close(tp, opt.params)


# ---------------------------------------------------------------- 7. torch's errors
def _torch_error(fn):
    with pytest.raises(ValueError) as info:
        fn()
    return str(info.value)


def test_parameter_in_two_groups_raises_like_torch():
    t = torch.ones(2, requires_grad=True)
    msg = _torch_error(lambda: torch.optim.SGD([{"params": [t]}, {"params": [t]}], lr=0.1))
    a, b = jnp.ones(2), jnp.ones(2)  # equal values, distinct arrays: no error
    O.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    with pytest.raises(ValueError, match=msg):
        O.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)
    opt = O.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match=msg):
        opt.add_param_group({"params": [a]})
    opt.step([jnp.ones(2)])
    with pytest.raises(ValueError, match=msg):  # the optimizer's own (updated) array
        opt.add_param_group({"params": [opt.params[0]]})
    opt.add_param_group({"params": [b]})
    with pytest.raises(ValueError, match=msg):
        opt.param_groups[1]["params"] = [a]
    assert len(opt.param_groups) == 2 and opt.params[1][0].shape == (2,)


@pytest.mark.parametrize("empty", [[], {}, (x for x in ())])
def test_empty_parameter_list_raises_like_torch(empty):
    msg = _torch_error(lambda: torch.optim.SGD([], lr=0.1))
    with pytest.raises(ValueError, match=msg):
        O.SGD(empty, lr=0.1)
