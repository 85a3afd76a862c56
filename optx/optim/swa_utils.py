"""``torch.optim.swa_utils`` for JAX models: AveragedModel (SWA and EMA), update_bn and SWALR.

A model is a function and its variables (:mod:`optx.optim.model`); batch-norm statistics are
recomputed by :mod:`optx.optim.batch_norm`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import optx.schedules.swa as F
from optx.optim.batch_norm import inputs, linen_batch_stats, user_batch_stats
from optx.optim.lr_scheduler.base import (
    LRScheduler,
    _format_param,
    _warn_get_lr_called_within_step,
)
from optx.optim.model import Model, as_model, buffer_mask, is_array
from optx.schedules.torch_schedule import HOST
from optx.validation import check_matching

PyTree = Any


def get_swa_avg_fn() -> Callable[[Any, Any, Any], Any]:
    """Equal-weight running average: ``avg + (p - avg) / (n + 1)``.

    Returns:
        ``avg_fn(averaged, current, num_averaged)`` for :class:`AveragedModel`'s ``avg_fn``
        (its default).

    The divisor is a full array: XLA:CPU turns a division by a broadcast scalar into a
    multiplication by its reciprocal, which rounds differently from torch's division.
    """
    return lambda averaged, current, num_averaged: averaged + (current - averaged) / (
        jnp.full(jnp.shape(averaged), num_averaged + 1, jnp.result_type(averaged))
    )


def get_ema_avg_fn(decay: float = 0.999) -> Callable[[Any, Any, Any], Any]:
    """Exponential moving average: ``decay * avg + (1 - decay) * p``.

    Args:
        decay: the weight of the running average.

    Returns:
        ``avg_fn(averaged, current, num_averaged)`` for :class:`AveragedModel`'s ``avg_fn``.
    """
    return lambda ema, current, num_averaged: decay * ema + (1 - decay) * current


def _lerp(start: Any, end: Any, w: float) -> Any:
    # torch.lerp's two-sided formula (exact at both ends), as _foreach_lerp_ computes it: the
    # weight is first rounded to the tensors' dtype, and 1 - w is taken in that dtype.
    weight = jnp.asarray(w, jnp.result_type(start))
    diff = end - start
    return start + weight * diff if abs(float(weight)) < 0.5 else end - diff * (1 - weight)


def get_swa_multi_avg_fn() -> Callable[[list, list, Any], list]:
    """Equal-weight running average over lists of leaves, as torch's
    ``_foreach_lerp_(averaged, current, 1 / (n + 1))``.

    Returns:
        ``multi_avg_fn(averaged, current, num_averaged)`` over lists of leaves, for
        :class:`AveragedModel`'s ``multi_avg_fn``.
    """
    return lambda averaged, current, n: [
        _lerp(a, c, 1 / (int(n) + 1)) for a, c in zip(averaged, current)
    ]


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable[[list, list, Any], list]:
    """EMA over lists of leaves, as torch's ``_foreach_lerp_(ema, current, 1 - decay)``.

    Args:
        decay: the weight of the running average, in ``[0, 1]``.

    Returns:
        ``multi_avg_fn(averaged, current, num_averaged)`` over lists of leaves, for
        :class:`AveragedModel`'s ``multi_avg_fn``.

    Example:
        >>> import jax.numpy as jnp, optx
        >>> ema = optx.optim.swa_utils.AveragedModel(
        ...     {"w": jnp.zeros(1)},
        ...     multi_avg_fn=optx.optim.swa_utils.get_ema_multi_avg_fn(0.9))
        >>> for w in (1.0, 2.0, 3.0):
        ...     ema.update_parameters({"w": jnp.full(1, w)})
        >>> round(float(ema.module["w"][0]), 4)
        1.29
    """
    if decay < 0.0 or decay > 1.0:
        raise ValueError(
            f"Invalid decay value {decay} provided. Please provide a value in [0,1] range."
        )
    return lambda ema, current, n: [_lerp(e, c, 1 - decay) for e, c in zip(ema, current)]


class AveragedModel:
    """``torch.optim.swa_utils.AveragedModel``: a running average of a model's parameters (SWA
    by default, EMA with :func:`get_ema_multi_avg_fn`), evaluated as the model.

    In JAX a model is a function and the variables it is applied to; ``model`` can be any of:

    * ``(apply_fn, variables)``: ``swa_model(*inputs)`` is ``apply_fn(averaged, *inputs)``;
    * ``(module, variables)`` with a flax linen ``Module``: ``module.apply(averaged, *inputs)``;
    * an object with its parameters in ``.params``, called as ``model(params, *inputs)`` (the
      porting guide's model classes): ``swa_model(*inputs)`` is ``model(averaged, *inputs)``;
    * a callable pytree (an equinox ``Module``): ``swa_model(*inputs)`` calls the averaged copy;
    * a pytree of parameters alone: averaged, but nothing to evaluate (``swa_model()`` returns
      the average).

    The average is ``swa_model.module``, like torch's: the averaged variables (params, flax
    variables, or the equinox module); ``swa_model.apply_fn`` evaluates it (``None`` for
    parameters alone) and ``swa_model.n_averaged`` counts the updates. Only array leaves are
    averaged; others (an equinox module's activation functions) are kept. Variables in
    flax's layout (a mapping with ``"params"``, applied by a function) hold torch's buffers
    (batch-norm running statistics) in their other collections (``batch_stats``): as torch
    does, ``update_parameters`` copies them from the model, or averages them too with
    ``use_buffers=True``.

    Args:
      model: the model to average, in one of the forms above; its arrays are copied.
      device: a ``jax.Device`` or sharding the average is kept on (``jax.device_put``);
        ``None`` keeps each array where it is.
      avg_fn: ``avg_fn(averaged, current, n_averaged)`` gives one leaf's new average;
        ``None`` (and no ``multi_avg_fn``) is the equal-weight average :func:`get_swa_avg_fn`.
      multi_avg_fn: ``multi_avg_fn(averaged, current, n_averaged)`` gives the new averages of
        lists of leaves (returned, not updated in place as in torch).
      use_buffers: average the buffers too, instead of copying the model's.

    Example:
      >>> import jax.numpy as jnp
      >>> from optx.optim.swa_utils import AveragedModel
      >>> def model(params, x):
      ...     return x @ params["w"]
      >>> swa_model = AveragedModel((model, {"w": jnp.array([1.0, 0.0])}))
      >>> for w in ([1.0, 0.0], [0.0, 3.0]):
      ...     swa_model.update_parameters({"w": jnp.array(w)})
      >>> print(swa_model.module["w"].tolist(), swa_model.n_averaged)
      [0.5, 1.5] 2
      >>> print(float(swa_model(jnp.array([1.0, 1.0]))))
      2.0
    """

    def __init__(self, model: Any, device: Any = None,
                 avg_fn: Callable[[Any, Any, Any], Any] | None = None,
                 multi_avg_fn: Callable[[list, list, Any], list] | None = None,
                 use_buffers: bool = False) -> None:
        if avg_fn is not None and multi_avg_fn is not None:
            raise ValueError("Only one of avg_fn and multi_avg_fn should be provided")
        m = as_model(model)
        self.apply_fn = m.apply_fn
        self._linen_module = m.linen_module
        self.device, self.avg_fn, self.multi_avg_fn = device, avg_fn, multi_avg_fn
        self.use_buffers = use_buffers
        leaves, self._treedef = jax.tree_util.tree_flatten(m.variables)
        # Per leaf: averaged, copied from the model at each update (a buffer), or kept.
        self._kinds = ["keep" if not is_array(x) else "copy" if b and not use_buffers else "avg"
                       for x, b in zip(leaves, buffer_mask(m))]
        self.module = self._unflatten([self._put(x) if is_array(x) else x for x in leaves])
        self.n_averaged = 0

    def _put(self, x: Any) -> Any:
        x = jnp.array(x, copy=True)
        return x if self.device is None else jax.device_put(x, self.device)

    def _unflatten(self, leaves: list) -> PyTree:
        return jax.tree_util.tree_unflatten(self._treedef, leaves)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Evaluates the averaged model on the inputs, as torch's ``swa_model(input)``."""
        if self.apply_fn is None:
            if args or kwargs:
                raise TypeError(
                    "this AveragedModel averages parameters without a function to apply them: "
                    "construct it as AveragedModel((apply_fn, params)) to evaluate it")
            return self.module
        return self.apply_fn(self.module, *args, **kwargs)

    def update_parameters(self, model: Any) -> None:
        """Averages in the model's current parameters (``n_averaged`` counts the calls; the
        first one copies them).

        Args:
          model: the model's current variables (e.g. ``optimizer.params``), or the model as
            ``(apply_fn, variables)`` or an equinox module.
        """
        m = as_model(model)
        if m.holder:
            # The porting guide's model object keeps its initial params; the optimizer holds
            # the trained ones, so reading model.params here would average stale values.
            raise TypeError(
                f"update_parameters: pass the current parameters (e.g. optimizer.params), not "
                f"the {type(model).__name__} object, whose .params the optimizer does not update")
        current = m.variables
        placeholder = np.zeros(())  # non-array leaves: compared by structure only

        def arrays(tree: PyTree) -> PyTree:
            return jax.tree_util.tree_map(lambda x: x if is_array(x) else placeholder, tree)

        check_matching(arrays(current), arrays(self.module), who="update_parameters",
                       what="model", dtypes=False)
        now = self._treedef.flatten_up_to(current)  # type: ignore[attr-defined]  # PyTreeDef has no stubs
        old = self._treedef.flatten_up_to(self.module)  # type: ignore[attr-defined]
        if self.device is not None:
            now = [jax.device_put(c, a.sharding) if k != "keep" else c
                   for c, a, k in zip(now, old, self._kinds)]
        idx = [i for i, k in enumerate(self._kinds) if k == "avg"]
        averaged, current_avg = [old[i] for i in idx], [now[i] for i in idx]
        if self.n_averaged == 0:
            new = [jnp.array(c, copy=True) for c in current_avg]
        elif self.multi_avg_fn is not None:
            new = self.multi_avg_fn(averaged, current_avg, self.n_averaged)
        elif self.avg_fn is not None:
            new = [self.avg_fn(a, c, self.n_averaged) for a, c in zip(averaged, current_avg)]
        else:
            # torch's default on CPU (no foreach kernels there): get_swa_avg_fn per leaf.
            avg = get_swa_avg_fn()
            new = [avg(a, c, self.n_averaged) for a, c in zip(averaged, current_avg)]
        leaves = list(old)
        for i, value in zip(idx, new):
            leaves[i] = jnp.asarray(value, old[i].dtype)
        for i, kind in enumerate(self._kinds):
            if kind == "copy":  # torch keeps the buffers in sync with the model's
                leaves[i] = jnp.array(now[i], old[i].dtype, copy=True)
        self.module = self._unflatten(leaves)
        self.n_averaged += 1


def update_bn(loader: Iterable[Any], model: Any, device: Any = None, *,
              stats_fn: Callable[..., Any] | None = None, **kwargs: Any) -> PyTree:
    """``torch.optim.swa_utils.update_bn``: recomputes the batch-norm running statistics with
    one pass over the data, as torch does (each BatchNorm's statistics become the cumulative
    average over the batches of the batch mean and *unbiased* variance, torch's
    ``momentum=None``).

    The statistics are the model's ``variables["batch_stats"]`` (flax's layout):

    * for a flax linen model, every ``nn.BatchNorm`` is found as the model runs; the keyword
      arguments go to ``module.apply`` and must put it in training mode (``train=True``, as
      torch's ``update_bn`` calls ``model.train()``);
    * for any other model, ``stats_fn(variables, x, **kwargs)`` returns one batch's statistics,
      a pytree shaped like ``variables["batch_stats"]`` (for a batch norm: the batch mean and
      unbiased variance of its input).

    Unlike torch, an empty loader is an error, and a BatchNorm the model never calls keeps its
    statistics (torch resets them). BatchNorms inside flax lifted transforms (``nn.vmap``,
    ``nn.scan``) and masked BatchNorm calls are refused.

    Args:
      loader: the batches; each is the model's input, or a list or tuple whose first item is.
      model: an :class:`AveragedModel` (its ``module`` is updated, as torch's in place), or a
        model as :class:`AveragedModel` takes it, e.g. ``(module, variables)``.
      device: a ``jax.Device`` or sharding each input is put on first; ``None`` leaves it.
      stats_fn: one batch's statistics, for models that are not flax linen modules.
      **kwargs: passed to the model (flax: ``module.apply``) or to ``stats_fn``.

    Returns:
      The model's variables with the new statistics (for a model without ``batch_stats``, as
      they were: torch returns at once when a model has no BatchNorm).

    Example:
      >>> import jax.numpy as jnp
      >>> from optx.optim.swa_utils import update_bn
      >>> def stats_fn(variables, x):  # a batch norm of x itself
      ...     return {"mean": x.mean(0), "var": x.var(0, ddof=1)}
      >>> variables = {"params": {}, "batch_stats": {"mean": jnp.zeros(1), "var": jnp.ones(1)}}
      >>> loader = [jnp.array([[0.0], [2.0]]), jnp.array([[4.0], [4.0], [7.0]])]
      >>> stats = update_bn(loader, variables, stats_fn=stats_fn)["batch_stats"]
      >>> print(stats["mean"].tolist(), stats["var"].tolist())
      [3.0] [2.5]
    """
    who = "update_bn"
    averaged = model if isinstance(model, AveragedModel) else None
    if averaged is not None:
        m = Model(averaged.module, averaged.apply_fn, averaged._linen_module)
    else:
        m = as_model(model)
    variables = m.variables
    has_stats = isinstance(variables, Mapping) and "batch_stats" in variables
    if stats_fn is None:
        if m.linen_module is None:
            raise TypeError(f"{who}: this model is not a flax linen module; pass "
                            "stats_fn(variables, x) giving one batch's statistics")
        if not has_stats:
            return variables
        new = linen_batch_stats(inputs(loader, device), m.linen_module, variables, kwargs,
                                who=who)
    else:
        if not has_stats:
            raise ValueError(f"{who}: the model's running statistics must be in "
                             "variables['batch_stats'] (flax's layout)")
        new = user_batch_stats(inputs(loader, device), stats_fn, variables, kwargs, who=who)
    if averaged is not None:
        averaged.module = new
    return new


class SWALR(LRScheduler):
    """``torch.optim.swa_utils.SWALR``: anneals each group's lr to ``swa_lr`` over
    ``anneal_epochs`` steps, then keeps it there (:func:`optx.schedules.swalr`; formulas and
    checks from :mod:`optx.schedules.swa`).

    Args:
        optimizer: the wrapped optimizer (an :class:`optx.optim.Optimizer`).
        swa_lr: the lr to anneal to, a float or one per param group.
        anneal_epochs: the number of epochs of the annealing (0: ``swa_lr`` at once).
        anneal_strategy: ``'cos'`` or ``'linear'``.
        last_epoch: the index of the last epoch; ``-1`` (the default) starts the schedule, a larger
            value resumes it (each param group must then hold ``initial_lr``).

    Example:
        >>> import jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(1)], lr=0.1)
        >>> sched = optx.optim.swa_utils.SWALR(opt, swa_lr=0.05, anneal_epochs=3,
        ...                                    anneal_strategy="linear")
        >>> lrs = []
        >>> for epoch in range(5):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     opt.step([jnp.ones(1)])
        ...     sched.step()
        >>> [round(lr, 6) for lr in lrs]
        [0.1, 0.083333, 0.066667, 0.05, 0.05]
    """

    def __init__(self, optimizer: Any, swa_lr: float | list[float], anneal_epochs: int = 10,
                 anneal_strategy: str = "cos", last_epoch: int = -1) -> None:
        swa_lrs = _format_param("swa_lr", optimizer, swa_lr)
        for lr, group in zip(swa_lrs, optimizer.param_groups, strict=True):
            group["swa_lr"] = lr
        F.check_swalr(anneal_epochs, anneal_strategy)
        self._anneal_strategy = anneal_strategy
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    def anneal_func(self, t: Any) -> Any:
        """The annealing curve of ``anneal_strategy`` (torch's ``_cosine_anneal`` or
        ``_linear_anneal``).

        Args:
            t: the annealing progress, in ``[0, 1]``.

        Returns:
            The weight of ``swa_lr`` at that progress.
        """
        return F.swa_anneal(HOST, self._anneal_strategy, t)

    def get_lr(self) -> list[Any]:
        _warn_get_lr_called_within_step(self)
        # torch counts SWALR's steps with _step_count (set in _initial_step), not last_epoch.
        step = self._step_count - 1
        return [
            F.swalr_chainable(HOST, group["lr"], group["swa_lr"], step, self.anneal_epochs,
                              self._anneal_strategy)
            for group in self.optimizer.param_groups
        ]


__all__ = [
    "SWALR",
    "AveragedModel",
    "get_ema_avg_fn",
    "get_ema_multi_avg_fn",
    "get_swa_avg_fn",
    "get_swa_multi_avg_fn",
    "update_bn",
]
