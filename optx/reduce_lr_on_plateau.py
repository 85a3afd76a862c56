"""torch's ReduceLROnPlateau as a gradient transformation that lives inside jit."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optx.hyperparams import float_dtype
from optx.schedules.torch_schedule import TRACED
from optx.transformation import GradientTransformation


class ReduceLROnPlateauState(NamedTuple):
    """State of :func:`reduce_lr_on_plateau`.

    Attributes:
      scale: the factor applied to the updates: the lr multiplier (1 until the first reduction).
      best: the best epoch metric so far (torch's ``best``).
      num_bad_epochs: epochs since the last improvement (torch's ``num_bad_epochs``).
      cooldown_counter: epochs of cooldown left (torch's ``cooldown_counter``).
      count: updates seen in the current epoch.
      value_sum: the sum of the metric over the current epoch's updates.
    """

    scale: jax.Array
    best: jax.Array
    num_bad_epochs: jax.Array
    cooldown_counter: jax.Array
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    value_sum: jax.Array


class PlateauRule(NamedTuple):
    """torch's ReduceLROnPlateau arguments that its decisions read."""

    mode: str
    factor: float
    patience: int
    threshold: float
    threshold_mode: str
    cooldown: int
    eps: float


def check_plateau(factor: float, mode: str, threshold_mode: str) -> None:
    """torch's checks (the class checks ``min_lr`` between the factor and the modes)."""
    check_plateau_factor(factor)
    check_plateau_modes(mode, threshold_mode)


def check_plateau_factor(factor: float) -> None:
    if factor >= 1.0:
        raise ValueError("Factor should be < 1.0.")


def check_plateau_modes(mode: str, threshold_mode: str) -> None:
    if mode not in {"min", "max"}:
        raise ValueError("mode " + mode + " is unknown!")
    if threshold_mode not in {"rel", "abs"}:
        raise ValueError("threshold mode " + threshold_mode + " is unknown!")


def plateau_is_better(rule: PlateauRule, a: Any, best: Any) -> Any:
    """torch's ``_is_better``: ``a`` improves on ``best`` by more than the threshold."""
    if rule.mode == "min" and rule.threshold_mode == "rel":
        return a < best * (1.0 - rule.threshold)
    if rule.mode == "min":
        return a < best - rule.threshold
    if rule.threshold_mode == "rel":
        return a > best * (rule.threshold + 1.0)
    return a > best + rule.threshold


def plateau_counts(m: Any, rule: PlateauRule, metric: Any, best: Any, num_bad_epochs: Any,
                   cooldown_counter: Any) -> tuple[Any, Any, Any, Any]:
    """torch's ``step(metric)`` up to its reduction: ``(best, num_bad_epochs,
    cooldown_counter)`` as they are when ``_reduce_lr`` runs, and whether it runs (after it,
    torch resets the counts: :func:`plateau_decision`)."""
    better = plateau_is_better(rule, metric, best)
    best = m.where(better, metric, best)
    bad = m.where(better, 0, num_bad_epochs + 1)
    in_cooldown = cooldown_counter > 0
    cooldown_counter = m.where(in_cooldown, cooldown_counter - 1, cooldown_counter)
    bad = m.where(in_cooldown, 0, bad)
    return best, bad, cooldown_counter, bad > rule.patience


def plateau_decision(m: Any, rule: PlateauRule, metric: Any, best: Any, num_bad_epochs: Any,
                     cooldown_counter: Any) -> tuple[Any, Any, Any, Any]:
    """One torch ``step(metric)``: the new ``(best, num_bad_epochs, cooldown_counter)`` and
    whether to reduce. ``m`` is the arithmetic: Python scalars (``optx.schedules.
    torch_schedule.HOST``) or traced arrays (``TRACED``)."""
    best, bad, cooldown_counter, reduce = plateau_counts(m, rule, metric, best, num_bad_epochs,
                                                         cooldown_counter)
    return (best, m.where(reduce, 0, bad), m.where(reduce, rule.cooldown, cooldown_counter),
            reduce)


def plateau_reduced(m: Any, rule: PlateauRule, lr: Any, min_lr: Any, reduce: Any) -> Any:
    """torch's ``_reduce_lr`` for one lr: ``max(lr * factor, min_lr)``, unless that changes it by
    at most ``eps``."""
    new_lr = m.maximum(lr * rule.factor, min_lr)
    return m.where(reduce & (lr - new_lr > rule.eps), new_lr, lr)


def reduce_lr_on_plateau(
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_scale: float = 0.0,
    eps: float = 1e-8,
    steps_per_epoch: int = 1,
    axis_name: Any = None,
) -> GradientTransformation:
    r"""``torch.optim.lr_scheduler.ReduceLROnPlateau`` as a transformation that scales updates.

    Chain it after an optimizer: ``optx.chain(optx.adam(1e-3), optx.reduce_lr_on_plateau())``,
    and pass the metric with every update: ``update(updates, state, params, value=metric)``.
    Every ``steps_per_epoch`` updates it makes one torch ``scheduler.step(metric)`` decision on
    the mean of the metrics it received:

    1. the epoch is *better* if ``metric < best * (1 - threshold)`` (``min``/``rel``),
       ``metric < best - threshold`` (``min``/``abs``), ``metric > best * (1 + threshold)``
       (``max``/``rel``) or ``metric > best + threshold`` (``max``/``abs``); then
       ``best = metric`` and the bad-epoch count resets, else it grows by one;
    2. during cooldown the counter decreases and the bad-epoch count is reset;
    3. when the bad-epoch count exceeds ``patience``, ``scale = max(scale * factor, min_scale)``
       (ignored if the change is at most ``eps``), cooldown starts and the count resets.

    ``min_scale`` plays the part of torch's ``min_lr`` (relative to the optimizer's lr), and
    ``eps`` applies to the scale. With ``axis_name`` the metric is averaged across devices
    (``pmap``/``shard_map``), so replicas make the same decision.

    Args:
      mode: ``"min"`` (the metric should decrease) or ``"max"``.
      factor: the scale is multiplied by ``factor`` (< 1) at each reduction.
      patience: the number of epochs without improvement tolerated before a reduction.
      threshold: the improvement that counts, relative (``"rel"``) or absolute (``"abs"``).
      threshold_mode: ``"rel"`` or ``"abs"``.
      cooldown: the number of epochs after a reduction during which bad epochs are not counted.
      min_scale: the lowest scale (torch's ``min_lr`` relative to the optimizer's lr).
      eps: a reduction that changes the scale by at most ``eps`` is skipped.
      steps_per_epoch: the number of updates whose mean metric makes one decision.
      axis_name: the mapped axis to average the metric over, or ``None``.

    Returns:
      A :class:`~optx.GradientTransformation` whose ``update`` takes ``value=metric``.

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> tx = optx.reduce_lr_on_plateau(factor=0.5, patience=0)
      >>> state = tx.init(jnp.zeros(1))
      >>> for metric in [1.0, 2.0, 2.0]:
      ...     updates, state = tx.update(jnp.ones(1), state, value=metric)
      >>> float(state.scale)
      0.25
    """
    check_plateau(factor, mode, threshold_mode)
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch}")
    rule = PlateauRule(mode, factor, patience, threshold, threshold_mode, cooldown, eps)

    def init(params):
        del params
        dtype = float_dtype()
        worst = jnp.inf if mode == "min" else -jnp.inf
        return ReduceLROnPlateauState(
            scale=jnp.ones((), dtype),
            best=jnp.asarray(worst, dtype),
            num_bad_epochs=jnp.zeros((), jnp.int32),
            cooldown_counter=jnp.zeros((), jnp.int32),
            count=jnp.zeros((), jnp.int32),
            value_sum=jnp.zeros((), dtype),
        )

    def decide(state, metric):
        best, bad, cooldown_counter, reduce = plateau_decision(
            TRACED, rule, metric, state.best, state.num_bad_epochs, state.cooldown_counter)
        return state._replace(
            scale=plateau_reduced(TRACED, rule, state.scale, min_scale, reduce),
            best=best,
            num_bad_epochs=bad,
            cooldown_counter=cooldown_counter,
        )

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        if value is None:
            raise ValueError(
                "reduce_lr_on_plateau needs the metric: call update(..., value=metric)"
            )
        value = jnp.asarray(value, state.value_sum.dtype)
        if axis_name is not None:
            value = jax.lax.pmean(value, axis_name)
        scaled = jax.tree_util.tree_map(lambda u: (u * state.scale).astype(u.dtype), updates)
        count, value_sum = state.count + 1, state.value_sum + value
        end_of_epoch = count >= steps_per_epoch
        decided = decide(state, value_sum / count)
        new_state = jax.tree_util.tree_map(
            lambda d, s: jnp.where(end_of_epoch, d, s), decided, state
        )._replace(
            count=jnp.where(end_of_epoch, 0, count),
            value_sum=jnp.where(end_of_epoch, 0.0, value_sum),
        )
        return scaled, new_state

    return GradientTransformation(init, update)
