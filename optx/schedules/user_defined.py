"""Schedules from a user's function: torch's LambdaLR and MultiplicativeLR.

The formulas are shared with the ``optx.optim.lr_scheduler`` classes; ``m`` is the arithmetic
(see :mod:`optx.schedules.torch_schedule`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from optx.schedules.torch_schedule import HOST, TorchSchedule, as_float


def lambda_lr_value(m: Any, base_lr: Any, e: Any, lr_lambda: Callable[[Any], Any]) -> Any:
    return base_lr * lr_lambda(e)


def multiplicative_lr_chainable(m: Any, lr: Any, e: Any, initial: Any,
                                lr_lambda: Callable[[Any], Any]) -> Any:
    """torch's ``get_lr``: the current lr times ``lr_lambda(e)``, except at construction."""
    return m.cond(initial, lambda: lr, lambda: lr * lr_lambda(e))


def lambda_lr(lr: float, lr_lambda: Callable[[Any], Any]) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.LambdaLR``: :math:`\text{lr} \cdot \lambda(t)`, applied at
    construction too (``t = 0``).

    Args:
      lr: the initial learning rate.
      lr_lambda: the factor as a function of the step count; it must be jax-traceable for a
        traced ``t`` (a plain Python function works for a Python-int ``t``).

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.lambda_lr(1.0, lambda t: 1 / (t + 1))
      >>> [schedule(t) for t in range(4)]
      [1.0, 0.5, 0.3333333333333333, 0.25]
    """
    return TorchSchedule(lambda m, t: lambda_lr_value(m, lr, t, lr_lambda), lr)


def multiplicative_lr(lr: float, lr_lambda: Callable[[Any], Any]) -> TorchSchedule:
    r"""``torch.optim.lr_scheduler.MultiplicativeLR``:
    :math:`\text{lr} \prod_{e=1}^{t} \lambda(e)` (nothing is applied at construction).

    A product over the steps: O(t) (a ``fori_loop`` for a traced ``t``).

    Args:
      lr: the initial learning rate.
      lr_lambda: the factor applied at each step, as a function of the step count; it must be
        jax-traceable for a traced ``t``.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.multiplicative_lr(1.0, lambda t: 0.5)
      >>> [schedule(t) for t in range(4)]
      [1.0, 0.5, 0.25, 0.125]
    """

    def formula(m, t):
        # torch's recursion from construction: nothing at e = 0, then lr * lambda(e).
        if m is HOST:
            value = lr
            for e in range(1, t + 1):
                value = multiplicative_lr_chainable(m, value, e, False, lr_lambda)
            return value
        return jax.lax.fori_loop(
            1, t + 1,
            lambda e, v: as_float(multiplicative_lr_chainable(m, v, e, False, lr_lambda)),
            as_float(lr),
        )

    return TorchSchedule(
        formula, lr,
        lambda m, x, e: multiplicative_lr_chainable(m, x, e, e == 0, lr_lambda),
        multiplicative=True,
        # SequentialLR's restart (_update_lr(0), not an initial step) multiplies by lambda(0).
        rebase=lambda lr0: multiplicative_lr(float(lr0 * lr_lambda(0)), lr_lambda),
    )


__all__ = ["lambda_lr", "multiplicative_lr"]
