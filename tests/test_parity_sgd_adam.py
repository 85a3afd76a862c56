"""float64 parity against torch for SGD, Adam and AdamW, every option and their combinations."""

import itertools

import pytest
import torch
from parity import make_params, max_rel_error, run_optx, run_torch

import optx

STEPS = 50
TOL = 1e-10


def _sgd_configs():
    out = []
    for momentum, dampening, nesterov, wd, maximize in itertools.product(
        [0.0, 0.9], [0.0, 0.3], [False, True], [0.0, 0.05], [False, True]
    ):
        if nesterov and (momentum == 0 or dampening != 0):
            continue
        out.append(dict(lr=0.05, momentum=momentum, dampening=dampening, nesterov=nesterov,
                        weight_decay=wd, maximize=maximize))
    return out


def _adam_configs(with_decoupled: bool):
    out = []
    for amsgrad, wd, maximize, decoupled in itertools.product(
        [False, True], [0.0, 0.1], [False, True], [False, True] if with_decoupled else [None]
    ):
        cfg = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd, amsgrad=amsgrad,
                   maximize=maximize)
        if decoupled is not None:
            cfg["decoupled_weight_decay"] = decoupled
        out.append(cfg)
    out.append(dict())  # torch's defaults
    return out


CASES = (
    [("sgd", torch.optim.SGD, optx.sgd, c) for c in _sgd_configs()]
    + [("adam", torch.optim.Adam, optx.adam, c) for c in _adam_configs(True)]
    + [("adamw", torch.optim.AdamW, optx.adamw, c) for c in _adam_configs(False)]
)


@pytest.mark.parametrize(
    "name,torch_cls,optx_fn,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_parity_float64(name, torch_cls, optx_fn, kwargs):
    params0 = make_params(seed=len(kwargs))
    expected = run_torch(torch_cls, kwargs, params0, STEPS)
    got = run_optx(optx_fn(**kwargs), params0, STEPS)
    assert max_rel_error(got, expected) <= TOL
