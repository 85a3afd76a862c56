"""What ``Optimizer.step`` compiles: the jitted update of every group, and the closure's loss
and gradients.

The update (:func:`update_fn`) is a pure function ``(params, states, grads, value, captured) ->
(params, states)`` over one tree per group, built from the groups' transformations and the
:class:`~optx.optim.groups.ParamTree` (it holds names, never the optimizer). The optimizer jits
it once per closure code (for LBFGS) and recompiles only when the groups' structure changes;
jax's own cache keys it by the gradients' tree, so a pattern of ``None`` gradients (parameters
torch would skip) compiles once. :class:`ClosureGrads` caches the closure's jitted
``value_and_grad`` by what the closure computes (see :mod:`.closure_cache`).
"""

from __future__ import annotations

import collections
import inspect
import warnings
from typing import Any, Callable

import jax

from optx.optim import closure_cache
from optx.optim.groups import ParamTree
from optx.transformation import apply_updates

_RECOMPILE_WARNING_AT = 5  # compiles of one closure code before step(closure) warns
_BY_IDENTITY: Any = object()  # a closure code that needs its captured arrays' values to trace


def update_fn(txs: list[Any], tree: ParamTree, closure: closure_cache.Template | None,
              counter: list[int]) -> Callable[..., Any]:
    """The step's pure update; for LBFGS ``closure`` is the template of the closure it
    evaluates, whose captured arrays come in as the last argument. ``counter[0]`` counts the
    traces."""

    def run(params, states, grads, value, captured=()):
        counter[0] += 1
        value_fn = None if closure is None else _scalar_loss(
            closure_cache.rebuild(closure, captured))
        new_params, new_states = [], []
        for i, (tx, p, s, g) in enumerate(zip(txs, params, states, grads)):
            extra = {}
            if value_fn is not None:
                def group_fn(q, i=i):
                    allp = list(params)
                    allp[i] = q
                    return value_fn(tree.join(allp))

                extra = {"value": value, "value_fn": group_fn}
            updates, s = tx.update(g, s, p, **extra)
            new_params.append(apply_updates(p, updates))
            new_states.append(s)
        return new_params, new_states

    return run


class ClosureGrads:
    """One optimizer's compiled ``closure -> (loss, grads)``, jitted once per closure code and
    static captures, its captured arrays passed as arguments (see :mod:`.closure_cache`)."""

    def __init__(self) -> None:
        self._fns: dict[Any, Any] = {}
        self._compiles: collections.Counter[Any] = collections.Counter()

    def __call__(self, closure: Callable[..., Any], params: Any) -> tuple[Any, ...]:
        """``(loss, grads, template, captured)`` of ``closure`` at ``params``."""
        template, captured = closure_cache.split(closure)
        if self._fns.get(template.key) is _BY_IDENTITY:
            template, captured = closure_cache.by_identity(closure), ()
        for attempt in range(2):
            fn = self._fns.get(template.key)
            fresh = fn is None
            if fn is None:
                _check_closure(closure)
                self._warn_recompiles(template)
                if len(self._fns) >= 8:
                    self._fns.clear()
                fn = jax.jit(_closure_loss(template))
                self._fns[template.key] = fn
            try:
                loss, grads = fn(params, captured)
                if fresh:
                    self.rekey(closure, template.key, fn)
                return loss, grads, template, captured
            except closure_cache.TRACER_ERRORS:
                # The closure needs a captured array's value while tracing: it was a constant
                # before, so this closure (only) is keyed by identity.
                if attempt or template.cells is None:
                    raise
                self._fns[template.key] = _BY_IDENTITY
                template, captured = closure_cache.by_identity(closure), ()
        raise AssertionError("unreachable")

    def rekey(self, closure: Callable[..., Any], key: Any, fn: Any = None) -> Any:
        """After a trace: ``closure``'s key now (a log it appended to has grown), also mapped to
        ``fn`` (by default the function of ``key``), so that what the trace itself wrote is not
        taken for a new input."""
        new, _ = closure_cache.split(closure)
        fn = self._fns.get(key) if fn is None else fn
        if new.key != key and new.cells is not None and fn is not None:
            self._fns.setdefault(new.key, fn)
        return new.key

    def _warn_recompiles(self, template: closure_cache.Template) -> None:
        """Warns once per closure code compiled ``_RECOMPILE_WARNING_AT`` times: a value it
        reads by value (a number, a list's contents, an attribute) changes between steps, so
        every step pays a compile. Correct, as torch re-reads it, but easily unnoticed."""
        code = getattr(template.fn, "__code__", None)
        if code is None:
            return
        self._compiles[code] += 1
        if self._compiles[code] == _RECOMPILE_WARNING_AT:
            warnings.warn(
                f"step(closure): {template.fn.__qualname__!r} was compiled "
                f"{_RECOMPILE_WARNING_AT} times: a Python value it reads (a captured number, "
                "the contents of a list or dict, an object's attribute) changed between steps, "
                "and each new value recompiles it. Hold values that change every step in jax "
                "arrays (passed to the compiled step without recompiling); see "
                "optx.optim.closure_cache.",
                UserWarning, stacklevel=5,
            )


def _check_closure(closure: Callable[..., Any]) -> None:
    try:
        signature = inspect.signature(closure)
    except (TypeError, ValueError):  # a builtin or C callable: let the call tell
        return
    try:
        signature.bind(None)
    except TypeError:
        raise TypeError(
            "step(closure): the closure must take the params. Write closure(params) -> loss, a "
            "pure function of the params (no zero_grad or backward: optx takes the gradients), "
            "e.g. opt.step(lambda params: loss_fn(params, x, y))"
        ) from None


def _scalar_loss(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` returning its loss as a 0-d array: torch's LBFGS calls ``float(closure())``, so a
    Python number or a one-element array is a loss too."""

    def loss(params: Any) -> Any:
        value = jax.numpy.asarray(fn(params))
        if not jax.numpy.issubdtype(value.dtype, jax.numpy.inexact):  # `return 1`: torch's float()
            value = value.astype(jax.numpy.result_type(float))
        if value.size != 1:
            raise ValueError(
                f"step(closure): the closure must return a scalar loss, got shape {value.shape}")
        return value.reshape(())

    return loss


def _closure_loss(template: closure_cache.Template) -> Callable[..., Any]:
    def value_and_grad(params: Any, captured: tuple[Any, ...]) -> Any:
        loss, grads = jax.value_and_grad(
            _scalar_loss(closure_cache.rebuild(template, captured)))(params)
        # torch's p.grad of a complex parameter is the conjugate of what jax.grad returns.
        return loss, jax.tree_util.tree_map(
            lambda g: jax.numpy.conj(g) if jax.numpy.iscomplexobj(g) else g, grads)

    return value_and_grad
