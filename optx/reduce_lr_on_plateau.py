"""torch's ReduceLROnPlateau as a gradient transformation that lives inside jit."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optx.hyperparams import float_dtype
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
    """
    if factor >= 1.0:
        raise ValueError("Factor should be < 1.0.")
    if mode not in {"min", "max"}:
        raise ValueError("mode " + mode + " is unknown!")
    if threshold_mode not in {"rel", "abs"}:
        raise ValueError("threshold mode " + threshold_mode + " is unknown!")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch}")

    def is_better(a, best):
        if mode == "min" and threshold_mode == "rel":
            return a < best * (1.0 - threshold)
        if mode == "min":
            return a < best - threshold
        if threshold_mode == "rel":
            return a > best * (threshold + 1.0)
        return a > best + threshold

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
        better = is_better(metric, state.best)
        best = jnp.where(better, metric, state.best)
        bad = jnp.where(better, 0, state.num_bad_epochs + 1)
        in_cooldown = state.cooldown_counter > 0
        cooldown_counter = jnp.where(in_cooldown, state.cooldown_counter - 1, 0)
        bad = jnp.where(in_cooldown, 0, bad)
        reduce = bad > patience
        new_scale = jnp.maximum(state.scale * factor, min_scale)
        scale = jnp.where(reduce & (state.scale - new_scale > eps), new_scale, state.scale)
        return state._replace(
            scale=scale,
            best=best,
            num_bad_epochs=jnp.where(reduce, 0, bad),
            cooldown_counter=jnp.where(reduce, cooldown, cooldown_counter),
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
