"""float32 parameters against torch float32: the same trajectories within float32 rounding."""

import numpy as np
import pytest
import torch
from parity import make_params, run_optx, run_torch

import optx

CASES = [
    ("SGD", "sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", "adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("AdamW", "adamw", dict(lr=0.01)),
    ("RMSprop", "rmsprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adagrad", "adagrad", dict(lr=0.1, lr_decay=0.01)),
    ("Adadelta", "adadelta", dict(lr=1.0)),
    ("NAdam", "nadam", dict(lr=0.01)),
    ("Rprop", "rprop", dict(lr=0.01)),
]


@pytest.mark.parametrize("torch_name,optx_name,kwargs", CASES, ids=[c[0] for c in CASES])
def test_float32_parity(torch_name, optx_name, kwargs):
    params0 = make_params(seed=3, dtype=np.float32)
    torch.set_default_dtype(torch.float32)
    try:
        expected = run_torch(getattr(torch.optim, torch_name), kwargs, params0, 30)
    finally:
        torch.set_default_dtype(torch.float64)
    got = run_optx(getattr(optx, optx_name)(**kwargs), params0, 30)
    assert all(x.dtype == np.float32 for step in got for x in step)
    assert float32_error(got, expected) <= 1e-5


def float32_error(got, expected):
    """Worst absolute error of each leaf relative to that leaf's largest value over the run.

    float32 rounding is relative to the magnitudes a value was computed from, so a leaf that
    passes near zero at one step (the scalar parameter here) is judged against its own scale
    rather than its value at that step, where a few ULPs of its inputs would read as 1e-5.
    """
    worst = 0.0
    for leaf in range(len(expected[0])):
        want = np.stack([step[leaf] for step in expected]).astype(np.float64)
        have = np.stack([step[leaf] for step in got]).astype(np.float64)
        scale = max(float(np.max(np.abs(want))), 1e-30)
        worst = max(worst, float(np.max(np.abs(have - want))) / scale)
    return worst
