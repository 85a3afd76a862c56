"""schedulefree 1.4.1's own ``test_schedulefree.py``, ported and run on both libraries.

Each case runs as schedulefree wrote it (its assertions, ``torch.allclose`` between its
classes) on schedulefree's classes, then the same with optx's classes, then checks optx's
trajectory against schedulefree's to 1e-10 (float64 instead of float32 on CUDA; 20 steps where
it runs 100). Not ported: ``test_compile``, whose ``torch.compile`` decorators are commented
out upstream (it compares two identical optimizers); its optx analogue below compares the
jitted functional update with the adapter. The ``*Reference`` classes exist in schedulefree
only: their cases compare optx's classes with them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import schedulefree
import torch

import optx

TOL = 1e-10


def _rand(shape, seed):
    return np.random.default_rng(seed).random(shape)


class TorchSide:
    """One schedulefree optimizer over torch tensors, driven by given gradients."""

    def __init__(self, make, inits):
        self.ps = [torch.tensor(w, requires_grad=True) for w in inits]
        self.opt = make(self.ps)

    def step(self, grads):
        for p, g in zip(self.ps, grads):
            p.grad = None if g is None else torch.tensor(g)
        if "Closure" in type(self.opt).__name__:
            self.opt.step(closure=lambda: None)
        else:
            self.opt.step()

    def values(self):
        return [p.detach().numpy().copy() for p in self.ps]

    def z(self):
        return [self.opt.state[p]["z"].numpy().copy() for p in self.ps if "z" in self.opt.state[p]]


class OptxSide:
    """The same with an optx.optim optimizer; a closure class's closure has the gradient."""

    def __init__(self, make, inits):
        self.opt = make([jnp.asarray(w) for w in inits])

    def step(self, grads):
        opt = self.opt
        if "Closure" in type(opt).__name__:
            gs = [jnp.asarray(g) for g in grads]
            opt.step(lambda ps: sum(jnp.sum(g * p) for g, p in zip(gs, ps)))
        else:
            grads = [None if g is None else jnp.asarray(g) for g in grads]
            if isinstance(opt.params, list) and opt.params and isinstance(opt.params[0], list):
                grads = _per_group(opt, grads)
            opt.step(grads)

    def values(self):
        params = self.opt.params
        if params and isinstance(params[0], list):
            params = [p for group in params for p in group]
        return [np.asarray(p) for p in params]

    def z(self):
        sd = self.opt.state_dict()
        return [np.asarray(e["z"]) for _, e in sorted(sd["state"].items())]


def _per_group(opt, flat):
    out, i = [], 0
    for group in opt.param_groups:
        n = len(group["params"])
        out.append(flat[i:i + n])
        i += n
    return out


def rel(xs, ys):
    assert len(xs) == len(ys)
    return max((float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / (np.abs(y) + 1e-12)))
                for x, y in zip(xs, ys)), default=0.0)


def allclose(xs, ys):
    # schedulefree's own check, torch.allclose(x, y, rtol=1e-05, atol=1e-06)
    for x, y in zip(xs, ys):
        assert np.allclose(x, y, rtol=1e-5, atol=1e-6)


def _pair(lib):
    """The ``(train/eval, other)`` classes of each library."""
    return schedulefree if lib == "torch" else optx.optim


def _side(lib):
    return TorchSide if lib == "torch" else OptxSide


def _compare_versions(lib, make1, make2, init, steps=20):
    """schedulefree's ``compare_schedulefree_versions``: a record of both sides' params."""
    side = _side(lib)
    a, b = side(make1, [init]), side(make2, [init])
    seen = []
    for t in range(steps):
        a.opt.train()
        b.opt.train()
        g = [_rand(init.shape, t)]
        a.step(g)
        b.step(g)
        allclose(a.values(), b.values())
        seen.append(a.values() + b.values())
        a.opt.eval()
        b.opt.eval()
        allclose(a.values(), b.values())
        seen.append(a.values() + b.values())
    return seen


def test_schedulefree_wrapper():
    init = np.random.default_rng(1).standard_normal((3, 2))
    runs = {}
    for lib in ("torch", "optx"):
        m = _pair(lib)
        base = torch.optim.SGD if lib == "torch" else optx.optim.SGD
        runs[lib] = _compare_versions(
            lib,
            lambda ps, m=m: m.SGDScheduleFree(ps, lr=0.3, weight_decay=0.1, momentum=0.9,
                                              foreach=False),
            lambda ps, m=m, base=base: m.ScheduleFreeWrapper(
                base(ps, lr=0.3, momentum=0.0), momentum=0.9, weight_decay_at_y=0.1),
            init)
    assert max(rel(o, r) for o, r in zip(runs["optx"], runs["torch"])) < TOL


def test_schedulefree_wrapper_reference():
    init = np.random.default_rng(2).standard_normal((3, 2))
    ref = _compare_versions(
        "torch",
        lambda ps: schedulefree.SGDScheduleFree(ps, lr=0.3, weight_decay=0.1, momentum=0.9,
                                                foreach=False),
        lambda ps: schedulefree.ScheduleFreeWrapperReference(
            torch.optim.SGD(ps, lr=0.3, momentum=0.0), momentum=0.9, weight_decay_at_y=0.1),
        init)
    ours = _compare_versions(
        "optx",
        lambda ps: optx.optim.SGDScheduleFree(ps, lr=0.3, weight_decay=0.1, momentum=0.9),
        lambda ps: optx.optim.ScheduleFreeWrapper(
            optx.optim.SGD(ps, lr=0.3, momentum=0.0), momentum=0.9, weight_decay_at_y=0.1),
        init)
    assert max(rel(o, r) for o, r in zip(ours, ref)) < TOL


@pytest.mark.parametrize("name,kw,steps", [
    ("SGD", dict(lr=0.3, warmup_steps=5, weight_decay=0.5), 10),
    ("AdamW", dict(lr=0.3, warmup_steps=5, weight_decay=0.5), 10),
    ("RAdam", dict(lr=0.3, weight_decay=0.5), 20),
], ids=["sgd", "adam", "radam"])
def test_schedulefree_closure_train_eval_and_reference_agree(name, kw, steps):
    """schedulefree's test_schedulefree_sgd/_adam/_radam: the closure class, the train/eval
    class and (SGD, AdamW) the reference class agree on ``x`` and ``z`` after ``.eval()``, and
    on ``y`` after ``.train()``."""
    init = np.random.default_rng(3).standard_normal((3, 2))
    reference = getattr(schedulefree, f"{name}ScheduleFreeReference", None)
    seen = {}
    for lib in ("torch", "optx"):
        m = _pair(lib)
        side = _side(lib)
        closure = side(lambda ps, m=m: getattr(m, f"{name}ScheduleFreeClosure")(ps, **kw), [init])
        plain = side(lambda ps, m=m: getattr(m, f"{name}ScheduleFree")(ps, **kw), [init])
        ref = (TorchSide(lambda ps: reference(ps, **kw), [init])
               if reference is not None else None)
        record = []
        for t in range(steps):
            plain.opt.train()
            if ref is not None:
                ref.opt.train()
            g = [_rand(init.shape, 100 + t)]
            plain.step(g)
            closure.step(g)
            if ref is not None:
                ref.step(g)
            plain.opt.eval()
            if ref is not None:
                ref.opt.eval()
                allclose(plain.values(), ref.values())
                allclose(plain.z(), ref.z())
            allclose(plain.values(), closure.values())
            allclose(plain.z(), closure.z())
            record.append(plain.values() + plain.z() + closure.values() + closure.z())
            plain.opt.train()
            beta = 0.9
            y_closure = [x + (1 - beta) * (z - x) for x, z in zip(closure.values(), closure.z())]
            allclose(plain.values(), y_closure)
        seen[lib] = record
    assert max(rel(o, r) for o, r in zip(seen["optx"], seen["torch"])) < TOL


def test_foreach():
    """Three groups, one with a parameter that never gets a gradient, one empty; foreach on
    and off agree (and optx with schedulefree)."""
    rng = np.random.default_rng(4)
    inits = [rng.standard_normal((3, 2)), rng.standard_normal((1, 1)), rng.standard_normal((1, 2))]
    seen = {}
    for lib in ("torch", "optx"):
        m = _pair(lib)
        side = _side(lib)

        def make(ps, foreach, m=m):
            return m.AdamWScheduleFree(
                [{"params": ps[:2]}, {"params": ps[2:]}, {"params": []}],
                lr=0.3, warmup_steps=5, weight_decay=0.5, foreach=foreach)

        a = side(lambda ps: make(ps, True), inits)
        b = side(lambda ps: make(ps, False), inits)
        record = []
        for t in range(10):
            a.opt.train()
            b.opt.train()
            g = [_rand((3, 2), 200 + t), _rand((1, 1), 300 + t), None]
            a.step(g)
            b.step(g)
            a.opt.eval()
            b.opt.eval()
            allclose(a.values(), b.values())
            record.append(a.values() + b.values())
        seen[lib] = record
    assert max(rel(o, r) for o, r in zip(seen["optx"], seen["torch"])) < TOL


def test_equiv():
    """The lerp identities schedulefree's fused update rests on, with optx's torch lerp."""
    from optx.torch_ops import lerp

    momentum, ckp1 = 0.9, 0.05
    for lib in ("torch", "optx"):
        if lib == "torch":
            m1, m2, z = torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([2.0])

            def lp(a, b, w):
                return a.lerp(b, w)
        else:
            m1, m2, z = jnp.array([1.0]), jnp.array([1.0]), jnp.array([2.0])

            def lp(a, b, w):
                return lerp(a, b, jnp.asarray(w, a.dtype))
        m1 = lp(m1, z, 1 - 1 / momentum)
        m1 = lp(m1, z, ckp1)
        m1 = lp(m1, z, 1 - momentum)
        m2 = lp(m2, z, ckp1)
        allclose([np.asarray(m1)], [np.asarray(m2)])
        m1 = lp(m1, z, ckp1)
        m1 = lp(m1, z, 1 - momentum)
        m2 = lp(m2, z, 1 - momentum * (1 - ckp1))
        allclose([np.asarray(m1)], [np.asarray(m2)])


def test_compile_analogue():
    """test_compile's optx analogue: the jitted functional update and the adapter agree (and
    with schedulefree), over train/eval toggles."""
    init = np.random.default_rng(5).standard_normal((3, 2))
    kw = dict(lr=0.3, warmup_steps=5, weight_decay=0.5)
    ref = TorchSide(lambda ps: schedulefree.AdamWScheduleFree(ps, **kw), [init])
    ours = OptxSide(lambda ps: optx.optim.AdamWScheduleFree(ps, **kw), [init])
    tx = optx.adamw_schedule_free(**kw)
    params = [jnp.asarray(init)]
    state = tx.init(params)
    update = jax.jit(tx.update)
    for t in range(10):
        ref.opt.train()
        ours.opt.train()
        g = [_rand(init.shape, 400 + t)]
        ref.step(g)
        ours.step(g)
        updates, state = update([jnp.asarray(g[0])], state, params)
        params = optx.apply_updates(params, updates)
        assert rel(ours.values(), ref.values()) < TOL
        assert rel([np.asarray(params[0])], ref.values()) < TOL
        ref.opt.eval()
        ours.opt.eval()
        assert rel(ours.values(), ref.values()) < TOL
        assert rel([np.asarray(optx.schedule_free_eval_params(state, params)[0])],
                   ref.values()) < TOL
