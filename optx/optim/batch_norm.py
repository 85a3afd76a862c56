"""Batch-norm running statistics recomputed in one pass over the data: the machinery behind
:func:`optx.optim.swa_utils.update_bn`.

torch's ``update_bn`` resets every BatchNorm's statistics, sets its ``momentum`` to ``None`` (a
cumulative average: after the k-th batch the statistics are ``1/k * batch + (1 - 1/k) *
running``) and runs the model in training mode. The running variance averages each batch's
*unbiased* variance (``n / (n - 1)`` times the biased one that normalizes the batch), as torch's
BatchNorm does; flax's BatchNorm keeps the biased one, so for flax models the statistics are
computed here from each BatchNorm's input, not taken from flax's own update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from optx.validation import check_matching

PyTree = Any


def inputs(loader: Iterable[Any], device: Any) -> Iterator[Any]:
    """Each batch's model input, as torch's ``update_bn`` takes it: the batch, or the first item
    of a list or tuple batch, moved to ``device`` when one is given."""
    for batch in loader:
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        yield batch if device is None else jax.device_put(batch, device)


def cumulative(running: Any, batch: Any, k: int) -> Any:
    """torch's BatchNorm update with ``momentum=None`` at its k-th batch:
    ``momentum * batch + (1 - momentum) * running`` with ``momentum = 1 / k``. The first batch
    is taken as is: torch weighs the reset statistics by exactly 0 there."""
    if k == 1:
        return batch
    momentum = 1.0 / k
    return momentum * batch + (1 - momentum) * running


def _key(entry: Any) -> Any:
    for field in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
        if hasattr(entry, field):
            return getattr(entry, field)
    return entry


def _with_batch_stats(variables: PyTree, new: dict[tuple, Any]) -> PyTree:
    """``variables`` with the leaf at each ``variables["batch_stats"][k1][k2]...`` replaced by
    ``new[(k1, k2, ...)]`` where given, in the dtype flax's own update gives (promoted)."""

    def visit(path: Any, leaf: Any) -> Any:
        keys = tuple(_key(k) for k in path)
        if keys[:1] != ("batch_stats",) or keys[1:] not in new:
            return leaf
        value = new[keys[1:]]
        return jnp.asarray(value, jnp.result_type(leaf, value))

    return jax.tree_util.tree_map_with_path(visit, variables)


def _no_batches(who: str) -> ValueError:
    return ValueError(f"{who}: the loader yielded no batches, so there are no statistics to "
                      "compute (torch would leave the statistics reset to mean 0, variance 1)")


def user_batch_stats(batches: Iterable[Any], stats_fn: Callable[..., Any], variables: PyTree,
                     kwargs: dict[str, Any], *, who: str) -> PyTree:
    """``variables`` with ``variables["batch_stats"]`` the cumulative average, over the batches,
    of ``stats_fn(variables, x, **kwargs)`` (one batch's statistics, shaped like them)."""
    stats = variables["batch_stats"]
    running = None
    for k, x in enumerate(batches, start=1):
        batch = stats_fn(variables, x, **kwargs)
        check_matching(batch, stats, who=who, what="statistics from stats_fn", dtypes=False)
        running = batch if running is None else jax.tree_util.tree_map(
            lambda r, b, k=k: cumulative(r, b, k), running, batch)
    if running is None:
        raise _no_batches(who)
    flat = jax.tree_util.tree_flatten_with_path(running)[0]
    return _with_batch_stats(variables, {tuple(_key(e) for e in p): v for p, v in flat})


def _linen_moments(bn: Any, args: tuple, kwargs: dict[str, Any], *, who: str) -> tuple[Any, Any]:
    """The batch mean and unbiased variance that a linen ``BatchNorm`` call normalizes by, in
    the dtype flax computes its statistics in."""
    name = "/".join(bn.path) or "<the model>"
    x = args[0] if args else kwargs["x"]
    use_running_average = kwargs.get("use_running_average", args[1] if len(args) > 1 else None)
    if use_running_average is None:
        use_running_average = bn.use_running_average
    if use_running_average:
        raise ValueError(
            f"{who}: the BatchNorm {name!r} ran with use_running_average=True; pass the "
            "arguments that put the model in training mode (torch's update_bn calls "
            "model.train()), e.g. update_bn(loader, model, train=True)")
    if kwargs.get("mask") is not None:
        raise ValueError(f"{who}: the BatchNorm {name!r} was called with a mask; torch's "
                         "BatchNorm has none, and masked statistics are not supported")
    axis = bn.axis if isinstance(bn.axis, (tuple, list)) else (bn.axis,)
    features = {a % x.ndim for a in axis}
    axes = tuple(a for a in range(x.ndim) if a not in features)
    dtype = bn.dtype or jnp.result_type(x)
    if getattr(bn, "force_float32_reductions", True):
        dtype = jnp.promote_types(dtype, jnp.float32)
    if math.prod(x.shape[a] for a in axes) < 2:
        raise ValueError(f"{who}: Expected more than 1 value per channel when training, got "
                         f"input size {tuple(x.shape)} (the BatchNorm {name!r})")
    x = jnp.asarray(x, dtype)
    return jnp.mean(x, axes), jnp.var(x, axes, ddof=1)


def linen_batch_stats(batches: Iterable[Any], module: Any, variables: PyTree,
                      kwargs: dict[str, Any], *, who: str) -> PyTree:
    """``variables`` with the statistics of each ``flax.linen.BatchNorm`` in ``module``
    recomputed as torch's ``update_bn`` does. A BatchNorm called several times in one forward
    pass counts each call, as torch's ``num_batches_tracked`` does; one never called keeps its
    statistics."""
    import flax.linen as nn  # the caller's program has flax: its module is a linen Module

    def moments(variables: PyTree, x: Any) -> dict[tuple, list]:
        calls: dict[tuple, list] = {}

        def interceptor(next_fun: Any, args: tuple, kw: dict, context: Any) -> Any:
            bn = context.module
            if context.method_name == "__call__" and isinstance(bn, nn.BatchNorm):
                calls.setdefault(tuple(bn.path), []).append(_linen_moments(bn, args, kw, who=who))
            return next_fun(*args, **kw)

        with nn.intercept_methods(interceptor):
            # mutable: training mode updates batch_stats (flax's update, discarded here).
            module.apply(variables, x, **{**kwargs, "mutable": True})
        return calls

    jitted = jax.jit(moments)
    running: dict[tuple, Any] = {}
    counts: dict[tuple, int] = {}
    seen = False
    for x in batches:
        seen = True
        try:
            out = jitted(variables, x)
        except jax.errors.UnexpectedTracerError:
            # The statistics were captured inside a lifted transform's own trace.
            raise ValueError(f"{who}: a BatchNorm inside a flax lifted transform (nn.vmap, "
                             "nn.scan, ...) is not supported") from None
        for path, calls in out.items():
            for mean, var in calls:
                k = counts[path] = counts.get(path, 0) + 1
                running[path + ("mean",)] = cumulative(running.get(path + ("mean",)), mean, k)
                running[path + ("var",)] = cumulative(running.get(path + ("var",)), var, k)
    if not seen:
        raise _no_batches(who)
    stats = jax.tree_util.tree_flatten_with_path(variables["batch_stats"])[0]
    missing = set(running) - {tuple(_key(e) for e in p) for p, _ in stats}
    if missing:
        raise ValueError(f"{who}: variables['batch_stats'] has no entry for "
                         f"{sorted('/'.join(m) for m in missing)}: were the variables "
                         "initialized by this module?")
    return _with_batch_stats(variables, running)
