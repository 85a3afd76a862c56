"""Transformations that wrap another: skipping non-finite steps and accumulating gradients.

Both keep the wrapped transformation's state inside their own (``inner_state``), so
:func:`optx.get_hyperparams` and checkpointing reach it the usual way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optx.transformation import GradientTransformation, Params


def _zeros_like_output(fn: Any) -> Any:
    # The skipped branch must return exactly the shapes/dtypes the taken branch returns.
    shapes = jax.eval_shape(fn)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes[0])


class ApplyIfFiniteState(NamedTuple):
    """State of :func:`apply_if_finite` (the fields of ``optax.ApplyIfFiniteState``).

    ``notfinite_count``: consecutive non-finite steps so far. ``last_finite``: whether the last
    step's gradients were finite. ``total_notfinite``: non-finite steps in total.
    ``inner_state``: the wrapped transformation's state.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: Any


def apply_if_finite(
    tx: GradientTransformation, max_consecutive_errors: int
) -> GradientTransformation:
    """Skips steps whose gradients hold a NaN or Inf, like ``optax.apply_if_finite``.

    A skipped step returns zero updates and leaves ``tx``'s state untouched (its ``count``
    included). After more than ``max_consecutive_errors`` non-finite steps in a row the step is
    applied anyway, so a run that keeps failing shows its NaNs instead of silently stalling.

    Args:
        tx: the transformation to wrap.
        max_consecutive_errors: how many non-finite steps in a row are skipped.
    """

    def init(params: Params) -> ApplyIfFiniteState:
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros([], jnp.int32),
            last_finite=jnp.array(True, jnp.bool_),
            total_notfinite=jnp.zeros([], jnp.int32),
            inner_state=tx.init(params),
        )

    def update(updates, state, params=None, **extra_args):
        leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(updates)]
        isfinite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in leaves], jnp.bool_))
        notfinite_count = jnp.where(isfinite, 0, state.notfinite_count + 1).astype(jnp.int32)

        def do_update():
            return tx.update(updates, state.inner_state, params, **extra_args)

        def reject_update():
            return _zeros_like_output(do_update), state.inner_state

        apply = jnp.logical_or(isfinite, notfinite_count > max_consecutive_errors)
        new_updates, inner_state = jax.lax.cond(apply, do_update, reject_update)
        return new_updates, ApplyIfFiniteState(
            notfinite_count=notfinite_count,
            last_finite=isfinite,
            total_notfinite=state.total_notfinite + jnp.logical_not(isfinite).astype(jnp.int32),
            inner_state=inner_state,
        )

    return GradientTransformation(init, update)


class AccumulateGradientsState(NamedTuple):
    """State of :func:`accumulate_gradients`.

    ``mini_step``: micro-steps accumulated since the last update (``0..every_k-1``).
    ``gradient_step``: updates of the inner transformation so far. ``acc_grads``: the running
    sum of ``g / every_k``. ``inner_state``: the wrapped transformation's state.
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_state: Any
    acc_grads: Any


def accumulate_gradients(tx: GradientTransformation, every_k: int) -> GradientTransformation:
    """Gradient accumulation: one update of ``tx`` every ``every_k`` calls, on their mean gradient.

    The torch idiom it replaces is ``(loss / k).backward()`` over ``k`` micro-batches followed by
    one ``step()``: each micro-step adds ``g / every_k`` to an accumulator (the same sum torch's
    ``.grad`` accumulates). Calls ``1..k-1`` of each cycle return zero updates; call ``k`` feeds
    the accumulated mean to ``tx``, returns its updates and resets the accumulator. ``tx``'s
    state (its ``count``, hence its schedules) advances once per ``every_k`` calls, like
    ``optax.MultiSteps``.

    Args:
        tx: the transformation to wrap.
        every_k: micro-steps per update (``every_k=1`` is ``tx`` itself).
    """
    if not isinstance(every_k, int) or every_k < 1:
        raise ValueError(f"every_k must be a positive integer, got {every_k!r}")

    def init(params: Params) -> AccumulateGradientsState:
        return AccumulateGradientsState(
            mini_step=jnp.zeros([], jnp.int32),
            gradient_step=jnp.zeros([], jnp.int32),
            inner_state=tx.init(params),
            acc_grads=jax.tree_util.tree_map(lambda p: jnp.zeros_like(jnp.asarray(p)), params),
        )

    def update(updates, state, params=None, **extra_args):
        acc = jax.tree_util.tree_map(
            lambda a, g: (a + jnp.asarray(g) / every_k).astype(a.dtype), state.acc_grads, updates
        )
        last = state.mini_step == every_k - 1

        def emit():
            new_updates, inner_state = tx.update(acc, state.inner_state, params, **extra_args)
            return new_updates, inner_state, jax.tree_util.tree_map(jnp.zeros_like, acc)

        def hold():
            return _zeros_like_output(emit), state.inner_state, acc

        new_updates, inner_state, acc = jax.lax.cond(last, emit, hold)
        return new_updates, AccumulateGradientsState(
            mini_step=jnp.where(last, 0, state.mini_step + 1).astype(jnp.int32),
            gradient_step=state.gradient_step + last.astype(jnp.int32),
            inner_state=inner_state,
            acc_grads=acc,
        )

    return GradientTransformation(init, update)
