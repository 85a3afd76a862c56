"""``Optimizer.step``: one jitted, buffer-donating update of every group, and what surrounds it.

Per call, the Python work is only what changed: group edits since the last step (a rebuilt
transformation where a structural value flipped, new hyperparameter arrays in the state), the
gradients split per group, and the commit. The compiled update is cached per closure code (for
LBFGS) and recompiled only when the groups' structure changes; jax's own cache keys it by the
gradients' tree, so a pattern of ``None`` gradients (parameters torch would skip) compiles once.
The commit runs with signals deferred (:mod:`.interrupts`): the donated params and state are
never lost to an exception raised by a signal handler.
"""

from __future__ import annotations

import collections
import copy
import inspect
import warnings
from typing import TYPE_CHECKING, Any, Callable

import jax
import numpy as np

from optx import validation
from optx.optim import closure_cache
from optx.optim.groups import leaves_in_order
from optx.optim.hooks import with_step_hooks
from optx.optim.interrupts import signals_deferred
from optx.optim.state_dict import copy_tree
from optx.state import OptimizerState, with_per_leaf_steps
from optx.transformation import apply_updates

_RECOMPILE_WARNING_AT = 5  # compiles of one closure code before step(closure) warns
_BY_IDENTITY: Any = object()  # a closure code that needs its captured arrays' values to trace


def _is_none(x: Any) -> bool:
    return x is None


class StepMixin:
    """The step of :class:`optx.optim.Optimizer` (see the module docstring)."""

    _params: list[Any]
    _states: list[Any]
    _txs: list[Any]
    _meta: list[Any]
    _mode: str
    _changed: set[int]
    _named_view: Any
    if TYPE_CHECKING:  # documented where Optimizer sets them, not listed again on its page
        param_groups: list[Any]
        defaults: dict[str, Any]

    def _init_step(self) -> None:
        self._jitted: dict[Any, Callable[..., Any]] = {}
        self._cold: set[Any] = set()  # keys of compiled steps not traced yet
        # A list, so the compiled functions count their traces without referencing self.
        self._trace_counter = [0]
        self._value_and_grad: dict[Any, Callable[..., Any]] = {}
        self._closure_compiles: collections.Counter[Any] = collections.Counter()
        self._named_view = None

    @property
    def trace_count(self) -> int:
        """How many times the update has been traced (compiled) so far."""
        return self._trace_counter[0]

    # ------------------------------------------------------------------ group edits
    def _sync_groups(self) -> None:
        """Brings the edited groups' transformations and hyperparameter arrays up to date."""
        for i in sorted(self._changed):
            self._rebuild_if_needed(i)
            self._write_hyperparams(i)
        self._changed.clear()

    def _rebuild_if_needed(self, i: int) -> None:
        group = self.param_groups[i]
        meta = self._meta[i]
        layout = self._layout_of(self._txs[i])  # type: ignore[attr-defined]
        structure = self._structure(group, layout)  # type: ignore[attr-defined]
        if structure == meta.built:
            return
        args = {k: group[k] for k in self.defaults}
        with validation.group_edit():  # torch checks values in __init__, not at a step
            tx = self._make_tx(args)  # type: ignore[attr-defined]
        new = tx.init(self._params[i])
        old = self._states[i]
        if isinstance(old, OptimizerState) and isinstance(new, OptimizerState):
            if old.steps is not None:
                new = with_per_leaf_steps(new, len(meta.order))
            # A buffer torch keeps unused (a momentum lowered to 0) stays, with its flag.
            kept = {k: v for k, v in old.slots.items() if k in layout.kept_slots}
            flags = {f for s, f in layout.slot_flags if s in kept and f in old.scalars}
            slots = {**kept, **{k: old.slots.get(k, v) for k, v in new.slots.items()}}
            scalars = {**{f: old.scalars[f] for f in flags},
                       **{k: old.scalars.get(k, v) for k, v in new.scalars.items()}}
            new = new._replace(count=old.count, slots=slots, scalars=scalars, steps=old.steps)
        self._txs[i], self._states[i] = tx, copy_tree(new)
        meta.built, meta.tx_args = structure, args
        self._jitted.clear()

    def _write_hyperparams(self, i: int) -> None:
        """Group ``i``'s values into its state's ``hyperparams``, in the stored dtypes."""
        group, state = self.param_groups[i], self._states[i]
        stored = getattr(state, "hyperparams", None)
        if stored is None:
            return
        hp = copy.copy(stored)  # its type and metadata (optx.state.Hyperparams.fixed) kept
        for k, old in stored.items():
            new = group[k]
            if any(callable(x) for x in jax.tree_util.tree_leaves(new, is_leaf=callable)):
                # A schedule given to the constructor: the state advances it itself.
                hp[k] = old
                continue
            leaves, treedef = jax.tree_util.tree_flatten(old)
            try:
                new_leaves = treedef.flatten_up_to(new)  # type: ignore[attr-defined]  # PyTreeDef has no stubs
            except (ValueError, TypeError) as e:
                raise ValueError(
                    f"param group hyperparameter {k!r} must be shaped like {old!r}, got {new!r}"
                ) from e
            hp[k] = jax.tree_util.tree_unflatten(
                treedef, [np.asarray(n, dtype=o.dtype) for o, n in zip(leaves, new_leaves)])
        self._states[i] = state._replace(hyperparams=hp)

    # ------------------------------------------------------------------ gradients
    def _grads_per_group(self, grads: Any) -> list[Any]:
        """``grads`` as one tree per group (the shape :attr:`params` has)."""
        if self._mode == "tree":
            return [grads]
        if self._mode == "groups":
            if not isinstance(grads, (list, tuple)) or len(grads) != len(self._params):
                got = len(grads) if isinstance(grads, (list, tuple)) else type(grads).__name__
                raise ValueError(
                    f"expected gradients for {len(self._params)} param groups (a list mirroring "
                    f"opt.params), got {got}"
                )
            return list(grads)
        if not isinstance(grads, dict):
            raise ValueError(
                "expected the gradients as a dict keyed by the parameter names, like opt.params; "
                f"got {type(grads).__name__}"
            )
        names: list[list[str]] = [m.names for m in self._meta]
        wanted = {n for ns in names for n in ns}
        if grads.keys() != wanted:
            missing = [n for ns in names for n in ns if n not in grads]
            extra = [n for n in grads if n not in wanted]
            raise ValueError(
                f"the gradients do not match opt.params: missing {missing}, unexpected {extra} "
                "(a parameter without a gradient takes None)"
            )
        return [[grads[n] for n in ns] for ns in names]

    def _unaliased(self, grads: list[Any]) -> list[Any]:
        """``grads`` with any leaf that is a parameter or state array copied: the step donates
        those, and XLA cannot donate a buffer the same call also reads."""
        donated = {id(x) for tree in (self._params, self._states)
                   for x in jax.tree_util.tree_leaves(tree)}
        leaves, treedef = jax.tree_util.tree_flatten(grads, is_leaf=_is_none)
        if not any(id(g) in donated for g in leaves):
            return grads
        copied = [copy_tree(g) if id(g) in donated else g for g in leaves]
        return treedef.unflatten(copied)  # type: ignore[attr-defined,no-any-return]

    def _split_steps(self, grads: list[Any]) -> None:
        """Gives per-parameter step counts to the states of groups whose gradients skip a
        parameter (a ``None`` leaf), before the call, so the compiled step sees the state's
        final structure: one compile per pattern of ``None`` gradients."""
        for i, (g, s, p) in enumerate(zip(grads, self._states, self._params)):
            if not isinstance(s, OptimizerState) or s.steps is not None:
                continue
            try:
                leaves = jax.tree_util.tree_structure(p).flatten_up_to(g)  # type: ignore[attr-defined]
            except (ValueError, TypeError):
                continue  # the update names the mismatch
            if any(x is None for x in leaves):
                self._states[i] = with_per_leaf_steps(s, len(self._meta[i].order))

    def _view(self) -> Callable[[list[Any]], Any]:
        """A pure function turning one tree per group into :attr:`params`' shape (used inside
        the compiled step, so it holds the names, not the optimizer)."""
        mode = self._mode
        names = [list(m.names or ()) for m in self._meta]

        def view(trees: list[Any]) -> Any:
            if mode == "tree":
                return trees[0]
            if mode == "groups":
                return list(trees)
            return {n: x for ns, t in zip(names, trees) for n, x in zip(ns, t)}

        return view

    # ------------------------------------------------------------------ step
    def _compiled(self, closure: closure_cache.Template | None) -> Callable[..., Any]:
        """The jitted update; for LBFGS ``closure`` is the template of the closure it evaluates,
        whose captured arrays come in as ``run``'s last argument."""
        key = None if closure is None else closure.key
        if key in self._jitted:
            return self._jitted[key]
        if len(self._jitted) >= 8:  # LBFGS with a fresh closure every step: bound the cache
            self._jitted.clear()
        txs = list(self._txs)
        counter = self._trace_counter
        view = self._view()

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
                        return value_fn(view(allp))

                    extra = {"value": value, "value_fn": group_fn}
                updates, s = tx.update(g, s, p, **extra)
                new_params.append(apply_updates(p, updates))
                new_states.append(s)
            return new_params, new_states

        fn = self._jit(run)
        self._jitted[key] = fn
        self._cold.add(key)
        return fn

    def _jit(self, run: Callable[..., Any]) -> Callable[..., Any]:
        """Compiles ``run(params, states, grads, value, captured) -> (params, states)``;
        ZeroRedundancyOptimizer overrides it to fix the output shardings."""
        return jax.jit(run, donate_argnums=(0, 1))

    @with_step_hooks
    def step(self, grads: Any = None, closure: Callable[[Any], Any] | None = None) -> Any:
        """One update: ``opt.step(grads)``, or ``opt.step(closure)`` as in torch.

        ``grads`` is shaped like :attr:`params`. A ``None`` leaf skips its parameter exactly as
        torch skips a parameter whose ``.grad`` is None (a frozen layer, an unused head): its
        value, every state slot and its step count stay as they are (the first such step
        gives the state per-parameter step counts; each pattern of ``None`` leaves compiles
        once). A gradient that is a parameter array itself (``opt.step(opt.params)``) is
        copied before the update, which donates the parameters.

        ``closure(params) -> loss`` is a pure function of the params, given positionally
        (``opt.step(closure)``, torch's call) or as ``closure=``: optx takes its gradients itself
        (no ``zero_grad``/``backward``), returns the loss at the params before the update, and
        for LBFGS evaluates it again in its iterations::

            loss = opt.step(lambda params: loss_fn(params, x, y))

        The closure is compiled once per code and captured Python values, not per function
        object: a closure defined inside the loop, capturing the current batch, compiles on the
        first step only (its captured arrays are passed to the compiled step). The Python
        values it reads (numbers, list and dict contents, attributes) are read at every step,
        as torch does, and a changed one recompiles (see :mod:`optx.optim.closure_cache`). It is
        traced, not run eagerly: a ``print`` in it prints tracers, once per trace (more for
        LBFGS, traced again inside the update), and nothing on later steps. To print values at
        every evaluation, use ``jax.debug.print``::

            def closure(params):
                loss = loss_fn(params, x, y)
                jax.debug.print("loss {loss}", loss=loss)
                return loss

        Args:
          grads: the gradients, shaped like :attr:`params` (``None`` leaves allowed); or the
            closure, as torch's positional ``opt.step(closure)``.
          closure: ``closure(params) -> loss``; its gradients are taken at :attr:`params`.

        Returns:
          The closure's loss at the params before the update, or ``None`` without a closure.

        Step hooks (:meth:`register_step_pre_hook`, ...) run around it as in torch. An
        exception at any point (a hook, the closure, tracing, a signal handler's
        ``KeyboardInterrupt`` or ``SystemExit``) leaves :attr:`params` and :attr:`state`
        usable: the values from before the step, or after it.
        """
        if closure is None and callable(grads):
            grads, closure = None, grads  # torch's opt.step(closure)
        if grads is None and closure is None:
            raise ValueError("step needs grads or a closure: opt.step(grads) or opt.step(closure)")
        if self._changed:
            self._sync_groups()
        loss = value = template = None
        captured: tuple[Any, ...] = ()
        if closure is not None:
            loss, grads, template, captured = self._closure_value_and_grad(closure)
            value = loss
            if not getattr(type(self), "_needs_value_fn", False):
                template, captured = None, ()
        grads_list = self._unaliased(self._grads_per_group(grads))
        self._split_steps(grads_list)
        fn = self._compiled(template)
        key = None if template is None else template.key
        if key in self._cold:
            # Traced and compiled before the commit (the call below then finds it in jax's
            # caches), so that a Ctrl-C during a long first compile is not held back until it
            # ends.
            if hasattr(fn, "lower") and not jax.config.jax_disable_jit:  # type: ignore[attr-defined]
                fn.lower(self._params, self._states, grads_list, value, captured).compile()
            self._cold.discard(key)
        # The call donates (deletes) the old params and state: from its start until the new
        # ones are stored, signals are held back, so a handler's exception never lands between.
        with signals_deferred():
            new_params, new_states = fn(self._params, self._states, grads_list, value, captured)
            self._params = list(new_params)
            self._states = list(new_states)
            self._named_view = None
            for g, p, m in zip(self.param_groups, self._params, self._meta):
                dict.__setitem__(g, "params", leaves_in_order(p, m.order))
        return loss

    def _closure_value_and_grad(self, closure: Callable[..., Any]) -> tuple[Any, ...]:
        """``(loss, grads, template, captured)``: jitted once per closure code and static
        captures, its captured arrays passed as arguments (see :mod:`.closure_cache`)."""
        template, captured = closure_cache.split(closure)
        if self._value_and_grad.get(template.key) is _BY_IDENTITY:
            template, captured = closure_cache.by_identity(closure), ()
        for attempt in range(2):
            fn = self._value_and_grad.get(template.key)
            if fn is None:
                _check_closure(closure)
                self._warn_recompiles(template)
                if len(self._value_and_grad) >= 8:
                    self._value_and_grad.clear()
                fn = jax.jit(_closure_loss(template))
                self._value_and_grad[template.key] = fn
            try:
                loss, grads = fn(self.params, captured)  # type: ignore[attr-defined]
                return loss, grads, template, captured
            except closure_cache.TRACER_ERRORS:
                # The closure needs a captured array's value while tracing: it was a constant
                # before, so this closure (only) is keyed by identity.
                if attempt or template.cells is None:
                    raise
                self._value_and_grad[template.key] = _BY_IDENTITY
                template, captured = closure_cache.by_identity(closure), ()
        raise AssertionError("unreachable")

    def _warn_recompiles(self, template: closure_cache.Template) -> None:
        """Warns once per closure code compiled ``_RECOMPILE_WARNING_AT`` times: a value it
        reads by value (a number, a list's contents, an attribute) changes between steps, so
        every step pays a compile. Correct, as torch re-reads it, but easily unnoticed."""
        code = getattr(template.fn, "__code__", None)
        if code is None:
            return
        self._closure_compiles[code] += 1
        if self._closure_compiles[code] == _RECOMPILE_WARNING_AT:
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
