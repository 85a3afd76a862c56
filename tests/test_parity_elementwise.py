"""float64 parity against torch for RMSprop, Adagrad, Adadelta, NAdam and Rprop: every option
and their combinations, 50 steps, ≤1e-10 relative."""

import itertools

import pytest
import torch
from parity import make_params, max_rel_error, run_optx, run_torch

import optx

STEPS = 50
TOL = 1e-10


def grid(**axes):
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


CONFIGS = {
    "rmsprop": (torch.optim.RMSprop, optx.rmsprop, [dict()] + grid(
        lr=[0.01], alpha=[0.9], eps=[1e-6], weight_decay=[0.0, 0.1], momentum=[0.0, 0.8],
        centered=[False, True], maximize=[False, True])),
    "adagrad": (torch.optim.Adagrad, optx.adagrad, [dict()] + grid(
        lr=[0.1], lr_decay=[0.0, 0.05], weight_decay=[0.0, 0.1],
        initial_accumulator_value=[0.0, 0.5], eps=[1e-8], maximize=[False, True])),
    "adadelta": (torch.optim.Adadelta, optx.adadelta, [dict()] + grid(
        lr=[1.0, 0.3], rho=[0.9, 0.5], eps=[1e-6, 1e-4], weight_decay=[0.0, 0.1],
        maximize=[False, True])),
    "nadam": (torch.optim.NAdam, optx.nadam, [dict()] + grid(
        lr=[0.01], betas=[(0.8, 0.95)], weight_decay=[0.0, 0.1], momentum_decay=[4e-3, 0.05],
        decoupled_weight_decay=[False, True], maximize=[False, True])),
    "rprop": (torch.optim.Rprop, optx.rprop, [dict()] + grid(
        lr=[0.01, 0.2], etas=[(0.5, 1.2), (0.3, 1.5)], step_sizes=[(1e-6, 50), (1e-3, 0.05)],
        maximize=[False, True])),
}

CASES = [(name, cls, fn, kw) for name, (cls, fn, kws) in CONFIGS.items() for kw in kws]


@pytest.mark.parametrize(
    "name,torch_cls,optx_fn,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_parity_float64(name, torch_cls, optx_fn, kwargs):
    params0 = make_params(seed=len(kwargs))
    expected = run_torch(torch_cls, kwargs, params0, STEPS)
    got = run_optx(optx_fn(**kwargs), params0, STEPS)
    assert max_rel_error(got, expected) <= TOL
