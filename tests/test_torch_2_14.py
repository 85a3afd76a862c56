"""What torch 2.14.1 added to torch.optim, and torch 2.15's new checks (issue 37).

Each behaviour is compared with the real torch when the installed torch has it (``make
test-torch-latest``: torch 2.14.1), and otherwise (``make test``: torch 2.13.0) with a reference
written from 2.14's equations *using torch 2.13's own optimizer*:

- LBFGS ``maximize=True`` on ``f``: 2.14 negates the flat gradient and every loss it reads,
  which is exactly 2.13's LBFGS run on ``-f`` (negation is exact), except that ``step`` returns
  the closure's own loss ``f`` (2.13 on ``-f`` returns ``-f``).
- Muon ``adjust_lr_fn="spectral_unclamped"``: 2.14 scales the lr by ``sqrt(A/B)``; 2.13's
  ``"original"`` scales by ``sqrt(max(1, A/B))``, so for ``A >= B`` they agree and for ``A < B``
  2.13 with the group lr multiplied by ``sqrt(A/B)`` takes the same step, bit for bit, without
  weight decay (torch decays with the group's lr, not the adjusted one).

``test_references_equal_torch_2_14`` checks both references against the real torch 2.14 in the
latest-torch environment, so the 2.13 comparisons rest on a checked reference.

torch 2.15 is not installable here (pip is capped at 2.14.1): its ASGD messages are spelled here
from its source, and the Muon bfloat16 buffer from its equations (``buf.lerp_(grad, 1 -
momentum)`` in bfloat16, no normalization of the buffer).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity import grad_fn, make_params, max_rel_error
from torch_versions import HAS_2_14, HAS_2_15

import optx

torch.set_default_dtype(torch.float64)

LBFGS_RTOL = 1e-8  # tests/test_lbfgs.py's: torch's Python-float line search vs XLA's


# -------------------------------------------------------------------------- LBFGS maximize
P0 = [np.array([0.3, -0.2, 0.5]), np.array([[0.4, -0.7], [0.1, 0.2]])]


def _f_torch(ps):  # concave: maximize it
    return -(torch.sum((ps[0] - 1.0) ** 2) + torch.sum(ps[1] ** 4) + torch.sum(ps[0] ** 4))


def _f_jax(ps):
    return -(jnp.sum((ps[0] - 1.0) ** 2) + jnp.sum(ps[1] ** 4) + jnp.sum(ps[0] ** 4))


def _torch_maximize(kwargs, steps, real):
    """torch's LBFGS maximizing ``_f_torch``: torch 2.14's ``maximize=True`` (``real``), or the
    reference from 2.14's equations: the installed LBFGS minimizing ``-f``, its returned loss
    negated back. Returns per step ``(params, returned loss, state)``."""
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in P0]
    if real:
        opt = torch.optim.LBFGS(ps, maximize=True, **kwargs)
        sign = 1.0
    else:
        opt = torch.optim.LBFGS(ps, **kwargs)
        sign = -1.0

    def closure():
        opt.zero_grad()
        loss = sign * _f_torch(ps)
        loss.backward()
        return loss

    out = []
    for _ in range(steps):
        loss = float(opt.step(closure).detach()) * sign
        state = opt.state[ps[0]]
        out.append(([p.detach().numpy().copy() for p in ps], loss,
                    {k: float(state[k]) for k in ("prev_loss", "func_evals", "n_iter")}))
    return out


KW = [dict(max_iter=4, history_size=5), dict(max_iter=5, line_search_fn="strong_wolfe")]


@pytest.mark.parametrize("kwargs", KW, ids=["fixed", "strong_wolfe"])
def test_lbfgs_maximize_adapter(kwargs):
    want = _torch_maximize(kwargs, 3, real=HAS_2_14)
    opt = optx.optim.LBFGS([jnp.asarray(p) for p in P0], maximize=True, **kwargs)
    assert opt.param_groups[0]["maximize"] is True
    for params, loss, state in want:
        got = float(opt.step(_f_jax))
        # step returns the closure's own loss (f, not -f)
        np.testing.assert_allclose(got, loss, rtol=LBFGS_RTOL)
        assert max_rel_error([[np.asarray(p) for p in opt.params]], [params]) <= LBFGS_RTOL
        ours = opt.state_dict()["state"][0]
        # prev_loss is the negated loss, as torch 2.14 stores it
        np.testing.assert_allclose(float(ours["prev_loss"]), state["prev_loss"], rtol=LBFGS_RTOL)
        assert (int(ours["func_evals"]), int(ours["n_iter"])) == (
            state["func_evals"], state["n_iter"])
    if HAS_2_14:
        assert opt.param_groups[0].keys() == torch.optim.LBFGS(
            [torch.ones(1)], maximize=True).param_groups[0].keys()


def test_lbfgs_maximize_functional():
    kwargs = KW[1]
    want = _torch_maximize(kwargs, 1, real=HAS_2_14)[0]
    tx = optx.lbfgs(maximize=True, **kwargs)
    params = [jnp.asarray(p) for p in P0]
    state = tx.init(params)
    loss, grads = jax.value_and_grad(_f_jax)(params)

    @jax.jit
    def step(params, state, loss, grads):
        updates, state = tx.update(grads, state, params, value=loss, value_fn=_f_jax)
        return optx.apply_updates(params, updates), state

    params, state = step(params, state, loss, grads)
    assert max_rel_error([[np.asarray(p) for p in params]], [want[0]]) <= LBFGS_RTOL
    np.testing.assert_allclose(float(state.prev_loss), want[2]["prev_loss"], rtol=LBFGS_RTOL)


# ------------------------------------------------------------------- LBFGS without params
def test_lbfgs_empty_group_returns_closure_value():
    opt = optx.optim.LBFGS([{"params": []}])
    assert float(opt.step(lambda p: jnp.asarray(3.5))) == 3.5
    assert opt.state_dict()["state"] == {}
    tp: list[torch.Tensor] = []
    topt = torch.optim.LBFGS([{"params": tp}])
    if HAS_2_14:
        assert float(topt.step(lambda: torch.tensor(3.5))) == 3.5
        assert topt.state_dict()["state"] == {}
    else:  # torch 2.13 keys its state on the first parameter
        with pytest.raises(IndexError):
            topt.step(lambda: torch.tensor(3.5))
    # the functional update: nothing to change
    tx = optx.lbfgs()
    state = tx.init([])
    updates, new_state = tx.update([], state, [], value=jnp.asarray(1.0),
                                   value_fn=lambda p: jnp.asarray(1.0))
    assert updates == [] and int(new_state.func_evals) == 0


# ------------------------------------------------------------ Muon spectral_unclamped
MUON_SHAPES = ((3, 5), (6, 4))  # A < B (scaled below 1: where it differs) and A > B


def _torch_muon(kwargs, steps, real):
    """Per step torch's params: 2.14's ``spectral_unclamped`` (``real``) or the 2.13 reference
    (one group per parameter, lr times sqrt(A/B) where A < B, ``"original"``)."""
    params = make_params(4, MUON_SHAPES)
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    if real:
        opt = torch.optim.Muon(ps, adjust_lr_fn="spectral_unclamped", **kwargs)
    else:
        assert kwargs.get("weight_decay", 0.1) == 0.0  # the reference has no decay
        groups = [{"params": [p], "lr": kwargs["lr"] * (math.sqrt(p.shape[0] / p.shape[1])
                                                        if p.shape[0] < p.shape[1] else 1.0)}
                  for p in ps]
        opt = torch.optim.Muon(groups, adjust_lr_fn="original", **kwargs)
    traj = []
    for k in range(steps):
        for p, g in zip(ps, grad_fn([p.detach().numpy() for p in ps], k)):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
        traj.append([p.detach().numpy().copy() for p in ps])
    return traj


def _optx_muon(kwargs, steps):
    params = [jnp.asarray(p) for p in make_params(4, MUON_SHAPES)]
    tx = optx.muon(adjust_lr_fn="spectral_unclamped", **kwargs)
    state = tx.init(params)
    step = jax.jit(lambda p, s, g: (lambda u, s: (optx.apply_updates(p, u), s))(
        *tx.update(g, s, p)))
    traj = []
    for k in range(steps):
        g = [jnp.asarray(x) for x in grad_fn([np.asarray(p) for p in params], k)]
        params, state = step(params, state, g)
        traj.append([np.asarray(p) for p in params])
    return traj


MUON_KW = [dict(lr=0.02, weight_decay=0.0, momentum=0.9, nesterov=nesterov)
           for nesterov in (False, True)]


@pytest.mark.parametrize("kwargs", MUON_KW, ids=["plain", "nesterov"])
def test_muon_spectral_unclamped(kwargs):
    # float64 parameters; Newton-Schulz in bfloat16 as torch's (registry's parity tolerance)
    err = max_rel_error(_optx_muon(kwargs, 8), _torch_muon(kwargs, 8, real=HAS_2_14))
    assert err <= 1e-10, err
    opt = optx.optim.Muon([jnp.ones((2, 4))], adjust_lr_fn="spectral_unclamped")
    assert opt.param_groups[0]["adjust_lr_fn"] == "spectral_unclamped"


@pytest.mark.skipif(not HAS_2_14, reason="checks the references against torch 2.14 itself: "
                    "runs in `make test-torch-latest`; under 2.13 the tests above use them")
def test_references_equal_torch_2_14():
    for kwargs in KW:
        ref, real = _torch_maximize(kwargs, 3, False), _torch_maximize(kwargs, 3, True)
        for (p_ref, l_ref, s_ref), (p, loss, s) in zip(ref, real):
            assert all(np.array_equal(a, b) for a, b in zip(p_ref, p))
            assert (l_ref, s_ref) == (loss, s)
    for kwargs in MUON_KW:
        ref, real = _torch_muon(kwargs, 5, False), _torch_muon(kwargs, 5, True)
        assert all(np.array_equal(a, b) for sa, sb in zip(ref, real) for a, b in zip(sa, sb))
    # with weight decay (no 2.13 reference: torch decays with the group lr)
    kwargs = dict(lr=0.02, weight_decay=0.1, momentum=0.9)
    assert max_rel_error(_optx_muon(kwargs, 5), _torch_muon(kwargs, 5, real=True)) <= 1e-10


# ----------------------------------------------------------------------- torch 2.15
# torch 2.15's ASGD.__init__ (torch/optim/asgd.py): after lr and weight_decay,
#   raise ValueError(f"Invalid lambd value: {lambd}") / (f"Invalid alpha value: {alpha}")
ASGD_2_15 = [({"lambd": -1e-4}, "Invalid lambd value: -0.0001"),
             ({"alpha": -0.75}, "Invalid alpha value: -0.75")]


@pytest.mark.parametrize(("kwargs", "message"), ASGD_2_15, ids=["lambd", "alpha"])
def test_asgd_2_15_checks(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        optx.asgd(**kwargs)
    with pytest.raises(ValueError, match=f"^{message}$"):
        optx.optim.ASGD([jnp.ones(2)], **kwargs)
    if HAS_2_15:
        with pytest.raises(ValueError, match=f"^{message}$"):
            torch.optim.ASGD([torch.ones(2)], **kwargs)
    else:  # 2.13 and 2.14 accept it
        torch.optim.ASGD([torch.ones(2)], **kwargs)
    # 0 is valid in every version, and a schedule is not checked (torch has none)
    optx.asgd(lambd=0.0, alpha=0.0)
    optx.asgd(lambd=lambda t: -1.0)


def test_muon_bfloat16_buffer_follows_2_15():
    """nesterov=False, bfloat16: torch 2.13/2.14 normalize the stored buffer in place (the
    Newton-Schulz input ``grad.bfloat16()`` is the buffer itself); 2.15 and optx keep the
    buffer ``lerp(0, g, 1 - momentum)``: bfloat16(0.1) for ones."""
    kwargs = dict(lr=0.0, momentum=0.9, nesterov=False)
    opt = optx.optim.Muon([jnp.ones((2, 3), jnp.bfloat16)], **kwargs)
    opt.step([jnp.ones((2, 3), jnp.bfloat16)])
    buf = np.asarray(opt.state_dict()["state"][0]["momentum_buffer"], np.float32)
    want = np.float32(torch.tensor(0.1, dtype=torch.bfloat16).float())
    assert np.all(buf == want)
    p = torch.ones(2, 3, dtype=torch.bfloat16, requires_grad=True)
    topt = torch.optim.Muon([p], **kwargs)
    p.grad = torch.ones(2, 3, dtype=torch.bfloat16)
    topt.step()
    theirs = topt.state[p]["momentum_buffer"].float().numpy()
    if HAS_2_15:
        assert np.all(theirs == want)
    else:
        assert not np.any(theirs == want)  # normalized: the 2.13/2.14 behaviour optx leaves
