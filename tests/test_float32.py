"""float32 parameters against torch float32: the same trajectories within float32 rounding."""

import numpy as np
import pytest
import torch
from parity import make_params, run_optx, run_torch
from registry import cases


@pytest.mark.parametrize("info,kwargs", cases("float32_kwargs"))
def test_float32_parity(info, kwargs):
    params0 = make_params(seed=3, dtype=np.float32)
    torch.set_default_dtype(torch.float32)
    try:
        expected = run_torch(info.torch_cls, kwargs, params0, 30)
    finally:
        torch.set_default_dtype(torch.float64)
    got = run_optx(info.fn(**kwargs), params0, 30)
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
