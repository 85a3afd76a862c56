"""Bad scheduler arguments: the same exception type and message as torch, from the
``optx.optim.lr_scheduler`` class and from the functional ``optx.schedules`` schedule.

Each case builds the scheduler on both sides (then steps it a few times, where torch's error
comes at a step) and compares what is raised.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import pytest
import torch
import torch.optim.lr_scheduler as TL
from torch.optim import swa_utils as TS

import optx
import optx.optim as O
import optx.schedules as S
from optx.optim import lr_scheduler as L
from optx.optim import swa_utils as OS


def _optimizers(cls="SGD", **kw):
    kw = kw or {"lr": 0.1, "momentum": 0.9}
    groups_o = [{"params": jnp.zeros(2)}, {"params": jnp.zeros(1), "lr": 0.05}]
    groups_t = [{"params": [torch.zeros(2)]}, {"params": [torch.zeros(1)], "lr": 0.05}]
    return getattr(O, cls)(groups_o, **kw), getattr(torch.optim, cls)(groups_t, **kw)


def _outcome(build, steps=3):
    """(type name, message) of what building and stepping raises, or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = build()
            for _ in range(steps):
                if callable(s):  # a functional schedule: evaluate it
                    s(_)
                else:
                    s.step()
    except Exception as e:  # noqa: BLE001  # the point is to compare whatever is raised
        return type(e).__name__, str(e)
    return None


# name -> (builder(M, S, opt) of one side's scheduler, functional schedule builder or None).
# M is the lr_scheduler module and W the swa_utils module of one side.
CASES = {
    "LambdaLR-lambdas": (lambda M, W, o: M.LambdaLR(o, [lambda e: 1.0]), None),
    "MultiplicativeLR-lambdas": (lambda M, W, o: M.MultiplicativeLR(o, [lambda e: 1.0]), None),
    "MultiplicativeLR-not-callable": (lambda M, W, o: M.MultiplicativeLR(o, 0.9), None),
    "StepLR-step_size-0": (lambda M, W, o: M.StepLR(o, 0), None),
    "StepLR-gamma-str": (lambda M, W, o: M.StepLR(o, 1, gamma="a"), None),
    "MultiStepLR-int": (lambda M, W, o: M.MultiStepLR(o, 5), None),
    "ConstantLR-factor-big": (lambda M, W, o: M.ConstantLR(o, factor=1.5),
                              lambda: S.constant_lr(0.1, factor=1.5)),
    "ConstantLR-factor-negative": (lambda M, W, o: M.ConstantLR(o, factor=-0.1),
                                   lambda: S.constant_lr(0.1, factor=-0.1)),
    "LinearLR-start-0": (lambda M, W, o: M.LinearLR(o, start_factor=0),
                         lambda: S.linear_lr(0.1, start_factor=0)),
    "LinearLR-end-2": (lambda M, W, o: M.LinearLR(o, end_factor=2.0),
                       lambda: S.linear_lr(0.1, end_factor=2.0)),
    "ExponentialLR-gamma-str": (lambda M, W, o: M.ExponentialLR(o, gamma="a"), None),
    "PolynomialLR-total_iters-str": (lambda M, W, o: M.PolynomialLR(o, total_iters="x"), None),
    "CosineAnnealingLR-T_max-0": (lambda M, W, o: M.CosineAnnealingLR(o, T_max=0), None),
    "WarmRestarts-T_0-0": (lambda M, W, o: M.CosineAnnealingWarmRestarts(o, T_0=0),
                           lambda: S.cosine_annealing_warm_restarts(0.1, T_0=0)),
    "WarmRestarts-T_0-float": (lambda M, W, o: M.CosineAnnealingWarmRestarts(o, T_0=2.5),
                               lambda: S.cosine_annealing_warm_restarts(0.1, T_0=2.5)),
    "WarmRestarts-T_mult-0": (lambda M, W, o: M.CosineAnnealingWarmRestarts(o, 3, T_mult=0),
                              lambda: S.cosine_annealing_warm_restarts(0.1, 3, T_mult=0)),
    "WarmRestarts-eta_min-str": (
        lambda M, W, o: M.CosineAnnealingWarmRestarts(o, 3, eta_min="x"),
        lambda: S.cosine_annealing_warm_restarts(0.1, 3, eta_min="x")),
    "CyclicLR-mode": (lambda M, W, o: M.CyclicLR(o, 0.01, 0.1, mode="bogus"),
                      lambda: S.cyclic_lr(0.01, 0.1, mode="bogus")),
    "CyclicLR-base_lr-length": (lambda M, W, o: M.CyclicLR(o, [0.01], 0.1), None),
    "CyclicLR-max_lr-length": (lambda M, W, o: M.CyclicLR(o, 0.01, [0.1, 0.2, 0.3]), None),
    "CyclicLR-momentum-length": (
        lambda M, W, o: M.CyclicLR(o, 0.01, 0.1, base_momentum=[0.8], max_momentum=[0.9]),
        None),
    "OneCycleLR-total_steps-0": (lambda M, W, o: M.OneCycleLR(o, 0.1, total_steps=0),
                                 lambda: S.one_cycle_lr(0.1, total_steps=0)),
    "OneCycleLR-epochs-0": (
        lambda M, W, o: M.OneCycleLR(o, 0.1, epochs=0, steps_per_epoch=10),
        lambda: S.one_cycle_lr(0.1, epochs=0, steps_per_epoch=10)),
    "OneCycleLR-steps_per_epoch-0": (
        lambda M, W, o: M.OneCycleLR(o, 0.1, epochs=3, steps_per_epoch=0),
        lambda: S.one_cycle_lr(0.1, epochs=3, steps_per_epoch=0)),
    "OneCycleLR-no-length": (lambda M, W, o: M.OneCycleLR(o, 0.1),
                             lambda: S.one_cycle_lr(0.1)),
    "OneCycleLR-pct_start": (lambda M, W, o: M.OneCycleLR(o, 0.1, 10, pct_start=1.5),
                             lambda: S.one_cycle_lr(0.1, 10, pct_start=1.5)),
    "OneCycleLR-pct_start-int": (lambda M, W, o: M.OneCycleLR(o, 0.1, 10, pct_start=1),
                                 lambda: S.one_cycle_lr(0.1, 10, pct_start=1)),
    "OneCycleLR-anneal": (lambda M, W, o: M.OneCycleLR(o, 0.1, 10, anneal_strategy="x"),
                          lambda: S.one_cycle_lr(0.1, 10, anneal_strategy="x")),
    "OneCycleLR-momentum-length": (
        lambda M, W, o: M.OneCycleLR(o, 0.1, 10, base_momentum=[0.8], max_momentum=[0.9]),
        None),
    "OneCycleLR-past-the-end": (lambda M, W, o: M.OneCycleLR(o, 0.1, total_steps=2), None),
    "SequentialLR-empty": (lambda M, W, o: M.SequentialLR(o, [], []),
                           lambda: S.sequential_lr([], [])),
    "SequentialLR-milestones": (
        lambda M, W, o: M.SequentialLR(o, [M.StepLR(o, 2), M.StepLR(o, 3)], [1, 2]),
        lambda: S.sequential_lr([S.step_lr(0.1, 2), S.step_lr(0.1, 3)], [1, 2])),
    "SequentialLR-plateau": (
        lambda M, W, o: M.SequentialLR(o, [M.StepLR(o, 2), M.ReduceLROnPlateau(o)], [1]), None),
    "SequentialLR-no-optimizer": (lambda M, W, o: M.SequentialLR(o, [object()], []), None),
    "ChainedScheduler-empty": (lambda M, W, o: M.ChainedScheduler([]),
                               lambda: S.chained_scheduler([])),
    "ChainedScheduler-plateau": (
        lambda M, W, o: M.ChainedScheduler([M.StepLR(o, 2), M.ReduceLROnPlateau(o)]), None),
    "ReduceLROnPlateau-factor": (lambda M, W, o: M.ReduceLROnPlateau(o, factor=1.0),
                                 lambda: optx.reduce_lr_on_plateau(factor=1.0)),
    "ReduceLROnPlateau-mode": (lambda M, W, o: M.ReduceLROnPlateau(o, mode="x"),
                               lambda: optx.reduce_lr_on_plateau(mode="x")),
    "ReduceLROnPlateau-threshold_mode": (
        lambda M, W, o: M.ReduceLROnPlateau(o, threshold_mode="x"),
        lambda: optx.reduce_lr_on_plateau(threshold_mode="x")),
    "ReduceLROnPlateau-min_lr-length": (
        lambda M, W, o: M.ReduceLROnPlateau(o, min_lr=[0.0]), None),
    "SWALR-anneal_strategy": (lambda M, W, o: W.SWALR(o, 0.05, anneal_strategy="x"),
                              lambda: S.swalr(0.1, 0.05, anneal_strategy="x")),
    "SWALR-anneal_epochs-negative": (lambda M, W, o: W.SWALR(o, 0.05, anneal_epochs=-1),
                                     lambda: S.swalr(0.1, 0.05, anneal_epochs=-1)),
    "SWALR-anneal_epochs-float": (lambda M, W, o: W.SWALR(o, 0.05, anneal_epochs=1.5),
                                  lambda: S.swalr(0.1, 0.05, anneal_epochs=1.5)),
    "SWALR-swa_lr-length": (lambda M, W, o: W.SWALR(o, [0.05]), None),
}

# Classes whose first argument torch checks to be an optimizer.
NOT_AN_OPTIMIZER = {
    "StepLR": lambda M, W, o: M.StepLR(o, 2),
    "CyclicLR": lambda M, W, o: M.CyclicLR(o, 0.01, 0.1),
    "OneCycleLR": lambda M, W, o: M.OneCycleLR(o, 0.1, 10),
    "ReduceLROnPlateau": lambda M, W, o: M.ReduceLROnPlateau(o),
    "LambdaLR": lambda M, W, o: M.LambdaLR(o, lambda e: 1.0),
    "SWALR": lambda M, W, o: W.SWALR(o, 0.05),
}


@pytest.mark.parametrize("name", list(CASES))
def test_class_raises_what_torch_raises(name):
    build, _ = CASES[name]
    o_opt, t_opt = _optimizers()
    want = _outcome(lambda: build(TL, TS, t_opt))
    got = _outcome(lambda: build(L, OS, o_opt))
    assert want is not None, "not a bad argument for torch"
    assert got == want


@pytest.mark.parametrize("name", [n for n, (_, f) in CASES.items() if f is not None])
def test_schedule_raises_what_torch_raises(name):
    build, functional = CASES[name]
    _, t_opt = _optimizers()
    assert _outcome(functional) == _outcome(lambda: build(TL, TS, t_opt))


@pytest.mark.parametrize("name", list(NOT_AN_OPTIMIZER))
def test_not_an_optimizer(name):
    build = NOT_AN_OPTIMIZER[name]
    assert _outcome(lambda: build(L, OS, object())) == _outcome(
        lambda: build(TL, TS, object()))


def test_mismatched_optimizer_message():
    """The message names the other optimizer by its repr, which differs between libraries."""
    o1, t1 = _optimizers()
    o2, t2 = _optimizers()
    got = _outcome(lambda: L.ChainedScheduler([L.StepLR(o1, 2), L.StepLR(o2, 2)]))
    want = _outcome(lambda: TL.ChainedScheduler([TL.StepLR(t1, 2), TL.StepLR(t2, 2)]))
    assert got is not None and want is not None
    assert got[0] == want[0]
    assert got[1].replace(str(o2), "<opt>") == want[1].replace(str(t2), "<opt>")


def test_one_cycle_epochs_zero_names_epochs():
    """issue 19: the adapter checked the length itself and said total_steps."""
    o_opt, _ = _optimizers()
    with pytest.raises(ValueError, match="^Expected positive integer epochs, but got 0$"):
        L.OneCycleLR(o_opt, max_lr=0.1, epochs=0, steps_per_epoch=10)


def test_warm_restarts_negative_epoch():
    o_opt, t_opt = _optimizers()
    o_s = L.CosineAnnealingWarmRestarts(o_opt, 3)
    t_s = TL.CosineAnnealingWarmRestarts(t_opt, 3)
    assert _outcome(lambda: o_s.step(-1), 0) == _outcome(lambda: t_s.step(-1), 0)
