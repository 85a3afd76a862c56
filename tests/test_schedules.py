"""Every optx schedule against torch's get_last_lr() sequence, t = 0..200, ≤1e-12 relative,
with Python-int t and with a traced t."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as L
from torch.optim.swa_utils import SWALR

import optx
import optx.schedules as S

T = 200
LR = 0.1


def torch_sequence(make, optimizer="sgd", steps=T):
    p = torch.zeros(1, requires_grad=True)
    opt = (
        torch.optim.SGD([p], lr=LR, momentum=0.9)
        if optimizer == "sgd"
        else torch.optim.Adam([p], lr=LR)
    )
    sched = make(opt)
    lrs, moms = [sched.get_last_lr()[0]], [_momentum(opt)]
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
        moms.append(_momentum(opt))
    return np.array(lrs, dtype=np.float64), np.array(moms, dtype=np.float64)


def _momentum(opt):
    g = opt.param_groups[0]
    return g["betas"][0] if "betas" in g else g["momentum"]


def lam(e):
    return 1.0 / (1.0 + 0.05 * e)


CASES = {
    "step": (S.step_lr(LR, 7, 0.5), lambda o: L.StepLR(o, 7, 0.5)),
    "step_default": (S.step_lr(LR, 30), lambda o: L.StepLR(o, 30)),
    "multi_step": (
        S.multi_step_lr(LR, [10, 40, 40, 120]),
        lambda o: L.MultiStepLR(o, [10, 40, 40, 120]),
    ),
    "multi_step_zero": (S.multi_step_lr(LR, [0, 5], 0.3), lambda o: L.MultiStepLR(o, [0, 5], 0.3)),
    "exponential": (S.exponential_lr(LR, 0.97), lambda o: L.ExponentialLR(o, 0.97)),
    "cosine": (S.cosine_annealing_lr(LR, 50), lambda o: L.CosineAnnealingLR(o, 50)),
    "cosine_eta": (S.cosine_annealing_lr(LR, 33, 0.01), lambda o: L.CosineAnnealingLR(o, 33, 0.01)),
    "warm_restarts": (
        S.cosine_annealing_warm_restarts(LR, 10),
        lambda o: L.CosineAnnealingWarmRestarts(o, 10),
    ),
    "warm_restarts_mult": (
        S.cosine_annealing_warm_restarts(LR, 3, 2, 1e-3),
        lambda o: L.CosineAnnealingWarmRestarts(o, 3, 2, 1e-3),
    ),
    "one_cycle": (
        S.one_cycle_lr(1.0, total_steps=T),
        lambda o: L.OneCycleLR(o, 1.0, total_steps=T),
    ),
    "one_cycle_linear_3": (
        S.one_cycle_lr(
            0.5,
            epochs=10,
            steps_per_epoch=20,
            pct_start=0.25,
            anneal_strategy="linear",
            three_phase=True,
        ),
        lambda o: L.OneCycleLR(
            o,
            0.5,
            epochs=10,
            steps_per_epoch=20,
            pct_start=0.25,
            anneal_strategy="linear",
            three_phase=True,
        ),
    ),
    "cyclic": (S.cyclic_lr(0.01, 0.1, 15), lambda o: L.CyclicLR(o, 0.01, 0.1, 15)),
    "cyclic_tri2": (
        S.cyclic_lr(0.01, 0.1, 10, 20, mode="triangular2"),
        lambda o: L.CyclicLR(o, 0.01, 0.1, 10, 20, mode="triangular2"),
    ),
    "cyclic_exp": (
        S.cyclic_lr(0.01, 0.1, 8, mode="exp_range", gamma=0.99),
        lambda o: L.CyclicLR(o, 0.01, 0.1, 8, mode="exp_range", gamma=0.99),
    ),
    "cyclic_custom_cycle": (
        S.cyclic_lr(0.01, 0.1, 6, scale_fn=lambda x: 0.9**x),
        lambda o: L.CyclicLR(o, 0.01, 0.1, 6, scale_fn=lambda x: 0.9**x),
    ),
    "cyclic_custom_iter": (
        S.cyclic_lr(0.01, 0.1, 6, scale_fn=lambda x: 1 / (1 + 0.01 * x), scale_mode="iterations"),
        lambda o: L.CyclicLR(
            o, 0.01, 0.1, 6, scale_fn=lambda x: 1 / (1 + 0.01 * x), scale_mode="iterations"
        ),
    ),
    "linear": (S.linear_lr(LR), lambda o: L.LinearLR(o)),
    "linear_args": (S.linear_lr(LR, 0.1, 0.6, 40), lambda o: L.LinearLR(o, 0.1, 0.6, 40)),
    "constant": (S.constant_lr(LR), lambda o: L.ConstantLR(o)),
    "constant_args": (S.constant_lr(LR, 0.5, 30), lambda o: L.ConstantLR(o, 0.5, 30)),
    "polynomial": (S.polynomial_lr(LR), lambda o: L.PolynomialLR(o)),
    "polynomial_args": (S.polynomial_lr(LR, 120, 2.5), lambda o: L.PolynomialLR(o, 120, 2.5)),
    "lambda": (S.lambda_lr(LR, lam), lambda o: L.LambdaLR(o, lam)),
    "multiplicative": (
        S.multiplicative_lr(LR, lambda e: 0.99),
        lambda o: L.MultiplicativeLR(o, lambda e: 0.99),
    ),
    "multiplicative_varying": (
        S.multiplicative_lr(LR, lambda e: 1.0 - 0.001 * (e % 7)),
        lambda o: L.MultiplicativeLR(o, lambda e: 1.0 - 0.001 * (e % 7)),
    ),
    "sequential": (
        S.sequential_lr([S.linear_lr(LR, 0.1, 1.0, 10), S.exponential_lr(LR, 0.96)], [10]),
        lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, 10), L.ExponentialLR(o, 0.96)], [10]),
    ),
    "sequential_3": (
        S.sequential_lr(
            [S.constant_lr(LR, 0.5, 5), S.cosine_annealing_lr(LR, 40), S.step_lr(LR, 9, 0.7)],
            [20, 90],
        ),
        lambda o: L.SequentialLR(
            o, [L.ConstantLR(o, 0.5, 5), L.CosineAnnealingLR(o, 40), L.StepLR(o, 9, 0.7)], [20, 90]
        ),
    ),
    "chained": (
        S.chained_scheduler([S.constant_lr(LR, 0.5, 20), S.exponential_lr(LR, 0.98)]),
        lambda o: L.ChainedScheduler([L.ConstantLR(o, 0.5, 20), L.ExponentialLR(o, 0.98)]),
    ),
    "chained_mixed": (
        S.chained_scheduler(
            [
                S.step_lr(LR, 15, 0.5),
                S.cosine_annealing_lr(LR, 30, 0.001),
                S.linear_lr(LR, 0.5, 1.0, 10),
            ]
        ),
        lambda o: L.ChainedScheduler(
            [L.StepLR(o, 15, 0.5), L.CosineAnnealingLR(o, 30, 0.001), L.LinearLR(o, 0.5, 1.0, 10)]
        ),
    ),
    "swalr": (S.swalr(LR, 0.02, 10), lambda o: SWALR(o, 0.02, 10)),
    "swalr_linear_0": (S.swalr(LR, 0.02, 0, "linear"), lambda o: SWALR(o, 0.02, 0, "linear")),
}

# Composition quirks: SequentialLR restarts MultiplicativeLR (times lambda(0)) and SWALR from the
# current lr; milestone 0 and duplicate milestones; ChainedScheduler with members that overwrite
# the lr (CyclicLR's first step reads the initial_lr another scheduler set) or act affinely.
CASES.update(
    {
        "sequential_multiplicative": (
            S.sequential_lr(
                [S.exponential_lr(LR, 0.9), S.multiplicative_lr(LR, lambda e: 0.99 - 0.001 * e)],
                [10],
            ),
            lambda o: L.SequentialLR(
                o,
                [L.ExponentialLR(o, 0.9), L.MultiplicativeLR(o, lambda e: 0.99 - 0.001 * e)],
                [10],
            ),
        ),
        "sequential_swalr": (
            S.sequential_lr([S.cosine_annealing_lr(LR, 30), S.swalr(LR, 0.02, 10)], [20]),
            lambda o: L.SequentialLR(o, [L.CosineAnnealingLR(o, 30), SWALR(o, 0.02, 10)], [20]),
        ),
        "sequential_zero_duplicate": (
            S.sequential_lr(
                [
                    S.step_lr(LR, 3),
                    S.linear_lr(LR, 0.2, 1.0, 8),
                    S.constant_lr(LR, 0.5, 4),
                    S.exponential_lr(LR, 0.95),
                ],
                [0, 30, 30],
            ),
            lambda o: L.SequentialLR(
                o,
                [
                    L.StepLR(o, 3),
                    L.LinearLR(o, 0.2, 1.0, 8),
                    L.ConstantLR(o, 0.5, 4),
                    L.ExponentialLR(o, 0.95),
                ],
                [0, 30, 30],
            ),
        ),
        "sequential_overwriting": (
            S.sequential_lr(
                [S.lambda_lr(LR, lam), S.cyclic_lr(0.01, 0.1, 7), S.multi_step_lr(LR, [0, 3, 50])],
                [40, 90],
            ),
            lambda o: L.SequentialLR(
                o,
                [L.LambdaLR(o, lam), L.CyclicLR(o, 0.01, 0.1, 7), L.MultiStepLR(o, [0, 3, 50])],
                [40, 90],
            ),
        ),
        "sequential_warm_restarts": (
            S.sequential_lr(
                [S.constant_lr(LR, 0.1, 5), S.cosine_annealing_warm_restarts(LR, 7, 2)], [5]
            ),
            lambda o: L.SequentialLR(
                o, [L.ConstantLR(o, 0.1, 5), L.CosineAnnealingWarmRestarts(o, 7, 2)], [5]
            ),
        ),
        "chained_lambda_first": (
            S.chained_scheduler([S.lambda_lr(LR, lam), S.exponential_lr(LR, 0.98)]),
            lambda o: L.ChainedScheduler([L.LambdaLR(o, lam), L.ExponentialLR(o, 0.98)]),
        ),
        "chained_cyclic_middle": (
            S.chained_scheduler(
                [S.step_lr(LR, 5, 0.5), S.cyclic_lr(0.01, 0.1, 7), S.linear_lr(LR, 0.2, 1.0, 10)]
            ),
            lambda o: L.ChainedScheduler(
                [L.StepLR(o, 5, 0.5), L.CyclicLR(o, 0.01, 0.1, 7), L.LinearLR(o, 0.2, 1.0, 10)]
            ),
        ),
        "chained_multiplicative_cosine": (
            S.chained_scheduler(
                [S.multiplicative_lr(LR, lambda e: 0.995), S.cosine_annealing_lr(LR, 40)]
            ),
            lambda o: L.ChainedScheduler(
                [L.MultiplicativeLR(o, lambda e: 0.995), L.CosineAnnealingLR(o, 40)]
            ),
        ),
        "chained_swalr": (
            S.chained_scheduler([S.exponential_lr(LR, 0.99), S.swalr(LR, 0.02, 10)]),
            lambda o: L.ChainedScheduler([L.ExponentialLR(o, 0.99), SWALR(o, 0.02, 10)]),
        ),
        "chained_polynomial_to_zero": (
            S.chained_scheduler([S.polynomial_lr(LR, 20, 2.0), S.exponential_lr(LR, 0.99)]),
            lambda o: L.ChainedScheduler([L.PolynomialLR(o, 20, 2.0), L.ExponentialLR(o, 0.99)]),
        ),
        "multi_step_empty": (S.multi_step_lr(LR, []), lambda o: L.MultiStepLR(o, [])),
        "cosine_T1": (S.cosine_annealing_lr(LR, 1), lambda o: L.CosineAnnealingLR(o, 1)),
        "swalr_long_linear": (
            S.swalr(LR, 0.05, 150, "linear"),
            lambda o: SWALR(o, 0.05, 150, "linear"),
        ),
    }
)


MOMENTUM_CASES = {
    "one_cycle": (
        S.one_cycle_momentum(1.0, total_steps=T),
        lambda o: L.OneCycleLR(o, 1.0, total_steps=T),
        "sgd",
    ),
    "one_cycle_3_adam": (
        S.one_cycle_momentum(
            0.5, total_steps=T, three_phase=True, base_momentum=0.8, max_momentum=0.9
        ),
        lambda o: L.OneCycleLR(
            o, 0.5, total_steps=T, three_phase=True, base_momentum=0.8, max_momentum=0.9
        ),
        "adam",
    ),
    "cyclic": (S.cyclic_momentum(0.01, 0.1, 15), lambda o: L.CyclicLR(o, 0.01, 0.1, 15), "sgd"),
    "cyclic_exp": (
        S.cyclic_momentum(0.01, 0.1, 8, mode="exp_range", gamma=0.99),
        lambda o: L.CyclicLR(o, 0.01, 0.1, 8, mode="exp_range", gamma=0.99),
        "sgd",
    ),
}


def rel(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def traced(schedule):
    # vmap traces t (a batched tracer) without paying a compile per schedule.
    return np.asarray(jax.vmap(schedule)(jnp.arange(T + 1)))


@pytest.mark.parametrize("name", list(CASES))
def test_lr_schedule_matches_torch(name):
    schedule, make = CASES[name]
    expected, _ = torch_sequence(make)
    python = np.array([float(schedule(t)) for t in range(T + 1)])
    assert rel(python, expected) <= 1e-12
    assert rel(traced(schedule), expected) <= 1e-12


@pytest.mark.parametrize("name", list(MOMENTUM_CASES))
def test_momentum_schedule_matches_torch(name):
    schedule, make, optimizer = MOMENTUM_CASES[name]
    _, expected = torch_sequence(make, optimizer)
    python = np.array([float(schedule(t)) for t in range(T + 1)])
    assert rel(python, expected) <= 1e-12
    assert rel(traced(schedule), expected) <= 1e-12


def test_multiplicative_python_lambda_with_python_t():
    """A plain Python lambda (branching on the epoch) works for Python-int t."""
    fn = lambda e: 0.99 if e % 2 else 1.0  # noqa: E731
    schedule = S.multiplicative_lr(LR, fn)
    expected, _ = torch_sequence(lambda o: L.MultiplicativeLR(o, fn), steps=60)
    python = np.array([float(schedule(t)) for t in range(61)])
    assert rel(python, expected) <= 1e-12


def test_one_cycle_answers_at_total_steps():
    schedule = S.one_cycle_lr(0.1, total_steps=10)
    expected, _ = torch_sequence(lambda o: L.OneCycleLR(o, 0.1, total_steps=10), steps=10)
    assert float(schedule(10)) == pytest.approx(expected[10], rel=1e-12)
    assert expected[10] > expected[9]  # torch's lr rises again there


def test_schedules_compose_into_optimizer_and_compile_once():
    """SGD driven by OneCycle lr and momentum schedules follows torch's SGD + OneCycleLR."""
    steps = 60
    lr_s = S.one_cycle_lr(0.5, total_steps=steps)
    mom_s = S.one_cycle_momentum(0.5, total_steps=steps)
    tx = optx.sgd(lr=lr_s, momentum=mom_s)
    params = jnp.asarray(np.linspace(-1, 1, 5))
    state = tx.init(params)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        grads = jnp.sin(3 * params) + params
        updates, state = tx.update(grads, state, params)
        return optx.apply_updates(params, updates), state

    p = torch.tensor(np.linspace(-1, 1, 5), requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.5, momentum=0.9)
    sched = L.OneCycleLR(opt, 0.5, total_steps=steps)
    for _ in range(steps):
        params, state = step(params, state)
        p.grad = torch.sin(3 * p.detach()) + p.detach()
        opt.step()
        sched.step()
    assert len(traces) == 1
    np.testing.assert_allclose(np.asarray(params), p.detach().numpy(), rtol=1e-10)
    assert float(optx.get_hyperparams(state)["lr"]) == pytest.approx(
        sched.get_last_lr()[0], rel=1e-12
    )


def test_invalid_arguments():
    with pytest.raises(ValueError):
        S.one_cycle_lr(0.1)
    with pytest.raises(ValueError):
        S.cyclic_lr(0.01, 0.1, mode="bogus")
    with pytest.raises(ValueError):
        S.cosine_annealing_warm_restarts(0.1, 0)
    with pytest.raises(ValueError):
        S.sequential_lr([S.step_lr(0.1, 2)], [3])
    assert math.isfinite(float(S.step_lr(0.1, 2)(0)))
