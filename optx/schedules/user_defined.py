"""Schedules from a user's function: torch's LambdaLR and MultiplicativeLR."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from optx.schedules.torch_schedule import ABSOLUTE, MULTIPLICATIVE, TorchSchedule, as_float


def lambda_lr(lr: float, lr_lambda: Callable[[Any], Any]) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.LambdaLR``: :math:`\text{lr} \cdot \lambda(t)`, applied at
    construction too (``t = 0``). ``lr_lambda`` must be jax-traceable for a traced ``t``; a plain
    Python function works for Python-int ``t``."""
    return TorchSchedule(lambda t: lr * as_float(lr_lambda(t)), lr, ABSOLUTE, name="lambda_lr")


def multiplicative_lr(lr: float, lr_lambda: Callable[[Any], Any]) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.MultiplicativeLR``:
    :math:`\text{lr} \prod_{e=1}^{t} \lambda(e)` (nothing is applied at construction).

    A product over the steps: O(t) for a traced ``t`` (a ``fori_loop``), whose ``lr_lambda``
    must then be jax-traceable."""

    def closed_form(t):
        if isinstance(t, int):
            value = as_float(lr)
            for e in range(1, t + 1):
                value = value * as_float(lr_lambda(e))
            return value
        return jax.lax.fori_loop(
            1, jnp.asarray(t) + 1, lambda e, v: v * as_float(lr_lambda(e)), as_float(lr)
        )

    def affine(e):
        return jnp.where(jnp.asarray(e) > 0, as_float(lr_lambda(e)), 1.0), 0.0

    # Its recursion multiplies by lambda(e); given explicitly, so torch's recursion costs O(1).
    return TorchSchedule(
        closed_form, lr, MULTIPLICATIVE, affine, name="multiplicative_lr",
        # SequentialLR's restart (_update_lr(0), not an initial step) multiplies by lambda(0).
        rebase=lambda lr0: multiplicative_lr(float(lr0 * lr_lambda(0)), lr_lambda),
    )
