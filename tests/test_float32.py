"""float32 parameters against torch float32: the same trajectories within float32 rounding."""

import numpy as np
import pytest
import torch
from parity import make_params, max_rel_error, run_optx, run_torch

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
    assert max_rel_error(got, expected) <= 1e-5
