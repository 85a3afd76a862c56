"""Schedule-free optimizers against PyPI ``schedulefree`` 1.4.1 (float64, to ~1e-10).

Every trajectory runs 20 steps of ``L(p, t) = sum(a p^2 / 2 + b_t p)`` on two parameters
(gradients taken at the current params on both sides, so a wrong ``y`` shows at once), with
``.eval()`` / ``.train()`` toggles in the middle where the class has them.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import schedulefree
import torch

import optx

STEPS = 20
TOGGLES = (6, 13)  # after these steps: eval, compare, train
TOL = 1e-10
_rng = np.random.default_rng(0)
INIT = [_rng.standard_normal((3, 2)), _rng.standard_normal(4)]
A = [0.5 + _rng.random(w.shape) for w in INIT]
B = [[_rng.standard_normal(w.shape) for w in INIT] for _ in range(STEPS)]


def np_grads(params, t):
    return [a * np.asarray(p) + b for a, p, b in zip(A, params, B[t])]


def jax_loss(params, b):
    return sum(jnp.sum(0.5 * a * p**2 + bb * p) for a, p, bb in zip(A, params, b))


def rel(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.max(np.abs(x - y) / (np.abs(y) + 1e-12)))


def err(xs, ys):
    assert len(xs) == len(ys)
    return max(rel(x, y) for x, y in zip(xs, ys))


def torch_params():
    return [torch.tensor(w, requires_grad=True) for w in INIT]


def values(ps):
    return [p.detach().numpy().copy() for p in ps]


def numpy_sd(sd):
    """A torch state_dict with tensors as numpy arrays (how optx loads torch's)."""
    return jax.tree_util.tree_map(
        lambda x: x.detach().numpy().copy() if isinstance(x, torch.Tensor) else x,
        copy.deepcopy(sd))


def compare_state_dicts(ours, ref):
    # schedulefree's train()/eval() read ``self.state[p]`` for every parameter, which leaves
    # an empty entry for a parameter without state (torch's state is a defaultdict)
    ref_state = {i: e for i, e in ref["state"].items() if e}
    assert set(ours["state"]) == set(ref_state)
    e = 0.0
    for i, entry in ref_state.items():
        assert set(ours["state"][i]) == set(entry), (ours["state"][i].keys(), entry.keys())
        e = max(e, max(rel(ours["state"][i][k], v) for k, v in entry.items()))
    for go, gr in zip(ours["param_groups"], ref["param_groups"]):
        assert set(go) == set(gr), (sorted(go), sorted(gr))
        for k, v in gr.items():
            if isinstance(v, float):
                assert go[k] == pytest.approx(v, rel=1e-12), k
            else:
                assert go[k] == v or tuple(go[k]) == tuple(v), k
    return e


# ------------------------------------------------------------------ the train/eval classes
TRAIN_EVAL = [
    ("SGDScheduleFree", dict(lr=0.1)),
    ("SGDScheduleFree", dict(lr=0.1, momentum=0.8, weight_decay=0.1)),
    ("SGDScheduleFree", dict(lr=0.1, warmup_steps=5, r=1.0, weight_lr_power=1.0)),
    ("AdamWScheduleFree", dict(lr=0.01)),
    ("AdamWScheduleFree", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("AdamWScheduleFree", dict(lr=0.01, warmup_steps=5, r=0.5, weight_lr_power=0.0)),
    ("RAdamScheduleFree", dict(lr=0.01, betas=(0.9, 0.9))),
    ("RAdamScheduleFree", dict(lr=0.01, betas=(0.9, 0.9), silent_sgd_phase=False,
                               weight_decay=0.1, r=1.0)),
]


def _id(case):
    name, kw = case
    return name + "".join(f"-{k}{v}" for k, v in kw.items())


def run_torch(name, kw, sd_at=None):
    ps = torch_params()
    opt = getattr(schedulefree, name)(ps, **kw)
    opt.train()
    seen = []
    for t in range(STEPS):
        for p, g in zip(ps, np_grads(values(ps), t)):
            p.grad = torch.tensor(g)
        opt.step()
        if t in TOGGLES:
            opt.eval()
            seen.append(values(ps))
            opt.train()
    seen.append(values(ps))
    opt.eval()
    seen.append(values(ps))
    return seen, opt


def run_optx(name, kw):
    opt = getattr(optx.optim, name)([jnp.asarray(w) for w in INIT], **kw)
    opt.train()
    seen = []
    for t in range(STEPS):
        opt.step([jnp.asarray(g) for g in np_grads(opt.params, t)])
        if t in TOGGLES:
            opt.eval()
            seen.append(list(opt.params))
            opt.train()
    seen.append(list(opt.params))
    opt.eval()
    seen.append(list(opt.params))
    return seen, opt


@pytest.mark.parametrize("case", TRAIN_EVAL, ids=_id)
def test_adapter_matches_schedulefree_across_train_eval(case):
    name, kw = case
    ref, topt = run_torch(name, kw)
    ours, opt = run_optx(name, kw)
    e = max(err(o, r) for o, r in zip(ours, ref))
    assert e < TOL
    # state_dict: schedulefree's layout and values (eval mode, as it says to save)
    assert compare_state_dicts(opt.state_dict(), numpy_sd(topt.state_dict())) < TOL


FUNCTIONAL = {
    "SGDScheduleFree": optx.sgd_schedule_free,
    "AdamWScheduleFree": optx.adamw_schedule_free,
    "RAdamScheduleFree": optx.radam_schedule_free,
}


@pytest.mark.parametrize("case", TRAIN_EVAL[::2], ids=_id)
def test_functional_matches_schedulefree(case):
    name, kw = case
    ref, _ = run_torch(name, kw)
    tx = FUNCTIONAL[name](**kw)
    params = [jnp.asarray(w) for w in INIT]
    state = tx.init(params)
    update = jax.jit(tx.update)
    for t in range(STEPS):
        updates, state = update([jnp.asarray(g) for g in np_grads(params, t)], state, params)
        params = optx.apply_updates(params, updates)
    assert err(params, ref[-2]) < TOL
    assert err(optx.schedule_free_eval_params(state, params), ref[-1]) < TOL


def test_a_parameter_without_gradient_is_skipped_as_schedulefree_skips_it():
    """``None`` gradients (torch's ``p.grad is None``) for the second parameter during the
    first steps, in one group: the group's k advances, that parameter stays."""
    ps = torch_params()
    topt = schedulefree.AdamWScheduleFree(ps, lr=0.05, betas=(0.9, 0.9))
    opt = optx.optim.AdamWScheduleFree([jnp.asarray(w) for w in INIT], lr=0.05,
                                       betas=(0.9, 0.9))
    topt.train()
    opt.train()
    for t in range(8):
        skip = t < 4
        for i, (p, g) in enumerate(zip(ps, np_grads(values(ps), t))):
            p.grad = None if (skip and i == 1) else torch.tensor(g)
        topt.step()
        grads = [jnp.asarray(g) for g in np_grads(opt.params, t)]
        opt.step([grads[0], None] if skip else grads)
        if t == 2:  # the skipped parameter has no state yet, in both
            sd = opt.state_dict()
            assert set(sd["state"]) == {0}
            assert compare_state_dicts(sd, numpy_sd(topt.state_dict())) < TOL
    assert err(opt.params, values(ps)) < TOL
    topt.eval()
    opt.eval()
    assert err(opt.params, values(ps)) < TOL


def test_step_in_eval_mode_raises_as_schedulefree_and_changes_nothing():
    ps = torch_params()
    topt = schedulefree.SGDScheduleFree(ps, lr=0.1)
    with pytest.raises(Exception) as ref:
        topt.step()
    for name in ("SGDScheduleFree", "AdamWScheduleFree", "RAdamScheduleFree"):
        opt = getattr(optx.optim, name)([jnp.asarray(w) for w in INIT], lr=0.1)
        before = list(opt.params)
        with pytest.raises(Exception, match="not in train mode") as ours:
            opt.step([jnp.ones_like(p) for p in opt.params])
        assert str(ours.value) == str(ref.value) and type(ours.value) is type(ref.value)
        assert all(a is b for a, b in zip(before, opt.params))
        assert opt.param_groups[0]["k"] == 0 and opt.state_dict()["state"] == {}
    wrapped = optx.optim.ScheduleFreeWrapper(optx.optim.SGD([jnp.asarray(INIT[0])], lr=0.1))
    with pytest.raises(Exception, match="not in train mode"):
        wrapped.step([jnp.ones((3, 2))])


def test_schedulefree_defaults_and_signatures():
    import inspect

    for name in ("SGDScheduleFree", "AdamWScheduleFree", "RAdamScheduleFree",
                 "SGDScheduleFreeClosure", "AdamWScheduleFreeClosure",
                 "RAdamScheduleFreeClosure"):
        ref = inspect.signature(getattr(schedulefree, name))
        ours = inspect.signature(getattr(optx.optim, name))
        assert list(ours.parameters) == list(ref.parameters), name
        for k, p in ref.parameters.items():
            if k != "params":
                assert ours.parameters[k].default == p.default, (name, k)
        opt = getattr(optx.optim, name)([jnp.asarray(INIT[0])])
        topt = getattr(schedulefree, name)([torch.tensor(INIT[0])])
        assert set(opt.param_groups[0]) == set(topt.param_groups[0]), name
        for k, v in topt.param_groups[0].items():
            if k != "params":
                assert opt.param_groups[0][k] == v, (name, k)
    for name in ("sgd_schedule_free", "adamw_schedule_free", "radam_schedule_free"):
        cls = {"sgd": "SGDScheduleFree", "adamw": "AdamWScheduleFree",
               "radam": "RAdamScheduleFree"}[name.split("_")[0]]
        ref = inspect.signature(getattr(schedulefree, cls))
        ours = inspect.signature(getattr(optx, name))
        assert list(ours.parameters) == list(ref.parameters)[1:]
    ref_w = inspect.signature(schedulefree.ScheduleFreeWrapper)
    ours_w = inspect.signature(optx.optim.ScheduleFreeWrapper)
    assert [(k, p.default) for k, p in ours_w.parameters.items()] == [
        (k, p.default) for k, p in ref_w.parameters.items()]


@pytest.mark.parametrize("bad,match", [
    (dict(lr=-0.1), "Invalid learning rate: -0.1"),
    (dict(weight_decay=-1.0), "Invalid weight_decay value: -1.0"),
    (dict(momentum=1.0), "Momentum must be between 0 and 1 exclusive: 1.0"),
])
def test_invalid_hyperparams_raise_schedulefree_text(bad, match):
    with pytest.raises(ValueError) as ref:
        schedulefree.SGDScheduleFree(torch_params(), **bad)
    assert str(ref.value) == match
    with pytest.raises(ValueError, match=match):
        optx.optim.SGDScheduleFree([jnp.asarray(INIT[0])], **bad)
    with pytest.raises(ValueError, match=match):
        optx.sgd_schedule_free(**bad)


# ------------------------------------------------------------------ closure classes
CLOSURE = [
    ("SGDScheduleFreeClosure", dict(lr=0.1, weight_decay=0.1, warmup_steps=3)),
    ("AdamWScheduleFreeClosure", dict(lr=0.01, weight_decay=0.1, r=1.0)),
    ("RAdamScheduleFreeClosure", dict(lr=0.01, betas=(0.9, 0.9), weight_lr_power=1.0)),
]


@pytest.mark.parametrize("case", CLOSURE, ids=_id)
def test_closure_classes_match_schedulefree(case):
    name, kw = case
    ps = torch_params()
    topt = getattr(schedulefree, name)(ps, **kw)
    losses_ref = []
    for t in range(STEPS):
        def closure(t=t):
            topt.zero_grad()
            loss = sum((0.5 * torch.tensor(a) * p**2 + torch.tensor(b) * p).sum()
                       for a, p, b in zip(A, ps, B[t]))
            loss.backward()
            return loss
        losses_ref.append(float(topt.step(closure).detach()))
    opt = getattr(optx.optim, name)([jnp.asarray(w) for w in INIT], **kw)
    losses = []
    for t in range(STEPS):
        b = [jnp.asarray(x) for x in B[t]]
        losses.append(float(opt.step(lambda p, b=b: jax_loss(p, b))))
    assert err(opt.params, values(ps)) < TOL
    assert rel(losses, losses_ref) < TOL
    assert compare_state_dicts(opt.state_dict(), numpy_sd(topt.state_dict())) < TOL


# ------------------------------------------------------------------ wrapper
# schedulefree's wrapper puts ``z`` in the base's state before the base's first step, so a torch
# optimizer that creates its state when ``len(state) == 0`` (Adam, RMSprop, ...) fails with a
# KeyError there; SGD and Adagrad (state created in __init__) work.
@pytest.mark.parametrize("base,kw", [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.5)),
    ("Adagrad", dict(lr=0.05)),
], ids=["sgd", "sgd-momentum", "adagrad"])
def test_wrapper_matches_schedulefree(base, kw):
    wkw = dict(momentum=0.8, weight_decay_at_y=0.1, r=1.0, weight_lr_power=1.0)
    ps = torch_params()
    topt = schedulefree.ScheduleFreeWrapper(getattr(torch.optim, base)(ps, **kw), **wkw)
    opt = optx.optim.ScheduleFreeWrapper(
        getattr(optx.optim, base)([jnp.asarray(w) for w in INIT], **kw), **wkw)
    e = 0.0
    for t in range(STEPS):
        topt.train()
        opt.train()
        for p, g in zip(ps, np_grads(values(ps), t)):
            p.grad = torch.tensor(g)
        topt.step()
        opt.step([jnp.asarray(g) for g in np_grads(opt.params, t)])
        e = max(e, err(opt.params, values(ps)))
        if t in TOGGLES:
            topt.eval()
            opt.eval()
            e = max(e, err(opt.params, values(ps)))
    assert e < TOL
    assert compare_state_dicts(opt.state_dict(), numpy_sd(topt.state_dict())) < TOL


# ------------------------------------------------------------------ state_dict
@pytest.mark.parametrize("name", ["SGDScheduleFree", "AdamWScheduleFree", "RAdamScheduleFree"])
def test_schedulefree_state_dict_loads_and_continues(name):
    kw = dict(lr=0.05, betas=(0.9, 0.9)) if name != "SGDScheduleFree" else dict(lr=0.1)
    ps = torch_params()
    topt = getattr(schedulefree, name)(ps, **kw)
    topt.train()
    half = STEPS // 2
    for t in range(STEPS):
        if t == half:  # schedulefree's advice: save in eval mode
            topt.eval()
            sd = numpy_sd(topt.state_dict())
            saved = values(ps)
            opt = getattr(optx.optim, name)([jnp.asarray(w) for w in saved], **kw)
            opt.load_state_dict(sd)
            opt.train()
            topt.train()
        for p, g in zip(ps, np_grads(values(ps), t)):
            p.grad = torch.tensor(g)
        topt.step()
        if t >= half:
            opt.step([jnp.asarray(g) for g in np_grads(opt.params, t)])
    assert err(opt.params, values(ps)) < TOL
    # and back: optx's state_dict into schedulefree, which continues the same way
    opt.eval()
    topt.eval()
    back = getattr(schedulefree, name)([torch.tensor(np.asarray(p)) for p in opt.params], **kw)
    back.load_state_dict(jax.tree_util.tree_map(
        lambda x: torch.tensor(np.asarray(x)) if isinstance(x, (np.ndarray, jax.Array)) else x,
        opt.state_dict()))
    back_params = back.param_groups[0]["params"]
    back.train()
    topt.train()
    for p, q, g in zip(back_params, ps, np_grads(values(ps), 0)):
        p.grad = torch.tensor(g)
        q.grad = torch.tensor(g)
    back.step()
    topt.step()
    assert err(values(back_params), values(ps)) < TOL


def test_another_class_state_dict_is_refused_and_nothing_changes():
    names = ["SGDScheduleFree", "AdamWScheduleFree", "RAdamScheduleFree",
             "SGDScheduleFreeClosure", "AdamWScheduleFreeClosure"]
    dicts = {}
    for name in names:
        ps = torch_params()
        topt = getattr(schedulefree, name)(ps)
        if hasattr(topt, "train"):
            topt.train()
        for p in ps:
            p.grad = torch.ones_like(p)
        topt.step(lambda: None) if "Closure" in name else topt.step()
        dicts[name] = numpy_sd(topt.state_dict())
    dicts["SGD"] = numpy_sd(torch.optim.SGD(torch_params(), lr=0.1).state_dict())
    for name in names:
        opt = getattr(optx.optim, name)([jnp.asarray(w) for w in INIT])
        before = opt.state_dict()
        for other, sd in dicts.items():
            if other == name:
                continue
            with pytest.raises(ValueError, match="param group 0"):
                opt.load_state_dict(sd)
            after = opt.state_dict()
            assert after["state"] == before["state"] and after["param_groups"] == before[
                "param_groups"], (name, other)
        opt.load_state_dict(dicts[name])  # its own loads


# ------------------------------------------------------------------ composition
def test_functional_composes_with_chain_clipping_and_accumulation():
    kw = dict(lr=0.05, betas=(0.9, 0.99), warmup_steps=4)
    ps = torch_params()
    topt = schedulefree.AdamWScheduleFree(ps, **kw)
    topt.train()
    # every 2 micro-batches: mean gradient, clipped to norm 1, one schedulefree step
    tx = optx.accumulate_gradients(
        optx.chain(optx.clip_grad_norm(1.0), optx.adamw_schedule_free(**kw)), 2)
    params = [jnp.asarray(w) for w in INIT]
    state = tx.init(params)
    update = jax.jit(tx.update)
    for t in range(0, STEPS, 2):
        acc = None
        for m in range(2):
            g = np_grads(values(ps), t + m)
            acc = g if acc is None else [x + y for x, y in zip(acc, g)]
            updates, state = update([jnp.asarray(x) for x in np_grads(params, t + m)],
                                    state, params)
            params = optx.apply_updates(params, updates)
        for p, g in zip(ps, acc):
            p.grad = torch.tensor(g / 2)
        torch.nn.utils.clip_grad_norm_(ps, 1.0)
        topt.step()
    assert err(params, values(ps)) < TOL
    topt.eval()
    assert err(optx.schedule_free_eval_params(state, params), values(ps)) < TOL


def test_functional_inside_optax_multisteps():
    """optax.MultiSteps around optx's schedule-free (optax#1038: it crashed around optax's
    contrib version). Its accumulator is float32 unless told otherwise: float64 here."""
    import optax

    kw = dict(lr=0.05, betas=(0.9, 0.99))
    ps = torch_params()
    topt = schedulefree.AdamWScheduleFree(ps, **kw)
    topt.train()
    tx = optax.MultiSteps(optx.adamw_schedule_free(**kw), 2, accumulator_dtype=jnp.float64)
    params = [jnp.asarray(w) for w in INIT]
    state = tx.init(params)
    update = jax.jit(tx.update)
    for t in range(0, 10, 2):
        for p, g0, g1 in zip(ps, np_grads(values(ps), t), np_grads(values(ps), t + 1)):
            p.grad = torch.tensor((g0 + g1) / 2)
        topt.step()
        for m in range(2):
            updates, state = update([jnp.asarray(x) for x in np_grads(params, t + m)], state,
                                    params)
            params = optax.apply_updates(params, updates)
    assert err(params, values(ps)) < TOL
    topt.eval()
    assert err(optx.schedule_free_eval_params(state, params), values(ps)) < TOL


def test_adapter_with_an_lr_scheduler_on_its_param_groups():
    ps = torch_params()
    topt = schedulefree.SGDScheduleFree(ps, lr=0.1)
    tsched = torch.optim.lr_scheduler.LambdaLR(topt, lambda e: 1.0 / (1 + e))
    opt = optx.optim.SGDScheduleFree([jnp.asarray(w) for w in INIT], lr=0.1)
    sched = optx.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 / (1 + e))
    topt.train()
    opt.train()
    for t in range(STEPS):
        for p, g in zip(ps, np_grads(values(ps), t)):
            p.grad = torch.tensor(g)
        topt.step()
        tsched.step()
        opt.step([jnp.asarray(g) for g in np_grads(opt.params, t)])
        sched.step()
    assert err(opt.params, values(ps)) < TOL
    g, tg = opt.param_groups[0], topt.param_groups[0]
    for k in ("k", "lr", "lr_max", "weight_sum", "scheduled_lr"):
        assert g[k] == pytest.approx(tg[k], rel=1e-12), k


def test_an_empty_param_group_after_the_first_is_accepted_as_torch():
    """``[{'params': [w]}, {'params': []}]``: torch refuses an empty params list in ``__init__``
    only (schedulefree's test_foreach builds such a group)."""
    ps = torch_params()
    topt = torch.optim.SGD([{"params": ps}, {"params": []}], lr=0.1, momentum=0.9)
    opt = optx.optim.SGD([{"params": [jnp.asarray(w) for w in INIT]}, {"params": []}], lr=0.1,
                         momentum=0.9)
    for t in range(3):
        for p, g in zip(ps, np_grads(values(ps), t)):
            p.grad = torch.tensor(g)
        topt.step()
        opt.step([[jnp.asarray(g) for g in np_grads(opt.params[0], t)], []])
    assert err(opt.params[0], values(ps)) < TOL and opt.params[1] == []
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]
    opt.load_state_dict(numpy_sd(tsd))


def test_copies_step_on_as_the_original():
    import copy
    import pickle

    opt = optx.optim.AdamWScheduleFree([jnp.asarray(w) for w in INIT], lr=0.01)
    opt.train()
    for t in range(3):
        opt.step([jnp.asarray(g) for g in np_grads(opt.params, t)])
    copies = [copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))]
    for o in [opt, *copies]:
        o.step([jnp.asarray(g) for g in np_grads(o.params, 3)])
        o.eval()
    for c in copies:
        assert err(c.params, opt.params) == 0.0
        assert c.param_groups[0]["k"] == 4 and c.param_groups[0]["train_mode"] is False


def test_adapter_with_a_schedule_given_to_the_constructor():
    """A schedule ``count -> lr`` (optx's extension): the group keys follow it, and the
    trajectory is schedulefree's with that lr set on its group before each step."""
    def lr(c):
        return 0.1 / (1 + c)

    ps = torch_params()
    topt = schedulefree.SGDScheduleFree(ps, lr=lr(0))
    opt = optx.optim.SGDScheduleFree([jnp.asarray(w) for w in INIT], lr=lr)
    topt.train()
    opt.train()
    for t in range(6):
        topt.param_groups[0]["lr"] = lr(t)
        for p, g in zip(ps, np_grads(values(ps), t)):
            p.grad = torch.tensor(g)
        topt.step()
        opt.step([jnp.asarray(g) for g in np_grads(opt.params, t)])
    assert err(opt.params, values(ps)) < TOL
    for k in ("k", "lr_max", "weight_sum", "scheduled_lr"):
        assert opt.param_groups[0][k] == pytest.approx(topt.param_groups[0][k], rel=1e-12), k


def test_wrapper_step_with_a_closure():
    ps = torch_params()
    topt = schedulefree.ScheduleFreeWrapper(torch.optim.SGD(ps, lr=0.1), momentum=0.9)
    opt = optx.optim.ScheduleFreeWrapper(
        optx.optim.SGD([jnp.asarray(w) for w in INIT], lr=0.1), momentum=0.9)
    topt.train()
    opt.train()
    for t in range(5):
        def closure(t=t):
            topt.zero_grad()
            loss = sum((0.5 * torch.tensor(a) * p**2 + torch.tensor(b) * p).sum()
                       for a, p, b in zip(A, ps, B[t]))
            loss.backward()
            return loss
        ref = float(topt.step(closure).detach())
        b = [jnp.asarray(x) for x in B[t]]
        assert rel(opt.step(lambda p, b=b: jax_loss(p, b)), ref) < TOL
    assert err(opt.params, values(ps)) < TOL


def test_the_porting_page_example_runs_as_written():
    import re
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs" / "porting.md").read_text()
    section = page[page.index("### Schedule-free optimizers"):]
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    exec(compile(block, "docs/porting.md", "exec"), {})
