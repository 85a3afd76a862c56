"""Helpers for data-parallel training across devices.

* :func:`mean_across`: a loss averaged, with its gradient, over a ``pmap``/``shard_map`` axis.
* ZeRO-1 (optimizer state sharded, params replicated), as torch's ``ZeroRedundancyOptimizer``:
  :func:`zero_shardings` / :func:`zero_place` for a jitted step on a mesh, :func:`zero` under
  ``pmap``/``shard_map``, and ``optx.optim.ZeroRedundancyOptimizer`` in the adapter.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from optx.quantized import QuantizedArray
from optx.torch_optimizer import OptimizerState
from optx.transformation import GradientTransformation


def mean_across(fn: Callable[[Any], jax.Array], axis_name: Hashable) -> Callable[[Any], jax.Array]:
    """Wraps a per-device loss so its value *and gradient* are averaged over ``axis_name``.

    Under ``pmap`` the gradient of ``lax.pmean(loss(params))`` with respect to per-device params
    is the local gradient, not the mean one, so a closure that only averages the value would let
    replicas diverge (LBFGS re-evaluates its closure inside the line search). The returned
    function averages the value in the forward pass and the gradient in the backward pass, so
    ``jax.value_and_grad`` of it gives the global-batch loss and gradient on every device.
    Use it as LBFGS's ``value_fn`` inside ``pmap``/``shard_map``.

    Args:
        fn: the per-device loss, ``fn(params) -> scalar``, on this device's batch.
        axis_name: the ``pmap``/``shard_map`` axis to average over.

    Returns:
        ``mean_fn(params) -> scalar``: the mean of ``fn`` over the axis, whose gradient is the
        mean gradient.
    """

    @jax.custom_vjp
    def mean_fn(params):
        return jax.lax.pmean(fn(params), axis_name)

    def fwd(params):
        value, vjp = jax.vjp(fn, params)
        return jax.lax.pmean(value, axis_name), vjp

    def bwd(vjp, cotangent):
        (grads,) = vjp(cotangent)
        return (jax.lax.pmean(grads, axis_name),)

    mean_fn.defvjp(fwd, bwd)
    return mean_fn


# ---------------------------------------------------------------------------------------------
# ZeRO-1: optimizer state sharded across data-parallel devices, params replicated.

AxisName = Union[str, tuple[str, ...]]


def _axis_size(mesh: Mesh, axis: AxisName) -> int:
    names = axis if isinstance(axis, tuple) else (axis,)
    return math.prod(mesh.shape[a] for a in names)


def zero_shardings(state: Any, mesh: Mesh, axis: AxisName = "data") -> Any:
    """``NamedSharding`` s that split an optimizer state across ``axis`` of ``mesh`` (ZeRO-1).

    Each per-parameter slot (``exp_avg``, ``momentum_buffer``, Adafactor's ``row_var``, ...) is
    split along its largest dimension divisible by the axis size; the step count, the
    hyperparameters, shared scalars and slots with no such dimension are replicated. A
    quantized slot (:class:`optx.quantized.QuantizedArray`, the low-bit optimizers') is split
    along its block axis, whole blocks per device, when the axis size divides its number of
    blocks, and replicated otherwise: a block never straddles two devices. States
    that are not :class:`optx.OptimizerState` (LBFGS's, optax's) get the same rule leaf by leaf.

    Used as the state's ``in_shardings``/``out_shardings`` of a jitted train step whose params
    are replicated, XLA partitions the update: each device updates its slice of the state and
    the new params are all-gathered. The result equals the unsharded step (sharding never
    changes what jit computes). ``axis`` may be a tuple of mesh axes (split over all of them).

    Args:
        state: an optimizer state (its arrays' shapes are read; nothing is moved).
        mesh: the device mesh.
        axis: the data-parallel mesh axis (or tuple of axes) to split the state over.

    Returns:
        A pytree like ``state`` with a ``NamedSharding`` at every array leaf.
    """
    n = _axis_size(mesh, axis)
    replicated = NamedSharding(mesh, P())

    def split(x: Any) -> NamedSharding:
        shape = np.shape(x)
        dims = [d for d, size in enumerate(shape) if size >= n and size % n == 0]
        if n == 1 or not dims:
            return replicated
        d = max(dims, key=lambda d: shape[d])  # the largest; the first of equals
        return NamedSharding(mesh, P(*[axis if i == d else None for i in range(len(shape))]))

    def blocked(x: QuantizedArray) -> QuantizedArray:
        # Whole blocks per device: codes and scales split along the block axis when the
        # device count divides the number of blocks, else both replicated.
        if n > 1 and np.shape(x.scale)[0] % n == 0:
            return QuantizedArray(NamedSharding(mesh, P(axis, None)), NamedSharding(mesh, P(axis)),
                                  x.kind, x.signed, x.shape, x.block_size)
        return QuantizedArray(replicated, replicated, x.kind, x.signed, x.shape, x.block_size)

    def leaf(x: Any) -> Any:
        return blocked(x) if isinstance(x, QuantizedArray) else split(x)

    def is_leaf(x: Any) -> bool:
        return isinstance(x, (OptimizerState, QuantizedArray))

    def node(x: Any) -> Any:
        if isinstance(x, OptimizerState):
            rep = functools.partial(jax.tree_util.tree_map, lambda _: replicated)
            return OptimizerState(
                count=replicated,  # type: ignore[arg-type]  # a sharding tree, not a state
                hyperparams=rep(x.hyperparams),
                slots=jax.tree_util.tree_map(leaf, x.slots, is_leaf=is_leaf),
                scalars=rep(x.scalars),
                steps=None if x.steps is None else replicated,  # type: ignore[arg-type]
            )
        return leaf(x)

    return jax.tree_util.tree_map(node, state, is_leaf=is_leaf)


def zero_place(state: Any, mesh: Mesh, axis: AxisName = "data") -> Any:
    """``state`` moved onto ``mesh`` with :func:`zero_shardings` (each device keeps its slices).

    Args:
        state: an optimizer state.
        mesh: the device mesh.
        axis: the data-parallel mesh axis (or tuple of axes) to split the state over.

    Returns:
        ``jax.device_put(state, zero_shardings(state, mesh, axis))``.
    """
    return jax.device_put(state, zero_shardings(state, mesh, axis))


class ZeroState(NamedTuple):
    """State of :func:`zero`: the wrapped transformation's state, for this replica's slice of
    every parameter (or for the whole parameters when its update is not elementwise).

    Attributes:
        inner_state: the wrapped transformation's state.
    """

    inner_state: Any


def _is_elementwise(tx: GradientTransformation) -> bool:
    return bool(getattr(tx.update, "elementwise", False))


def _slice(x: jax.Array, n: int, index: jax.Array) -> jax.Array:
    """This replica's 1/n of ``x``, flattened and zero-padded to a multiple of ``n``."""
    flat = jnp.ravel(x)
    k = -(-flat.size // n)
    flat = jnp.pad(flat, (0, n * k - flat.size))
    return jax.lax.dynamic_slice_in_dim(flat, index * k, k)


def zero(
    tx: GradientTransformation, axis_name: Hashable, *, elementwise: bool | None = None
) -> GradientTransformation:
    """ZeRO-1 under ``pmap``/``shard_map``: each replica keeps ``tx``'s state for 1/N of every
    parameter and updates only that slice.

    Every leaf is flattened, zero-padded to a multiple of N (the size of ``axis_name``) and
    replica ``i`` keeps slice ``i``; ``update`` runs ``tx`` on the slices of the (already
    averaged) gradients and params, then ``all_gather`` s the sliced updates into full ones, so
    the params stay replicated and each replica holds 1/N of the state. ``init`` and ``update``
    must run inside ``pmap``/``shard_map`` over ``axis_name``; under ``shard_map`` the sliced
    state leaves are ``P(axis_name)`` (their global shape is the padded flat leaf) and the
    scalars ``P()``, and the step needs ``check_vma=False`` (the gathered updates are the same
    on every device, which ``shard_map`` cannot infer from ``all_gather``).

    Slicing is exact only for updates that treat every element on its own. Optimizers whose
    update reduces over a whole parameter (Adafactor's RMS and factored moments, Muon's
    orthogonalisation, LBFGS's global history) and transformations not known to be elementwise
    (``chain``, clipping by the total norm, optax transformations) are run on the whole
    parameters on every replica instead: exact, but with the state replicated. Pass
    ``elementwise=True`` to slice a transformation you know is elementwise, ``False`` to never
    slice.

    :func:`optx.get_hyperparams` and :func:`optx.set_hyperparams` see through the wrapper.

    Args:
        tx: the transformation to shard (an optx optimizer, or any transformation).
        axis_name: the ``pmap``/``shard_map`` axis the replicas run over.
        elementwise: whether ``tx``'s update treats every element on its own, so its state can
            be sliced; ``None`` reads it from optx's optimizers (``False`` for the others).

    Returns:
        An :class:`optx.GradientTransformation` whose state is a :class:`ZeroState`.
    """
    sliced = _is_elementwise(tx) if elementwise is None else elementwise

    def init(params: Any) -> ZeroState:
        if not sliced:
            return ZeroState(tx.init(params))
        n, index = jax.lax.axis_size(axis_name), jax.lax.axis_index(axis_name)
        return ZeroState(tx.init(jax.tree_util.tree_map(lambda p: _slice(p, n, index), params)))

    def update(updates: Any, state: ZeroState, params: Any = None, **extra_args: Any):
        if not isinstance(state, ZeroState):
            raise TypeError(f"optx.sharding.zero: expected a ZeroState, got {type(state).__name__}")
        if not sliced:
            updates, inner = tx.update(updates, state.inner_state, params, **extra_args)
            return updates, ZeroState(inner)
        n, index = jax.lax.axis_size(axis_name), jax.lax.axis_index(axis_name)

        def local(tree: Any) -> Any:
            return jax.tree_util.tree_map(lambda x: _slice(x, n, index), tree)

        local_params = None if params is None else local(params)
        local_updates, inner = tx.update(
            local(updates), state.inner_state, local_params, **extra_args
        )

        def gather(u: jax.Array, like: Any) -> jax.Array:
            full = jax.lax.all_gather(u, axis_name, tiled=True)
            return full[: np.size(like)].reshape(np.shape(like))

        return jax.tree_util.tree_map(gather, local_updates, updates), ZeroState(inner)

    return GradientTransformation(init, update)
