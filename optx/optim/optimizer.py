"""The one stateful, ``torch.optim``-style optimizer over any optx functional constructor.

Each CamelCase class (``Adam``, ``SGD``, ...) is a name plus a constructor; everything else lives
here. The group dicts in ``param_groups`` are the source of truth for hyperparameters: before each
step their float values are written into each group's ``state.hyperparams`` (as arrays of the
stored dtype, so editing ``group['lr']`` never recompiles). A structural flag (``amsgrad``, or a
``momentum`` raised from 0, which allocates a buffer) rebuilds that group's transformation.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import signal
import threading
import warnings
import weakref
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from optx import validation
from optx.layout import TorchLayout, layout_of
from optx.optim import closure_cache, param_names
from optx.optim.hooks import (
    HooksMixin,
    RemovableHandle,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
    with_step_hooks,
)
from optx.optim.state_dict import export_state_dict, import_state_dict
from optx.transformation import apply_updates

__all__ = [
    "Optimizer",
    "RemovableHandle",
    "register_optimizer_step_post_hook",
    "register_optimizer_step_pre_hook",
]

# Constructor arguments that are torch implementation switches; kept in the groups for torch's
# layout and ignored by the math.
_FLOAT_TYPES = (float, int, np.floating, np.integer)
_RECOMPILE_WARNING_AT = 5  # compiles of one closure code before step(closure) warns
_BY_IDENTITY: Any = object()  # a closure code that needs its captured arrays' values to trace


def _is_group_list(params: Any) -> bool:
    return (
        isinstance(params, (list, tuple))
        and len(params) > 0
        and all(isinstance(g, dict) and "params" in g for g in params)
    )


def _as_tuples(value: Any) -> Any:
    """A list (``betas: [0.9, 0.999]`` from a YAML or JSON config) as the tuple torch's defaults
    are, nested too: the state holds a tuple there and the step matches the structure."""
    if isinstance(value, list) or (isinstance(value, tuple) and not hasattr(value, "_fields")):
        return tuple(_as_tuples(v) for v in value)
    return value


def _signature_defaults(constructor: Callable[..., Any]) -> dict[str, Any]:
    sig = inspect.signature(constructor)
    return {
        name: p.default
        for name, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


class Optimizer(HooksMixin):
    """torch.optim.Optimizer's surface over an optx functional constructor."""

    _constructor: Callable[..., Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # torch runs the step hooks around the step of the instance's class; a subclass that
        # overrides ``step`` (and calls ``super().step``) gets them around its own.
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "hooked", False):
            cls.step = with_step_hooks(step)  # type: ignore[method-assign]

    def __init__(self, params: Any, **kwargs: Any) -> None:
        self._init_hooks()
        defaults = _signature_defaults(type(self)._constructor)
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {sorted(unknown)}"
            )
        self.defaults: dict[str, Any] = defaults
        defaults.update(self._clean_hyperparams(kwargs))
        params = param_names.materialize(params)
        # One pytree: params and grads are that tree, until add_param_group adds a second group.
        self._single = not _is_group_list(params)
        if self._single and not jax.tree_util.tree_leaves(params):
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = []
        self._txs: list[Any] = []
        self._states: list[Any] = []
        self._built: list[Any] = []
        self._params: list[Any] = []
        self._param_names: list[list[str] | None] = []  # per group, in leaf order
        self._name_kinds: list[str | None] = []
        # The caller's arrays of each group, by id: the params are copied, so only these tell
        # that an array given again is already optimized (torch compares tensors by identity).
        self._given: list[dict[int, weakref.ref[Any]]] = []
        self._jitted: dict[Any, Callable[..., Any]] = {}
        self.trace_count = 0
        groups = [{"params": params}] if self._single else list(params)
        self._value_and_grad: dict[Any, Callable[..., Any]] = {}
        self._closure_compiles: collections.Counter[Any] = collections.Counter()
        for g in groups:
            self.add_param_group(g)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError("param_group must be a dict with a 'params' entry")
        # torch keeps unknown keys (e.g. 'initial_lr', user tags); they are simply not passed on.
        group = self._clean_hyperparams(
            {k: v for k, v in param_group.items() if k not in ("params", "param_names")})
        for k, v in self.defaults.items():
            if k not in group and v is inspect.Parameter.empty:
                raise ValueError(
                    "parameter group didn't specify a value of required optimization parameter "
                    + k
                )
            group.setdefault(k, v)
        raw, names, explicit = param_names.split_named(
            param_names.materialize(param_group["params"], group=True))
        given = self._check_disjoint(raw, skip=None)
        given_names = param_group.get("param_names")
        if names is None and given_names is not None:  # a group rebuilt from a state_dict's groups
            if len(given_names) != len(jax.tree_util.tree_leaves(raw)):
                raise ValueError(param_names.MIXED)
            names, explicit = list(given_names), True
        # torch's rule for its own inputs: all groups given as (name, tensor) pairs or none
        # (a pytree's key-path names are JAX's addition and mix with either).
        kind = "pairs" if explicit else ("tree" if names is not None else None)
        kinds = set(self._name_kinds)
        if (kind == "pairs" and None in kinds) or (kind is None and "pairs" in kinds):
            raise ValueError(
                "all optimizer param groups should be with/without names. cannot add param "
                f"group {'with' if kind else 'without'} names to the optimizer"
            )
        if names is not None:
            group["param_names"] = list(names)
        # Own copies: the step donates params and state, which must not delete the caller's
        # arrays, and no two donated leaves may share a buffer.
        params = _copy_tree(raw)
        tx = self._make_tx(group)
        layout = self._layout_of(tx)
        if self.param_groups and not layout.supports_param_groups:
            raise ValueError(
                f"{layout.torch_name} doesn't support per-parameter options (parameter groups)"
            )
        state = _copy_tree(tx.init(params))
        # A second group makes the optimizer a multi-group one: params, grads and state become
        # lists, one entry per group, as for an optimizer built from a list of groups.
        if self.param_groups:
            self._single = False
        self._given.append(given)
        self._params.append(params)
        self._param_names.append(names)
        self._name_kinds.append(kind)
        self._txs.append(tx)
        self._states.append(state)
        self._built.append(self._structure(group, layout))
        full = {"params": params, **dict(sorted(group.items()))}
        self.param_groups.append(_Group(self, len(self.param_groups), full))
        self._jitted.clear()

    def _clean_hyperparams(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with each hyperparameter as the step reads it: a 1-element array as a
        scalar (torch's ``_to_scalar``) and a list as a tuple (torch takes lists for tuples)."""
        known = {k: _as_tuples(v) for k, v in values.items() if k in self.defaults}
        return {**values, **validation.scalar_hyperparams(known)}

    def _check_disjoint(self, params: Any, skip: int | None) -> dict[int, weakref.ref[Any]]:
        """The caller's arrays of a new group (for group ``skip``, a replacement), by id; raises
        torch's error when one of them is already in another group."""
        given = {}
        for leaf in jax.tree_util.tree_leaves(params):
            with contextlib.suppress(TypeError):  # a Python scalar: no identity to compare
                given[id(leaf)] = weakref.ref(leaf)
        for i, (old, current) in enumerate(zip(self._given, self._params)):
            if i == skip:
                continue
            ours = {id(x): x for x in jax.tree_util.tree_leaves(current)}
            for key, ref in given.items():
                leaf = ref()
                seen = old.get(key)
                if (seen is not None and seen() is leaf) or ours.get(key) is leaf:
                    raise ValueError("some parameters appear in more than one parameter group")
        return given

    def _replace_params(self, i: int, params: Any, names: list[str] | None) -> None:
        """Installs new params for group ``i`` (``group['params'] = ...``). torch keys state by
        tensor: the same arrays keep their state, new ones start from a fresh state."""
        old = self._params[i]
        new_leaves, new_def = jax.tree_util.tree_flatten(params)
        old_leaves, old_def = jax.tree_util.tree_flatten(old)
        same = new_def == old_def and all(a is b for a, b in zip(new_leaves, old_leaves))  # type: ignore[operator]  # PyTreeDef has no stubs
        given = self._check_disjoint(params, skip=i)
        if same:
            params = old
        else:
            params = _copy_tree(params)
            self._states[i] = self._fresh_state(i, params)
            self._given[i] = given
        self._params[i] = params
        self._param_names[i] = names
        self._jitted.clear()

    def _fresh_state(self, i: int, params: Any) -> Any:
        """Group ``i``'s initial state for ``params`` (ZeroRedundancyOptimizer shards it)."""
        return _copy_tree(self._txs[i].init(params))

    def _make_tx(self, group: dict[str, Any]) -> Any:
        args = {k: group[k] for k in self.defaults}
        return type(self)._constructor(**args)

    def _layout_of(self, tx: Any) -> TorchLayout:
        """The torch layout ``tx`` carries; a plain one for a constructor that is not optx's."""
        return layout_of(tx) or TorchLayout(type(self).__name__)

    def _structure(self, group: dict[str, Any], layout: TorchLayout) -> tuple[Any, ...]:
        """What, if changed, needs a new transformation: non-float arguments, and whether a
        hyperparameter of ``layout.structural_zeros`` is zero (torch allocates SGD's momentum
        buffer only for a nonzero momentum)."""
        items = []
        for k in self.defaults:
            v = group[k]
            if isinstance(v, bool) or not isinstance(v, (*_FLOAT_TYPES, tuple, list)):
                items.append((k, _freeze(v)))
            elif k in layout.structural_zeros:
                items.append((k, v != 0))
        return tuple(items)

    def _replace_group_state(self, i: int, group: dict[str, Any], tx: Any, state: Any) -> None:
        """Installs group ``i``'s loaded hyperparameters (``group``, without ``params``),
        transformation and state (``load_state_dict``'s commit)."""
        g = self.param_groups[i]
        params = g["params"]
        dict.clear(g)
        dict.update(g, {"params": params, **group})
        self._txs[i], self._states[i] = tx, state
        self._built[i] = self._structure(g, self._layout_of(tx))
        self._jitted.clear()

    def _rebuild_if_needed(self, i: int) -> None:
        group = self.param_groups[i]
        layout = self._layout_of(self._txs[i])
        structure = self._structure(group, layout)
        # A momentum lowered to 0 keeps its buffer (the math handles 0); only raising it from a
        # buffer-less 0 needs a new transformation.
        structure = tuple(
            (k, True) if k in layout.structural_zeros and dict(self._built[i]).get(k) else (k, v)
            for k, v in structure
        )
        if structure == self._built[i]:
            return
        tx = self._make_tx(group)
        new = tx.init(self._params[i])
        old = self._states[i]
        if hasattr(old, "slots") and hasattr(new, "slots"):
            slots = {k: old.slots.get(k, v) for k, v in new.slots.items()}
            scalars = {k: old.scalars.get(k, v) for k, v in new.scalars.items()}
            new = new._replace(count=old.count, slots=slots, scalars=scalars)
        self._txs[i], self._states[i], self._built[i] = tx, _copy_tree(new), structure
        self._jitted.clear()

    # ------------------------------------------------------------------ access
    @property
    def params(self) -> Any:
        return self._params[0] if self._single else list(self._params)

    @property
    def state(self) -> Any:
        """The functional states, one per group (the state itself for a single pytree)."""
        return self._states[0] if self._single else list(self._states)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """A no-op: gradients are passed to :meth:`step` explicitly."""
        del set_to_none

    def _hyperparam_args(self) -> list[Any]:
        out = []
        for group, state in zip(self.param_groups, self._states):
            stored = state.hyperparams
            hp = {}
            for k, old in stored.items():
                new = group[k]
                if jax.tree_util.tree_leaves(new, is_leaf=callable) and any(
                    callable(x) for x in jax.tree_util.tree_leaves(new, is_leaf=callable)
                ):
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
                    treedef,
                    [np.asarray(n, dtype=o.dtype) for o, n in zip(leaves, new_leaves)]
                )
            out.append(hp)
        return out

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
        single = self._single

        def run(params, states, grads, hps, value, captured=()):
            self.trace_count += 1
            value_fn = None if closure is None else closure_cache.rebuild(closure, captured)
            new_params, new_states = [], []
            for i, (tx, p, s, g, hp) in enumerate(zip(txs, params, states, grads, hps)):
                s = s._replace(hyperparams=hp)
                extra = {}
                if value_fn is not None:
                    def group_fn(q, i=i):
                        allp = list(params)
                        allp[i] = q
                        return value_fn(allp[0] if single else allp)

                    extra = {"value": value, "value_fn": group_fn}
                updates, s = tx.update(g, s, p, **extra)
                new_params.append(apply_updates(p, updates))
                new_states.append(s)
            return new_params, new_states

        fn = self._jit(run)
        self._jitted[key] = fn
        return fn

    def _jit(self, run: Callable[..., Any]) -> Callable[..., Any]:
        """Compiles ``run(params, states, grads, hyperparams, value, captured) -> (params,
        states)``;
        ZeroRedundancyOptimizer overrides it to fix the output shardings."""
        return jax.jit(run, donate_argnums=(0, 1))

    @with_step_hooks
    def step(self, grads: Any = None, closure: Callable[[Any], Any] | None = None) -> Any:
        """One update: ``opt.step(grads)``, or ``opt.step(closure)`` as in torch.

        ``grads`` is a pytree shaped like :attr:`params` (a list of them, one per param group,
        with several groups). ``closure(params) -> loss`` is a pure function of the params,
        given positionally (``opt.step(closure)``, torch's call) or as ``closure=``: optx takes
        its gradients itself (no ``zero_grad``/``backward``), returns the loss at the params
        before the update, and for LBFGS evaluates it again in its iterations::

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

        Step hooks (:meth:`register_step_pre_hook`, ...) run around it as in torch. An
        exception or ``KeyboardInterrupt`` at any point (a hook, the closure, tracing, or a
        Ctrl-C as the step finishes) leaves :attr:`params` and :attr:`state` usable: the values
        from before the step, or after it.
        """
        if closure is None and callable(grads):
            grads, closure = None, grads  # torch's opt.step(closure)
        if grads is None and closure is None:
            raise ValueError("step needs grads or a closure: opt.step(grads) or opt.step(closure)")
        for i in range(len(self.param_groups)):
            self._rebuild_if_needed(i)
        loss = value = template = None
        captured: tuple[Any, ...] = ()
        if closure is not None:
            loss, grads, template, captured = self._closure_value_and_grad(closure)
            value = loss
            if not getattr(type(self), "_needs_value_fn", False):
                template, captured = None, ()
        grads_list = [grads] if self._single else list(grads)
        if len(grads_list) != len(self._params):
            raise ValueError(
                f"expected gradients for {len(self._params)} param groups, got {len(grads_list)}"
            )
        fn = self._compiled(template)
        hps = self._hyperparam_args()
        # The call donates (deletes) the old params and state: from its start until the new
        # ones are stored, a Ctrl-C is held back, so they are never lost in between.
        with _interrupts_deferred():
            new_params, new_states = fn(
                list(self._params), list(self._states), grads_list, hps, value, captured
            )
            self._params = list(new_params)
            self._states = list(new_states)
            for g, p in zip(self.param_groups, self._params):
                dict.__setitem__(g, "params", p)
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
                loss, grads = fn(self.params, captured)
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

    # ------------------------------------------------------------------ torch surface
    def state_dict(self) -> dict[str, Any]:
        """torch's layout (see :mod:`optx.optim.state_dict`), with ``param_names`` in named
        groups (see :mod:`optx.optim.param_names`); state_dict hooks run around it."""
        return self._state_dict_with_hooks(
            lambda: param_names.to_export_order(self, export_state_dict(self))
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads torch's layout; a state_dict with ``param_names`` loads into named groups by
        name, not position. On any error nothing changes. load_state_dict hooks run around it."""
        def load(sd: dict[str, Any]) -> None:
            by_name, names = param_names.to_leaf_order(self, sd)
            import_state_dict(self, by_name)
            for group, kept in zip(self.param_groups, names):
                if kept is not None:
                    dict.__setitem__(group, "param_names", list(kept))

        self._load_state_dict_with_hooks(state_dict, load)

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            if i:
                lines.append("")
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


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


def _closure_loss(template: closure_cache.Template) -> Callable[..., Any]:
    def value_and_grad(params: Any, captured: tuple[Any, ...]) -> Any:
        return jax.value_and_grad(closure_cache.rebuild(template, captured))(params)

    return value_and_grad


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Holds back SIGINT (Ctrl-C) for the block, then delivers it to the previous handler.

    Only the main thread receives signals, and only it may install a handler.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is None):  # a handler Python cannot restore
        yield
        return
    received: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, received[0])
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


def _copy_tree(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)


def _freeze(v: Any) -> Any:
    try:
        hash(v)
        return v
    except TypeError:
        return id(v)


class _Group(dict):
    """A param group dict; assigning ``params`` replaces the group's parameters."""

    def __init__(self, owner: Optimizer, index: int, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._owner = owner
        self._index = index

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "params":
            value, names, _ = param_names.split_named(param_names.materialize(value, group=True))
            self._owner._replace_params(self._index, value, names)
            value = self._owner._params[self._index]
            if names is not None:
                super().__setitem__("param_names", list(names))
            else:
                self.pop("param_names", None)
        elif key in self._owner.defaults:  # a 1-element array as a scalar, a list as a tuple
            value = self._owner._clean_hyperparams({key: value})[key]
        super().__setitem__(key, value)
