"""The scheduler cases the scheduler tests share: every class of ``torch.optim.lr_scheduler``
(and ``swa_utils.SWALR``), each built the same way on an optx and a torch optimizer.

``CASES[name] = (optimizer class, build)``, ``build(M, S, opt)`` taking one side's
``lr_scheduler`` module ``M`` and ``swa_utils`` module ``S``. The lambdas given to LambdaLR and
MultiplicativeLR are module-level functions, so every case pickles (as in torch).
"""

from __future__ import annotations

import jax.numpy as jnp
import torch

import optx.optim as O

STEPS = 60


def optimizers(cls="SGD", **kw):
    """The same two-group optimizer in optx (float32 params) and torch."""
    kw = kw or ({"lr": 0.01} if cls == "Adam" else {"lr": 0.1, "momentum": 0.9})
    groups_o = [{"params": jnp.zeros(2, jnp.float32)},
                {"params": jnp.zeros(1, jnp.float32), "lr": 0.03}]
    groups_t = [{"params": [torch.zeros(2)]}, {"params": [torch.zeros(1)], "lr": 0.03}]
    return getattr(O, cls)(groups_o, **kw), getattr(torch.optim, cls)(groups_t, **kw)


def lam(e):
    return 0.93**e


def mult(e):
    return 0.97 if e % 3 else 0.91


CASES = {
    "LambdaLR": ("SGD", lambda M, S, o: M.LambdaLR(o, lam)),
    "MultiplicativeLR": ("SGD", lambda M, S, o: M.MultiplicativeLR(o, mult)),
    "StepLR": ("SGD", lambda M, S, o: M.StepLR(o, step_size=4, gamma=0.7)),
    "MultiStepLR": ("SGD", lambda M, S, o: M.MultiStepLR(o, [3, 10, 10, 30], gamma=0.7)),
    "ConstantLR": ("SGD", lambda M, S, o: M.ConstantLR(o, factor=0.3, total_iters=7)),
    "LinearLR": ("SGD", lambda M, S, o: M.LinearLR(o, 0.3, 0.9, total_iters=17)),
    "ExponentialLR": ("SGD", lambda M, S, o: M.ExponentialLR(o, gamma=0.93)),
    "PolynomialLR": ("SGD", lambda M, S, o: M.PolynomialLR(o, total_iters=40, power=1.7)),
    "CosineAnnealingLR": ("SGD", lambda M, S, o: M.CosineAnnealingLR(o, T_max=13, eta_min=1e-3)),
    "CosineAnnealingWarmRestarts": (
        "SGD", lambda M, S, o: M.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=1e-3)),
    "CyclicLR": ("SGD", lambda M, S, o: M.CyclicLR(o, 0.01, 0.1, step_size_up=5,
                                                     mode="triangular2")),
    "CyclicLR-exp_range-adam": ("Adam", lambda M, S, o: M.CyclicLR(
        o, 0.001, 0.01, step_size_up=4, step_size_down=7, mode="exp_range", gamma=0.97)),
    "OneCycleLR": ("SGD", lambda M, S, o: M.OneCycleLR(o, max_lr=0.3, total_steps=STEPS + 1)),
    "OneCycleLR-three_phase-adam": ("Adam", lambda M, S, o: M.OneCycleLR(
        o, max_lr=0.01, total_steps=STEPS + 1, three_phase=True, anneal_strategy="linear")),
    "SequentialLR": ("SGD", lambda M, S, o: M.SequentialLR(
        o, [M.LinearLR(o, 0.1, total_iters=9), M.CosineAnnealingLR(o, T_max=30),
            M.MultiplicativeLR(o, mult)], milestones=[9, 40])),
    "SequentialLR-multistep": ("SGD", lambda M, S, o: M.SequentialLR(
        o, [M.MultiStepLR(o, [2, 4, 4], 0.5), M.ExponentialLR(o, 0.9)], milestones=[6])),
    "ChainedScheduler": ("SGD", lambda M, S, o: M.ChainedScheduler(
        [M.CosineAnnealingLR(o, T_max=11), M.ExponentialLR(o, 0.97), M.StepLR(o, 5, 0.7)])),
    "ChainedScheduler-multistep": ("SGD", lambda M, S, o: M.ChainedScheduler(
        [M.MultiStepLR(o, [3, 5], 0.5), M.ConstantLR(o, 0.5, 4)])),
    "SWALR": ("SGD", lambda M, S, o: S.SWALR(o, swa_lr=0.02, anneal_epochs=23)),
    "SWALR-linear": ("SGD", lambda M, S, o: S.SWALR(o, swa_lr=[0.02, 0.007], anneal_epochs=9,
                                                     anneal_strategy="linear")),
}


def groups(opt):
    """What a scheduler writes into the groups: lr, momentum, beta1."""
    return [(g["lr"], g.get("momentum"), g["betas"][0] if "betas" in g else None)
            for g in opt.param_groups]


def plain(x):
    """A state_dict without its callables (the lambdas torch and optx hold are different
    objects), for comparing optx's with torch's."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items() if not callable(v)}
    if isinstance(x, (list, tuple)):
        return type(x)(plain(v) for v in x)
    return x
