"""The way back to torch and the one-file checkpoint (issue 37): ``optx.optim.to_torch_state_dict``
loads into the real ``torch.optim`` class, which then continues optx's trajectory; params and
optimizer state saved together with ``optx.optim.save`` resume in a fresh process; and
``optx.optim.accumulate`` / ``all_finite`` behave as torch's ``.grad`` and ``GradScaler``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity import grad_fn, make_params, max_rel_error

import optx

torch.set_default_dtype(torch.float64)

CASES = [
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("NAdam", dict(lr=0.01)),  # mu_product, a private scalar
    ("ASGD", dict(lr=0.01, t0=1.0)),  # eta and mu: 0-d tensors in torch
    ("Rprop", dict(lr=0.01)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
]
SHAPES = ((3, 4), (5,))


def _steps(opt_step, params, k0, n):
    """``n`` steps of ``opt_step(grads)`` with parity's gradient at ``params()``."""
    for k in range(k0, k0 + n):
        opt_step(k, grad_fn([np.asarray(p) for p in params()], k))


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_to_torch_state_dict_continues_in_torch(name, kwargs):
    p0 = make_params(1, SHAPES)
    opt = getattr(optx.optim, name)([jnp.asarray(p) for p in p0], **kwargs)
    _steps(lambda k, g: opt.step([jnp.asarray(x) for x in g]), lambda: opt.params, 0, 3)

    ps = [torch.tensor(np.asarray(p), requires_grad=True) for p in opt.params]
    topt = getattr(torch.optim, name)(ps, **kwargs)
    topt.load_state_dict(optx.optim.to_torch_state_dict(opt.state_dict()))

    def torch_step(k, g):
        for p, x in zip(ps, g):
            p.grad = torch.from_numpy(x.copy())
        topt.step()

    _steps(torch_step, lambda: [p.detach().numpy() for p in ps], 3, 4)
    _steps(lambda k, g: opt.step([jnp.asarray(x) for x in g]), lambda: opt.params, 3, 4)
    err = max_rel_error([[np.asarray(p) for p in opt.params]],
                        [[p.detach().numpy() for p in ps]])
    assert err <= 1e-10, err


def test_to_torch_state_dict_lbfgs_and_loaded_file(tmp_path):
    def f_jax(ps):
        return jnp.sum((ps[0] - 1.0) ** 2) + jnp.sum(ps[1] ** 4)

    p0 = make_params(2, SHAPES)
    opt = optx.optim.LBFGS([jnp.asarray(p) for p in p0], max_iter=4, history_size=3)
    for _ in range(2):
        opt.step(f_jax)
    # through a file: optx.optim.load's dict converts the same way
    optx.optim.save(opt.state_dict(), tmp_path / "lbfgs.npz")
    sd = optx.optim.to_torch_state_dict(optx.optim.load(tmp_path / "lbfgs.npz"))
    assert all(isinstance(t, torch.Tensor) for t in sd["state"][0]["old_dirs"])
    ps = [torch.tensor(np.asarray(p), requires_grad=True) for p in opt.params]
    topt = torch.optim.LBFGS(ps, max_iter=4, history_size=3)
    topt.load_state_dict(sd)

    def closure():
        topt.zero_grad()
        loss = torch.sum((ps[0] - 1.0) ** 2) + torch.sum(ps[1] ** 4)
        loss.backward()
        return loss

    for _ in range(2):
        topt.step(closure)
        opt.step(f_jax)
    err = max_rel_error([[np.asarray(p) for p in opt.params]], [[p.detach().numpy() for p in ps]])
    assert err <= 1e-8, err  # tests/test_lbfgs.py's tolerance


def test_to_torch_state_dict_dtypes_and_input_unchanged():
    opt = optx.optim.Muon([jnp.ones((2, 3), jnp.bfloat16)], lr=0.1)
    opt.step([jnp.ones((2, 3), jnp.bfloat16)])
    sd = opt.state_dict()
    out = optx.optim.to_torch_state_dict(sd)
    assert out["state"][0]["momentum_buffer"].dtype == torch.bfloat16
    assert isinstance(sd["state"][0]["momentum_buffer"], np.ndarray)  # input as it was
    assert out["param_groups"] == sd["param_groups"]
    torch.optim.Muon([torch.ones(2, 3, dtype=torch.bfloat16)], lr=0.1).load_state_dict(out)


# ------------------------------------------------------------- params + state, one file
RESUME = textwrap.dedent("""
    import sys, json
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np, optx
    ck = optx.optim.load(sys.argv[1])
    opt = optx.optim.AdamW(ck["params"], lr=0.01, weight_decay=0.1)
    opt.load_state_dict(ck["optimizer"])
    sched = optx.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    sched.load_state_dict(ck["scheduler"])
    for k in range(3, 6):
        g = {n: jnp.cos(0.7 * k + p) for n, p in opt.params.items()}
        opt.step(g)
        sched.step()
    print(json.dumps({n: np.asarray(p).tolist() for n, p in opt.params.items()}))
""")


def _train(opt, sched, ks):
    for k in ks:
        opt.step({n: jnp.cos(0.7 * k + p) for n, p in opt.params.items()})
        sched.step()


def test_params_and_state_in_one_file_resume_in_fresh_process(tmp_path):
    params = {"w": jnp.asarray(make_params(3, [(3, 2)])[0]), "b": jnp.zeros(2)}

    def fresh():
        opt = optx.optim.AdamW(params, lr=0.01, weight_decay=0.1)
        return opt, optx.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

    opt, sched = fresh()
    _train(opt, sched, range(3))
    path = tmp_path / "ckpt.npz"
    optx.optim.save({"params": opt.params, "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict()}, path)
    _train(opt, sched, range(3, 6))  # the uninterrupted run

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), *sys.path])}
    out = subprocess.run([sys.executable, "-c", RESUME, str(path)], env=env, check=True,
                         capture_output=True, text=True, timeout=300)
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    for n, p in opt.params.items():
        np.testing.assert_array_equal(np.asarray(resumed[n]), np.asarray(p))


# ---------------------------------------------------------------- accumulate, all_finite
def test_accumulate_follows_torch_grad():
    """torch: two backward passes, the second not reaching ``b``, the first not ``c``."""
    w, b, c = (torch.ones(2, requires_grad=True) for _ in range(3))
    (w * 2 + b * 3).sum().backward()
    (w * 5 + c * 7).sum().backward()
    d = torch.ones(2, requires_grad=True)  # never reached: stays None
    theirs = {"w": w.grad, "b": b.grad, "c": c.grad, "d": d.grad}

    g1 = {"w": jnp.full(2, 2.0), "b": jnp.full(2, 3.0), "c": None, "d": None}
    g2 = {"w": jnp.full(2, 5.0), "b": None, "c": jnp.full(2, 7.0), "d": None}
    ours = optx.optim.accumulate(optx.optim.accumulate(None, g1), g2)
    assert ours["d"] is None and theirs["d"] is None
    for k in "wbc":
        np.testing.assert_array_equal(np.asarray(ours[k]), theirs[k].numpy())
    assert optx.optim.accumulate(ours, None) is ours
    with pytest.raises(ValueError, match="different structures"):
        optx.optim.accumulate({"w": jnp.ones(2)}, [jnp.ones(2)])
    # the accumulated gradients step as torch's .grad (a None leaf skips its parameter)
    opt = optx.optim.SGD({"w": jnp.ones(2), "b": jnp.ones(2), "c": jnp.ones(2),
                          "d": jnp.ones(2)}, lr=0.1)
    opt.step(ours)
    topt = torch.optim.SGD([w, b, c, d], lr=0.1)
    topt.step()
    for k, t in zip("wbcd", (w, b, c, d)):
        np.testing.assert_array_equal(np.asarray(opt.params[k]), t.detach().numpy())


def test_all_finite_skips_steps_as_grad_scaler():
    assert optx.optim.all_finite(None) and optx.optim.all_finite({"a": None})
    assert optx.optim.all_finite([jnp.ones(2), None, jnp.arange(3)])
    for bad in (jnp.inf, -jnp.inf, jnp.nan):
        assert not optx.optim.all_finite([jnp.ones(2), jnp.array([1.0, bad])])
    # the skipped step leaves params and state as they were
    opt = optx.optim.Adam([jnp.ones(2)], lr=0.1)
    before = jax.tree_util.tree_map(np.asarray, opt.state_dict())
    grads = [jnp.array([1.0, jnp.nan])]
    if optx.optim.all_finite(grads):
        opt.step(grads)
    assert before["state"] == {} and opt.state_dict()["state"] == {}
    np.testing.assert_array_equal(np.asarray(opt.params[0]), np.ones(2))
