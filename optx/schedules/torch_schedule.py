"""The schedule type behind every ``optx.schedules`` function.

A torch lr scheduler is a recursion: each ``scheduler.step()`` maps the group's current lr to a
new one (``get_lr``), and constructing it performs the first step. optx keeps both views of
each scheduler, written once:

* the closed form ``schedule(t)``: the lr that ``get_last_lr()`` reports after ``t`` steps, a
  pure function of the step count, jittable (``t`` a Python int or a traced integer);
* torch's recursion as an affine map ``lr -> a(e) * lr + b(e)`` for epoch ``e``
  (:meth:`TorchSchedule.step_map`), used where torch's recursion is observable: a
  :func:`~optx.schedules.chained_scheduler` of non-multiplicative members, and the
  ``optx.optim.lr_scheduler`` classes, where a manual edit of ``group['lr']`` composes with the
  schedule as in torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax.numpy as jnp

from optx.hyperparams import float_dtype

MULTIPLICATIVE = "multiplicative"  # get_lr = lr * r(e): the ratio of the closed form
ABSOLUTE = "absolute"  # get_lr ignores the current lr
AFFINE = "affine"  # get_lr = a(e) * lr + b(e), given explicitly


def as_float(x: Any) -> Any:
    return jnp.asarray(x, dtype=float_dtype())


@dataclasses.dataclass(frozen=True)
class TorchSchedule:
    """A learning-rate (or momentum) schedule ``t -> value`` with torch's recursion attached.

    Call it with the number of ``scheduler.step()`` calls made so far (0 right after
    construction). ``base`` is the group's lr before the scheduler was built (its
    ``initial_lr``).
    """

    closed_form: Callable[[Any], Any]
    base: float
    kind: str = MULTIPLICATIVE
    # torch's recursion, when it is not derived from the closed form (see step_map).
    affine: Callable[[Any], tuple[Any, Any]] | None = None
    name: str = "schedule"
    # The same schedule built from another lr, for the schedulers whose epoch-0 ``get_lr`` keeps
    # the current lr (MultiplicativeLR, SWALR): SequentialLR restarts them from the lr the
    # previous child reached rather than from their base.
    rebase: Callable[[float], TorchSchedule] | None = None

    def __call__(self, t: Any) -> Any:
        return self.closed_form(t)

    def step_map(self, e: Any) -> tuple[Any, Any]:
        """torch's ``get_lr`` at epoch ``e`` as ``(a, b)``: the new lr is ``a * lr + b``.

        ``e = 0`` is the step performed at construction.
        """
        if self.affine is not None:
            a, b = self.affine(e)
            return as_float(a), as_float(b)
        if self.kind == ABSOLUTE:
            return as_float(0.0), as_float(self.closed_form(e))
        cur = as_float(self.closed_form(e))
        prev = jnp.where(jnp.asarray(e) == 0, as_float(self.base),
                         as_float(self.closed_form(jnp.maximum(jnp.asarray(e) - 1, 0))))
        # A multiplicative schedule that reached 0 stays at 0 in torch's recursion.
        ratio = jnp.where(prev == 0, as_float(1.0), cur / jnp.where(prev == 0, 1.0, prev))
        return ratio, as_float(0.0)

    def __repr__(self) -> str:
        return f"<optx schedule {self.name} from {self.base}>"
