"""Muon's bfloat16 Newton–Schulz against torch's CPU kernels, op by op.

torch rounds each op to bfloat16 once and computes in float32 before that; ``torch.addmm``
adds ``beta * input`` to the float32 product with a fused multiply-add. The float32 sums are
not in one order on every machine: torch's CPU matmul takes oneDNN's kernel for larger bf16
matrices where the CPU has AVX-512 (``m*n*k > 16**3``) and ATen's own otherwise, whose
vectorised sum depends on the CPU's capability (AVX-512, AVX2 or none); XLA's dot has its own
order. Two orders give float32 sums a few float32 ulps apart, and where such a sum lies near
a bfloat16 rounding boundary the rounded results differ by one bfloat16 ulp (measured: 1-4 of
24 matrices differ somewhere after 5 iterations, depending on ``ATEN_CPU_CAPABILITY`` and
``ONEDNN_MAX_CPU_ISA``). No single order reproduces every CPU's, so each op of each iteration
is checked against torch's, given torch's inputs, to a tolerance derived from the roundings
(:func:`_tolerance`); the rest of Muon (momentum, Nesterov, learning-rate adjustment, weight
decay) is checked exactly, around the same Newton–Schulz on both sides.
"""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz as torch_ns

import optx
from optx.optimizers.muon import _addmm, _fma, _matmul, _round, _zeropower_via_newtonschulz

COEFFS = (3.4445, -4.775, 2.0315)


def _ns(g, coeffs=COEFFS, steps=5, eps=1e-7):
    ns = jnp.asarray([*coeffs, eps], jnp.float32)
    return np.asarray(jax.jit(_zeropower_via_newtonschulz, static_argnums=2)(
        jnp.asarray(g), ns, steps)).astype(np.float32)


U32, U16 = 2.0**-24, 2.0**-8  # unit roundoffs of float32 and bfloat16


def _tolerance(terms_abs, m, got, expected):
    """How far two correct implementations of one torch op may be apart.

    Each computes ``S = sum_i t_i`` (the products of a bfloat16 matmul, exact in float32, and
    for addmm ``beta * input``) in float32, in its own order, with one rounding per addition
    (and the ``alpha`` scale): each float32 result ``s_j`` is within ``gamma_m * T`` of ``S``,
    ``T = sum_i |t_i|``, ``gamma_m = m u32 / (1 - m u32)`` for ``m`` roundings (Higham, Accuracy
    and Stability, 3.1). Each is then rounded to bfloat16 once: ``|r_j - s_j| <= u16 |s_j|``
    with ``u16 = 2**-8``, ``|s_j| <= |r_j| / (1 - u16)``. So
    ``|r_1 - r_2| <= 2 gamma_m T + u16 (|r_1| + |r_2|) / (1 - u16)``, elementwise.
    """
    gamma = m * U32 / (1 - m * U32)
    return 2 * gamma * terms_abs + U16 * (np.abs(got) + np.abs(expected)) / (1 - U16) + 1e-38


def _f64(t):
    return t.double().numpy()


def _jbf16(t):
    return jnp.asarray(t.float().numpy()).astype(jnp.bfloat16)


def _check_op(got, expected, terms_abs, m, what, flips):
    got = np.asarray(got).astype(np.float64)
    expected = _f64(expected)
    tol = _tolerance(terms_abs, m, got, expected)
    assert np.all(np.abs(got - expected) <= tol), (what, float(np.max(np.abs(got - expected))))
    flips.append(np.mean(got != expected))


@pytest.mark.parametrize("shape", [(16, 16), (7, 7), (4, 6), (5, 100), (8, 5), (32, 16), (1, 9),
                                   (24, 40)])
def test_each_newton_schulz_iteration_is_torchs_to_a_bfloat16_rounding(shape):
    a, b, c = COEFFS
    rng = np.random.default_rng(sum(shape))
    flips: list[float] = []
    for scale in (1e-3, 1.0, 50.0):
        g = torch.tensor(rng.standard_normal(shape) * scale)
        x = g.bfloat16()
        if shape[0] > shape[1]:
            x = x.T
        # The normalisation: a float32 sum of squares (n terms), its root and the quotient each
        # rounded to bfloat16 (the root's rounding moves the quotient by u16 more).
        norm = x.norm().clamp(min=1e-7)
        xn = x / norm
        ns0 = _ns(g.numpy(), steps=0)
        ns0 = ns0.T if shape[0] > shape[1] else ns0
        terms = np.sum(_f64(x) ** 2)
        tol = (2 * U16 + 2 * x.numel() * U32) * np.abs(_f64(xn)) * 1.01 + _tolerance(
            0.0, 0, ns0.astype(np.float64), _f64(xn))
        assert np.all(np.abs(ns0 - _f64(xn)) <= tol), (shape, scale, terms)
        x = xn
        for _ in range(5):
            k = x.shape[1]
            gram = x @ x.T
            xa, xd = _jbf16(x), np.abs(_f64(x))
            _check_op(_round(_matmul(xa, xa.T)), gram, xd @ xd.T, k, "gram", flips)
            upd = torch.addmm(gram, gram, gram, beta=b, alpha=c)
            ga, gd = _jbf16(gram), np.abs(_f64(gram))
            _check_op(_addmm(ga, ga, ga, jnp.float32(b), jnp.float32(c)), upd,
                      abs(c) * gd @ gd + abs(b) * gd, gram.shape[0] + 2, "gram_update", flips)
            new = torch.addmm(x, upd, x, beta=a)
            ua, ud = _jbf16(upd), np.abs(_f64(upd))
            _check_op(_addmm(xa, ua, xa, jnp.float32(a)), new, ud @ xd + abs(a) * xd,
                      upd.shape[0] + 1, "x", flips)
            x = new
    # Roundings that differ are rare (a float32 sum within a few ulps of a bfloat16 tie).
    assert np.mean(flips) < 0.05, np.mean(flips)


def test_newton_schulz_of_zero_is_zero():
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


def _optx_newton_schulz(grad, ns_coefficients, ns_steps, eps):
    """torch's ``_zeropower_via_newtonschulz`` computed by optx's (checked op by op above)."""
    out = _ns(grad.detach().numpy(), tuple(ns_coefficients), ns_steps, eps)
    return torch.from_numpy(out).bfloat16()  # exact: the values are bfloat16 numbers


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.05, momentum=0.9, adjust_lr_fn="match_rms_adamw"),
    dict(lr=0.02, adjust_lr_fn="original", weight_decay=0.3),
    dict(lr=0.03, momentum=0.8, nesterov=False, weight_decay=0.1),
])
def test_float64_trajectory_matches_torch(kwargs, monkeypatch):
    """Everything around the Newton–Schulz (momentum, Nesterov, the learning-rate adjustment,
    weight decay, the float64 update) is torch's to float64 rounding, on every machine: torch
    runs with the same Newton–Schulz as optx (torch's own kernels sum in a CPU-dependent order,
    see the module docstring; with them the trajectories differ by ~1e-4 on some CPUs)."""
    monkeypatch.setattr(torch.optim._muon, "_zeropower_via_newtonschulz", _optx_newton_schulz)
    with jax.enable_x64(True):
        assert _trajectories(kwargs, np.float64) <= 1e-13
