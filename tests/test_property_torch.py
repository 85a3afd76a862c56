"""Property-based parity against torch in float64 (hypothesis).

For every optimizer: random valid hyperparameters, random shapes (0-d and empty arrays
included) and a random number of steps; optx must follow torch's trajectory. Examples are
derandomized so CI is reproducible, and bounded to keep the suite fast.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parity import grad_fn, max_rel_error, run_optx, run_torch
from registry import BY_NAME, OPTIMIZERS

import optx

EXAMPLES = 12
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

shape = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
shapes = st.lists(shape, min_size=1, max_size=3)
steps = st.integers(1, 20)


def _check(info, kwargs, shapes_, n_steps, seed):
    rng = np.random.default_rng(seed)
    if not info.supports_empty_params:
        shapes_ = [s for s in shapes_ if np.prod(s) > 0] or [(2,)]
    params0 = [rng.normal(size=s) for s in shapes_]
    expected = run_torch(info.torch_cls, kwargs, params0, n_steps, grad_fn)
    got = run_optx(info.fn(**kwargs), params0, n_steps, grad_fn, jit=False)
    assert max_rel_error(got, expected) <= 1e-9, (kwargs, shapes_, n_steps)


def _make_test(info):
    @SETTINGS
    @given(kwargs=info.property_kwargs, shapes_=shapes, n_steps=steps,
           seed=st.integers(0, 2**16))
    def test(kwargs, shapes_, n_steps, seed):
        _check(info, kwargs, shapes_, n_steps, seed)

    test.__name__ = f"test_property_{info.name}"
    return test


for _info in OPTIMIZERS:
    if _info.property_kwargs is not None and not _info.sparse_grads:
        globals()[f"test_property_{_info.name}"] = _make_test(_info)
del _info


@SETTINGS
@given(kwargs=BY_NAME["sparse_adam"].property_kwargs,
       shapes_=shapes, n_steps=steps, seed=st.integers(0, 2**16),
       density=st.floats(0.0, 1.0))
def test_property_sparse_adam(kwargs, shapes_, n_steps, seed, density):
    """SparseAdam: gradient entries that are exactly zero are absent (torch sparse grads)."""
    rng = np.random.default_rng(seed)
    params0 = [rng.normal(size=s) for s in shapes_ if len(s) >= 1]
    if not params0:
        return
    masks = [rng.random(p.shape) < density for p in params0]

    def sparse_grads(params, k):
        return [g * m for g, m in zip(grad_fn(params, k), masks)]

    ps = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    opt = torch.optim.SparseAdam(ps, **kwargs)
    expected = []
    for k in range(n_steps):
        for p, g in zip(ps, sparse_grads([p.detach().numpy() for p in ps], k)):
            p.grad = torch.from_numpy(g).to_sparse()
        opt.step()
        expected.append([p.detach().numpy().copy() for p in ps])
    got = run_optx(optx.sparse_adam(**kwargs), params0, n_steps, sparse_grads, jit=False)
    assert max_rel_error(got, expected) <= 1e-9
