"""The schedule type behind every ``optx.schedules`` function, and the two kinds of arithmetic
its formulas run in.

A torch lr scheduler is a recursion: each ``scheduler.step()`` maps the group's current lr to a
new one (``get_lr``, torch's *chainable* form), constructing it performs the first step, and
``step(epoch)`` uses a closed form (``_get_closed_form_lr``) where torch has one. optx writes
each of these formulas once, as a function whose first argument ``m`` is the arithmetic to run
it in:

* :data:`HOST`: Python floats and ints, branch by branch, exactly as torch computes (the
  ``optx.optim.lr_scheduler`` classes use it, so their values are torch's bit for bit whatever
  ``jax_enable_x64`` is, and a Python-int ``t`` given to a schedule gets it too);
* :data:`TRACED`: ``jax.numpy`` in the default float dtype, both branches computed and selected
  with ``where`` (a schedule called with a traced count, inside jit).

A formula takes its branches as ``m.cond(pred, lambda: a, lambda: b)``, so that the branch
torch does not take is never evaluated on the host (where it may divide by zero).
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from optx.hyperparams import float_dtype


def as_float(x: Any) -> Any:
    """``x`` as an array of the default float dtype (float64 under x64, else float32)."""
    return jnp.asarray(x, dtype=float_dtype())


class HostMath:
    """Python scalar arithmetic, as torch's schedulers do it."""

    pi = math.pi
    cos = staticmethod(math.cos)
    floor = staticmethod(math.floor)
    minimum = staticmethod(min)
    maximum = staticmethod(max)

    @staticmethod
    def num(x: Any) -> Any:
        """A count entering float arithmetic: kept as it is (Python promotes as torch does)."""
        return x

    @staticmethod
    def where(pred: Any, a: Any, b: Any) -> Any:
        return a if pred else b

    @staticmethod
    def cond(pred: Any, a: Callable[[], Any], b: Callable[[], Any]) -> Any:
        return a() if pred else b()

    @staticmethod
    def clip(x: Any, lo: Any, hi: Any) -> Any:
        return max(lo, min(hi, x))

    @staticmethod
    def power(base: Any, exponent: Any) -> Any:
        return base**exponent

    @staticmethod
    def count_le(sorted_values: Sequence[int], e: Any) -> int:
        return bisect_right(sorted_values, e)

    @staticmethod
    def count_eq(values: Sequence[int], e: Any) -> int:
        return list(values).count(e)


class TracedMath:
    """``jax.numpy`` arithmetic in the default float dtype, for a traced step count."""

    pi = math.pi
    cos = staticmethod(jnp.cos)
    floor = staticmethod(jnp.floor)
    minimum = staticmethod(jnp.minimum)
    maximum = staticmethod(jnp.maximum)
    num = staticmethod(as_float)
    where = staticmethod(jnp.where)

    @staticmethod
    def cond(pred: Any, a: Callable[[], Any], b: Callable[[], Any]) -> Any:
        return jnp.where(pred, a(), b())

    @staticmethod
    def clip(x: Any, lo: Any, hi: Any) -> Any:
        return jnp.clip(x, lo, hi)

    @staticmethod
    def power(base: Any, exponent: Any) -> Any:
        """``base ** exponent`` for a Python-float ``base`` (a decay factor such as ``gamma``).

        ``jnp.power`` would round ``base`` to the float dtype first, and that error grows with
        the exponent: ``0.99999`` in float32 is 1.7 % off after 1.26 M steps. The logarithm
        taken in Python's double keeps the result within a few float32 ulps of torch's.
        """
        if isinstance(base, (int, float)) and base > 0:
            return jnp.exp(as_float(exponent) * math.log(base))
        return base ** as_float(exponent)

    @staticmethod
    def count_le(sorted_values: Sequence[int], e: Any) -> Any:
        if not sorted_values:
            return jnp.zeros((), jnp.int32)
        return jnp.sum(jnp.asarray(sorted_values, jnp.int32) <= e)

    @staticmethod
    def count_eq(values: Sequence[int], e: Any) -> Any:
        if not values:
            return jnp.zeros((), jnp.int32)
        return jnp.sum(jnp.asarray(values, jnp.int32) == e)


HOST = HostMath()
TRACED = TracedMath()


def math_for(t: Any) -> Any:
    """:data:`HOST` for a Python (or NumPy) integer, :data:`TRACED` for anything else."""
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        return HOST
    return TRACED


@dataclasses.dataclass(frozen=True)
class TorchSchedule:
    """A learning-rate (or momentum) schedule ``t -> value`` with torch's recursion attached.

    Call it with the number of ``scheduler.step()`` calls made so far (0 right after
    construction): a Python int gives a Python float computed on the host as torch computes, a
    traced integer gives an array of the default float dtype.

    The functions of :mod:`optx.schedules` build these; the fields are what
    :func:`~optx.schedules.sequential_lr` and :func:`~optx.schedules.chained_scheduler` need to
    compose schedules as torch composes schedulers.

    Attributes:
        formula: ``formula(m, t)``, the value after ``t`` steps in the arithmetic ``m``
            (:data:`~optx.schedules.torch_schedule.HOST` floats or traced arrays).
        base: the group's lr before the scheduler was built (its ``initial_lr``).
        chainable: torch's ``get_lr`` of a fresh scheduler at epoch ``e``,
            ``chainable(m, lr, e) -> new lr``; ``e = 0`` is the step made at construction.
            ``None``: the value ignores the current lr (``formula(m, e)`` is ``get_lr``).
        multiplicative: ``get_lr`` multiplies the current lr by
            ``formula(e) / formula(e - 1)``: a chain of such schedules is the product of their
            factors.
        construction_reads_initial_lr: at its construction step the lr becomes the optimizer's
            initial lr whatever earlier schedulers of a chain did (CyclicLR reads ``base_lrs``
            before replacing them).
        rebase: the same schedule built from another lr, for the schedulers whose epoch-0
            ``get_lr`` keeps the current lr (MultiplicativeLR, SWALR): ``sequential_lr``
            restarts them from the lr the previous child reached rather than from their base.
    """

    formula: Callable[[Any, Any], Any]
    base: float
    chainable: Callable[[Any, Any, Any], Any] | None = None
    multiplicative: bool = False
    construction_reads_initial_lr: bool = False
    rebase: Callable[[float], TorchSchedule] | None = None

    def __call__(self, t: Any) -> Any:
        m = math_for(t)
        if m is HOST:
            value = self.formula(HOST, int(t))
            if isinstance(value, jax.core.Tracer):
                # An argument of the schedule is traced (jax.grad w.r.t. its peak lr): the
                # host formula ran on it, and the value stays differentiable.
                return as_float(value)
            return float(value)
        return as_float(self.formula(TRACED, jnp.asarray(t)))

    def get_lr(self, m: Any, lr: Any, e: Any) -> Any:
        """torch's ``get_lr`` at epoch ``e`` applied to the current ``lr``, in arithmetic ``m``.

        Args:
            m: the arithmetic: :data:`~optx.schedules.torch_schedule.HOST` (Python floats, as
                torch computes) or :data:`~optx.schedules.torch_schedule.TRACED` (arrays).
            lr: the group's current lr.
            e: the epoch (``last_epoch``) the value is for.

        Returns:
            The new lr.
        """
        if self.chainable is not None:
            return self.chainable(m, lr, e)
        return self.formula(m, e)

    def __repr__(self) -> str:
        return f"<optx schedule from {self.base}>"
