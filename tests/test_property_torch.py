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

import optx

EXAMPLES = 12
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

unit = st.floats(0.0, 0.99)
lr = st.floats(1e-4, 0.3)
wd = st.one_of(st.just(0.0), st.floats(0.0, 0.2))
eps = st.floats(1e-10, 1e-3)
betas = st.tuples(st.floats(0.0, 0.99), st.floats(0.0, 0.999))
shape = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
shapes = st.lists(shape, min_size=1, max_size=3)
steps = st.integers(1, 20)


@st.composite
def sgd_kwargs(draw):
    momentum = draw(st.one_of(st.just(0.0), unit))
    nesterov = draw(st.booleans()) and momentum > 0
    dampening = 0.0 if nesterov else draw(st.one_of(st.just(0.0), unit))
    return dict(lr=draw(lr), momentum=momentum, dampening=dampening, weight_decay=draw(wd),
                nesterov=nesterov, maximize=draw(st.booleans()))


@st.composite
def adam_kwargs(draw, decoupled=True):
    kw = dict(lr=draw(lr), betas=draw(betas), eps=draw(eps), weight_decay=draw(wd),
              amsgrad=draw(st.booleans()), maximize=draw(st.booleans()))
    if decoupled:
        kw["decoupled_weight_decay"] = draw(st.booleans())
    return kw


KWARGS = {
    "SGD": ("sgd", sgd_kwargs()),
    "Adam": ("adam", adam_kwargs()),
    "AdamW": ("adamw", adam_kwargs(decoupled=False)),
    "RMSprop": ("rmsprop", st.fixed_dictionaries(dict(
        lr=lr, alpha=unit, eps=eps, weight_decay=wd, momentum=st.one_of(st.just(0.0), unit),
        centered=st.booleans(), maximize=st.booleans()))),
    "Adagrad": ("adagrad", st.fixed_dictionaries(dict(
        lr=lr, lr_decay=st.floats(0.0, 0.1), weight_decay=wd,
        initial_accumulator_value=st.floats(0.0, 1.0), eps=eps, maximize=st.booleans()))),
    "Adadelta": ("adadelta", st.fixed_dictionaries(dict(
        lr=st.floats(1e-3, 2.0), rho=st.floats(0.0, 1.0), eps=eps, weight_decay=wd,
        maximize=st.booleans()))),
    "NAdam": ("nadam", st.fixed_dictionaries(dict(
        lr=lr, betas=betas, eps=eps, weight_decay=wd, momentum_decay=st.floats(0.0, 0.01),
        decoupled_weight_decay=st.booleans(), maximize=st.booleans()))),
    "Rprop": ("rprop", st.fixed_dictionaries(dict(
        lr=lr, etas=st.tuples(st.floats(0.1, 0.99), st.floats(1.01, 2.0)),
        step_sizes=st.tuples(st.floats(1e-7, 1e-3), st.floats(0.01, 50.0)),
        maximize=st.booleans()))),
    "Adamax": ("adamax", st.fixed_dictionaries(dict(
        lr=lr, betas=betas, eps=eps, weight_decay=wd, maximize=st.booleans()))),
    "ASGD": ("asgd", st.fixed_dictionaries(dict(
        lr=lr, lambd=st.floats(0.0, 1e-2), alpha=st.floats(0.0, 1.0),
        t0=st.integers(0, 10).map(float), weight_decay=wd, maximize=st.booleans()))),
    "RAdam": ("radam", st.fixed_dictionaries(dict(
        lr=lr, betas=betas, eps=eps, weight_decay=wd, decoupled_weight_decay=st.booleans(),
        maximize=st.booleans()))),
    "Adafactor": ("adafactor", st.fixed_dictionaries(dict(
        lr=lr, beta2_decay=st.floats(-1.0, -0.5), eps=st.tuples(st.none(), st.floats(1e-4, 1e-2)),
        d=st.floats(1.0, 2.0), weight_decay=wd, maximize=st.booleans()))),
}


def _check(torch_name, optx_name, kwargs, shapes_, n_steps, seed):
    rng = np.random.default_rng(seed)
    if torch_name == "Adafactor":  # torch divides by numel: empty params raise there
        shapes_ = [s for s in shapes_ if np.prod(s) > 0] or [(2,)]
    params0 = [rng.normal(size=s) for s in shapes_]
    expected = run_torch(getattr(torch.optim, torch_name), kwargs, params0, n_steps, grad_fn)
    got = run_optx(getattr(optx, optx_name)(**kwargs), params0, n_steps, grad_fn, jit=False)
    assert max_rel_error(got, expected) <= 1e-9, (kwargs, shapes_, n_steps)


def _make_test(torch_name):
    optx_name, kwargs_strategy = KWARGS[torch_name]

    @SETTINGS
    @given(kwargs=kwargs_strategy, shapes_=shapes, n_steps=steps, seed=st.integers(0, 2**16))
    def test(kwargs, shapes_, n_steps, seed):
        _check(torch_name, optx_name, kwargs, shapes_, n_steps, seed)

    test.__name__ = f"test_property_{optx_name}"
    return test


for _name in KWARGS:
    globals()[f"test_property_{KWARGS[_name][0]}"] = _make_test(_name)


@SETTINGS
@given(kwargs=st.fixed_dictionaries(dict(lr=lr, betas=betas, eps=eps)),
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
