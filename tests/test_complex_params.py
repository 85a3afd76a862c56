"""Complex parameters behave as in torch: updated as their real view (float64 parity), or
refused with torch's error where torch refuses them."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity import max_rel_error, run_optx, run_torch

import optx

STEPS = 30


def complex_params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) + 1j * rng.normal(size=s) for s in ((3, 2), (4,))]


def complex_grads(params, k):
    return [np.cos(0.6 * k + np.arange(p.size).reshape(p.shape)) * (1 + 0.3 * p)
            + 0.2j * np.sin(0.9 * k + p.real) for p in params]


CASES = [
    ("SGD", "sgd", dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
    ("Adam", "adam", dict(lr=0.02, amsgrad=True, weight_decay=0.1)),
    ("AdamW", "adamw", dict(lr=0.02)),
    ("RMSprop", "rmsprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adagrad", "adagrad", dict(lr=0.1, lr_decay=0.01)),
    ("Adadelta", "adadelta", dict(lr=0.5, weight_decay=0.1)),
    ("NAdam", "nadam", dict(lr=0.02)),
    ("Rprop", "rprop", dict(lr=0.02)),
    ("Adamax", "adamax", dict(lr=0.02)),
    ("ASGD", "asgd", dict(lr=0.05, t0=5)),
    ("RAdam", "radam", dict(lr=0.02)),
]


@pytest.mark.parametrize("torch_name,optx_name,kwargs", CASES, ids=[c[0] for c in CASES])
def test_complex_parity(torch_name, optx_name, kwargs):
    params0 = complex_params()
    expected = run_torch(getattr(torch.optim, torch_name), kwargs, params0, STEPS, complex_grads)
    got = run_optx(getattr(optx, optx_name)(**kwargs), params0, STEPS, complex_grads)
    assert max_rel_error(got, expected) <= 1e-10


@pytest.mark.parametrize("optx_name", ["adafactor", "muon", "sparse_adam"])
def test_complex_refused_like_torch(optx_name):
    tx = getattr(optx, optx_name)()
    with pytest.raises((RuntimeError, ValueError), match="does not support complex"):
        tx.init([jnp.ones((3, 2), jnp.complex128)])
