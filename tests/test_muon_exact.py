"""Muon's bfloat16 Newton–Schulz against torch's CPU kernels, bit for bit.

torch rounds each op to bfloat16 once and computes in float32 before that; ``torch.addmm``
adds ``beta * input`` to the float32 product with a fused multiply-add. The cases below are
fixed: XLA sums a float32 dot in another order than oneDNN, which on rare inputs flips one
bfloat16 rounding (see ``optx.muon``'s docstring).
"""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz as torch_ns

import optx
from optx.optimizers.muon import _addmm, _fma, _zeropower_via_newtonschulz

COEFFS = (3.4445, -4.775, 2.0315)


def _ns(g, coeffs=COEFFS, steps=5, eps=1e-7):
    ns = jnp.asarray([*coeffs, eps], jnp.float32)
    return np.asarray(jax.jit(_zeropower_via_newtonschulz, static_argnums=2)(
        jnp.asarray(g), ns, steps)).astype(np.float32)


@pytest.mark.parametrize("shape", [(16, 16), (7, 7), (4, 6), (5, 100), (8, 5), (32, 16), (1, 9)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_newton_schulz_is_torchs_bit_for_bit(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    for scale in (1e-3, 1.0, 50.0):
        g = (rng.standard_normal(shape) * scale).astype(dtype)
        expected = torch_ns(torch.tensor(g), COEFFS, 5, 1e-7).float().numpy()
        np.testing.assert_array_equal(_ns(g), expected)


def test_newton_schulz_other_coefficients_and_zero_input():
    rng = np.random.default_rng(1)
    g = rng.standard_normal((6, 9))
    coeffs = (2.0, -1.5, 0.5)
    expected = torch_ns(torch.tensor(g), coeffs, 3, 1e-7).float().numpy()
    np.testing.assert_array_equal(_ns(g, coeffs, 3), expected)
    zero = np.zeros((3, 4))
    expected = torch_ns(torch.tensor(zero), COEFFS, 5, 1e-7).float().numpy()
    np.testing.assert_array_equal(_ns(zero), expected)


def test_fma_rounds_once():
    rng = np.random.default_rng(0)
    n = 200_000
    for scale in (-4.775, 2.0315, 3.4445, 0.1):
        s = np.float32(scale)
        x = rng.standard_normal(n).astype(ml_dtypes.bfloat16).astype(np.float32)
        # Near-cancelling sums, where rounding s * x first would show.
        y = (-(np.float64(s) * x) * (1 + rng.standard_normal(n) * 1e-5)).astype(np.float32)
        exact = (np.float64(s) * x.astype(np.float64) + y).astype(np.float32)
        got = np.asarray(jax.jit(_fma)(jnp.float32(s), jnp.asarray(x), jnp.asarray(y)))
        np.testing.assert_array_equal(got, exact)


def test_addmm_is_torchs():
    rng = np.random.default_rng(0)
    bf16 = torch.bfloat16
    for m, k, n in [(3, 3, 3), (5, 8, 4), (16, 16, 16), (4, 30, 7)]:
        c, m1, m2 = (torch.tensor(rng.standard_normal(s)).to(bf16)
                     for s in ((m, n), (m, k), (k, n)))
        args = [jnp.asarray(t.float().numpy()).astype(jnp.bfloat16) for t in (c, m1, m2)]
        for beta, alpha in [(-4.775, 2.0315), (3.4445, None)]:
            expected = torch.addmm(c, m1, m2, beta=beta, alpha=1.0 if alpha is None else alpha)
            got = _addmm(*args, jnp.float32(beta), None if alpha is None else jnp.float32(alpha))
            np.testing.assert_array_equal(
                np.asarray(got).astype(np.float32), expected.float().numpy())


def _trajectories(kwargs, dtype, shapes=((6, 4), (3, 5), (16, 16)), steps=30):
    rng = np.random.default_rng(0)
    p0 = [rng.standard_normal(s).astype(dtype) for s in shapes]
    tp = [torch.tensor(p.copy(), requires_grad=True) for p in p0]
    topt = torch.optim.Muon(tp, **kwargs)
    tx = optx.muon(**kwargs)
    xp = [jnp.asarray(p) for p in p0]
    state = tx.init(xp)
    step = jax.jit(tx.update)
    err = 0.0
    for k in range(steps):
        g = [np.sin(3 * p) * (1 + 0.3 * k) + 0.1 * np.cos(k + 2 * p) for p in p0]
        for t, gi in zip(tp, g):
            t.grad = torch.tensor(gi)
        topt.step()
        updates, state = step([jnp.asarray(gi) for gi in g], state, xp)
        xp = optx.apply_updates(xp, updates)
        p0 = [t.detach().numpy() for t in tp]
        for t, x in zip(tp, xp):
            a = t.detach().numpy()
            err = max(err, float(np.max(np.abs(a - np.asarray(x))) / np.max(np.abs(a))))
    return err


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.05, momentum=0.9, adjust_lr_fn="match_rms_adamw"),
    dict(lr=0.02, adjust_lr_fn="original", weight_decay=0.3),
])
def test_float64_trajectory_matches_torch(kwargs):
    with jax.enable_x64(True):
        assert _trajectories(kwargs, np.float64) <= 1e-13
