"""Complex parameters behave as in torch: updated as their real view (float64 parity), or
refused with torch's error where torch refuses them."""

import jax.numpy as jnp
import numpy as np
import pytest
from parity import max_rel_error, run_optx, run_torch
from registry import cases, infos

STEPS = 30


def complex_params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) + 1j * rng.normal(size=s) for s in ((3, 2), (4,))]


def complex_grads(params, k):
    return [np.cos(0.6 * k + np.arange(p.size).reshape(p.shape)) * (1 + 0.3 * p)
            + 0.2j * np.sin(0.9 * k + p.real) for p in params]


@pytest.mark.parametrize("info,kwargs", cases("complex_kwargs", "supports_complex"))
def test_complex_parity(info, kwargs):
    params0 = complex_params()
    expected = run_torch(info.torch_cls, kwargs, params0, STEPS, complex_grads)
    got = run_optx(info.fn(**kwargs), params0, STEPS, complex_grads)
    assert max_rel_error(got, expected) <= 1e-10


@pytest.mark.parametrize("info", infos("supports_complex", False))
def test_complex_refused_like_torch(info):
    tx = info.fn()
    with pytest.raises((RuntimeError, ValueError), match="does not support complex"):
        tx.init([jnp.ones((3, 2), jnp.complex128)])
