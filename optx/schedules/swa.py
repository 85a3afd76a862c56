"""Stochastic weight averaging's lr: torch's ``swa_utils.SWALR``."""

from __future__ import annotations

import math

import jax.numpy as jnp

from optx.schedules.torch_schedule import AFFINE, TorchSchedule, as_float


def swalr(
    lr: float, swa_lr: float, anneal_epochs: int = 10, anneal_strategy: str = "cos"
) -> TorchSchedule:
    r"""``torch.optim.swa_utils.SWALR``: anneals from ``lr`` to ``swa_lr`` over
    ``anneal_epochs`` steps (cosine or linear), then stays at ``swa_lr``."""
    if anneal_strategy not in ["cos", "linear"]:
        raise ValueError(
            "anneal_strategy must be one of 'cos' or 'linear', "
            f"instead got {anneal_strategy}"
        )
    if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
        raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")

    def anneal(x):
        return (1 - jnp.cos(math.pi * x)) / 2 if anneal_strategy == "cos" else x

    def alpha_at(step):
        return anneal(jnp.clip(as_float(step) / max(1, anneal_epochs), 0.0, 1.0))

    def effective(e):
        e = jnp.asarray(e)
        return jnp.maximum(1, e) if anneal_epochs == 0 else e

    def closed_form(t):
        alpha = alpha_at(effective(t))
        return swa_lr * alpha + lr * (1 - alpha)

    def affine(e):
        step = effective(e)
        prev_alpha, alpha = alpha_at(step - 1), alpha_at(step)
        # torch recovers the lr before annealing from the current one, then re-anneals.
        done = prev_alpha == 1
        a = jnp.where(done, 0.0, (1 - alpha) / jnp.where(done, 1.0, 1 - prev_alpha))
        b = jnp.where(done, swa_lr, swa_lr * alpha - a * prev_alpha * swa_lr)
        return a, b

    return TorchSchedule(
        closed_form, lr, AFFINE, affine, name="swalr",
        rebase=lambda lr0: swalr(lr0, swa_lr, anneal_epochs, anneal_strategy),
    )
