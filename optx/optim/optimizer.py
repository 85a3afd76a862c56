"""The one stateful, ``torch.optim``-style optimizer over any optx functional constructor.

Each CamelCase class (``Adam``, ``SGD``, ...) is a name plus a constructor, whose signature and
docstring it gets (:mod:`optx.optim.signature`). The optimizer keeps one
:class:`~optx.optim.groups.Slot` per param group beside torch's group dicts, and one
:class:`~optx.optim.groups.ParamTree` mapping the user's params to the groups;
:meth:`Optimizer._commit` is the only place new values are stored (signals deferred, see
:mod:`.interrupts`): a step, a load or a new group is all done or not at all. The step reads
the group dicts as torch does (see :mod:`.groups`); :mod:`.step` is what it compiles,
:mod:`.state_dict` torch's layout and :mod:`.state_view` torch's ``optimizer.state``.

How the params are given decides what :attr:`Optimizer.params` and ``step``'s gradients are:

* one pytree: that pytree;
* torch's list of group dicts: a list with one pytree per group;
* ``(name, array)`` pairs (as ``named_parameters()`` gives them), alone or as each group's
  params: one dict ``{name: array}`` over all groups, in their order, also after
  ``add_param_group``; the gradient of that dict is what ``step`` takes.
"""

from __future__ import annotations

import inspect
from itertools import repeat
from operator import is_not
from typing import Any, Callable

import jax

from optx import validation
from optx.layout import TorchLayout, layout_of
from optx.optim import copies, new_group, param_names
from optx.optim import groups as G
from optx.optim import step as S
from optx.optim.groups import Group, ParamTree, Slot
from optx.optim.hooks import (
    HooksMixin,
    RemovableHandle,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
    with_step_hooks,
)
from optx.optim.interrupts import signals_deferred
from optx.optim.signature import class_doc, torch_init
from optx.optim.state_dict import copy_tree, export_state_dict, extra_state, loaded_slots
from optx.optim.state_view import StateMapping

__all__ = [
    "Optimizer",
    "RemovableHandle",
    "register_optimizer_step_post_hook",
    "register_optimizer_step_pre_hook",
]

_MISSING: Any = object()


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


class Optimizer(HooksMixin):
    """torch.optim.Optimizer's surface over an optx functional constructor.

    A subclass names the constructor (``_constructor = optx.adam``) and gets torch's signature
    from it (positional arguments included, see :mod:`optx.optim.signature`); the fifteen
    ``optx.optim`` optimizers are such subclasses.

    Args:
      params: what torch accepts: an iterable of arrays (a generator is listed, as torch's
        ``list(params)``), ``(name, array)`` pairs as from ``named_parameters()``, a list of
        group dicts ``{'params': ..., 'lr': ...}`` whose other keys override the defaults, or
        any pytree of arrays (one group; a dict's key paths name its leaves).
      **kwargs: the hyperparameters of the subclass's constructor, checked as torch checks
        them (``ValueError`` before the params are looked at); the subclass's own signature
        lists them with torch's defaults.

    Attributes:
      defaults: the constructor's arguments with torch's defaults filled in.
      param_groups: torch's list of group dicts (``params``, every hyperparameter, and
        ``param_names`` for named groups); editing a value takes effect at the next step.
      state: torch's ``optimizer.state`` mapping, parameter array -> dict of its state (see
        :mod:`optx.optim.state_view`).
      opt_state: the functional state, as optax and flax call it (a list, one per group, with
        several groups).
      params: the current parameters (see the module docstring for their shape); assigning a
        tree of the same structure, shapes and dtypes replaces their values (the state stays).
    """

    _constructor: Callable[..., Any]
    # Keys torch's groups hold that are not arguments of the constructor (AdamW's
    # ``decoupled_weight_decay``), with the value torch forces on every group.
    _group_extras: dict[str, Any] = {}
    # The docstring example's arguments after ``params`` (see signature.class_doc).
    _doc_example: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # torch runs the step hooks around the step of the instance's class; a subclass that
        # overrides ``step`` (and calls ``super().step``) gets them around its own.
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "hooked", False):
            cls.step = with_step_hooks(step)  # type: ignore[method-assign]
        if "_constructor" in cls.__dict__:
            if "__init__" not in cls.__dict__:
                cls.__init__ = torch_init(cls)  # type: ignore[method-assign,misc]
            if cls.__doc__ is None:
                cls.__doc__ = class_doc(cls, **cls._doc_example)

    def __init__(self, params: Any, **kwargs: Any) -> None:
        self._construct(params, kwargs)

    def _init_empty(self) -> None:
        self._init_hooks()
        self._slots: list[Slot] = []
        self._tree = ParamTree("tree", [])
        self._extra_state: dict[Any, Any] = {}
        self._jitted: dict[Any, Callable[..., Any]] = {}
        self._cold: set[Any] = set()  # keys of compiled steps not traced yet
        # A list, so the compiled functions count their traces without referencing self.
        self._trace_counter = [0]
        self._closure_grads = S.ClosureGrads()
        self._named_view: dict[str, Any] | None = None
        self._param_ids, self._n_params = frozenset[int](), 0  # the params' ids and count

    def _construct(self, params: Any, arguments: dict[str, Any]) -> None:
        self._init_empty()
        defaults = self._signature_defaults()
        unknown = set(arguments) - set(defaults)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {sorted(unknown)}"
            )
        self.defaults: dict[str, Any] = defaults
        """The constructor's arguments with torch's defaults filled in (a new group's values)."""
        defaults.update(self._clean_hyperparams(arguments))
        defaults.update(self._group_extras)
        # torch checks the hyperparameters before it looks at the params.
        if all(v is not inspect.Parameter.empty for v in defaults.values()):
            self._make_tx(defaults)
        if params is None or isinstance(params, (str, bytes)):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of arrays or "
                f"dicts, but got {type(params).__name__}"
            )
        params = param_names.materialize(params)
        self.param_groups: list[Group] = []
        """torch's list of group dicts: ``params`` (the group's arrays in torch's order), each
        hyperparameter, and ``param_names`` for named groups. An edited value takes effect at
        the next step."""
        if _is_group_list(params):
            self._tree = ParamTree("groups", [])
            groups = list(params)
        else:
            if not jax.tree_util.tree_leaves(params):
                raise ValueError("optimizer got an empty parameter list")
            groups = [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def _signature_defaults(self) -> dict[str, Any]:
        sig = inspect.signature(type(self)._constructor)
        return {
            name: p.default
            for name, p in sig.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    # ------------------------------------------------------------------ the one commit
    def _commit(self, slots: list[Slot], data: dict[int, dict[str, Any]] | None = None,
                run: Callable[..., Any] | None = None, args: tuple[Any, ...] = (),
                tree: ParamTree | None = None, extra: dict[Any, Any] | None = None,
                recompile: bool = False) -> None:
        """Stores new values: the only place that does, and the only one deferring signals, so
        a handler's exception (Ctrl-C, SIGTERM's SystemExit) never lands half-way.

        ``slots``: the groups' slots after the change; ``data``: new contents of group dicts by
        index (one past the end appends a group); ``run(*args) -> (params, states)``: the step's
        donating update, called inside (the old buffers are deleted from its start until the new
        ones are stored); ``tree``/``extra``: a new params map / new non-parameter state
        entries; ``recompile``: the groups' transformations changed."""
        with signals_deferred():
            if run is not None:
                new_params, new_states = run(*args)
                for s, p, st in zip(slots, new_params, new_states):
                    s.params, s.state = p, st
            groups = self.param_groups
            if data:
                for i, g in data.items():
                    if i == len(groups):
                        groups.append(Group(self, i, g))
                    else:
                        dict.clear(groups[i])
                        dict.update(groups[i], g)
            ids: list[int] = []
            for g, s in zip(groups, slots):
                leaves = jax.tree_util.tree_leaves(s.params)
                ids.extend(map(id, leaves))
                dict.__setitem__(g, "params", list(map(leaves.__getitem__, s.order)))
            if recompile:
                self._jitted.clear()
            self._slots = slots
            self._param_ids, self._n_params = frozenset(ids), len(ids)  # step checks grads
            self._named_view = None
            if tree is not None:
                self._tree = tree
            if extra is not None:
                self._extra_state = extra

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a param group (torch's ``add_param_group``): its keys override the defaults.

        Unfreezing a part of a model mid-run is ``opt.add_param_group({'params': pairs,
        'lr': 1e-5})``: with named params the new ``(name, array)`` pairs join :attr:`params`'
        one dict, and ``step`` then takes their gradients too.

        Args:
          param_group: a dict with ``params`` (arrays, ``(name, array)`` pairs or a pytree,
            none of them already in a group; may be empty, as torch allows) and any
            hyperparameters to override the defaults; a missing one takes its value in
            ``defaults``."""
        slot, data, mode = new_group.built(self, param_group)
        self._commit([*self._slots, slot], {len(self._slots): data},
                     tree=ParamTree(mode, [*self._tree.names, list(slot.names or ())]),
                     recompile=True)

    def _clean_hyperparams(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with each hyperparameter as the step reads it: a 1-element array as a
        scalar (torch's ``_to_scalar``) and a list as a tuple (torch takes lists for tuples)."""
        known = {k: _as_tuples(v) for k, v in values.items() if k in self.defaults}
        return {**values, **validation.scalar_hyperparams(known)}

    def _replace_params(self, i: int, value: Any) -> None:
        """``group['params'] = value``. torch keys state by tensor: the same arrays keep their
        state, new ones start from a fresh state."""
        new = new_group.replaced(self, i, value)
        if new is None:  # the same arrays: nothing changes
            return
        slot, data = new
        slots = list(self._slots)
        slots[i] = slot
        tree_names = list(self._tree.names)
        tree_names[i] = list(slot.names or ())
        self._commit(slots, {i: data}, tree=ParamTree(self._tree.mode, tree_names),
                     recompile=True)

    def _make_tx(self, group: dict[str, Any]) -> Any:
        constructor = type(self)._constructor
        accepted = inspect.signature(constructor).parameters
        return constructor(**{k: group[k] for k in self.defaults if k in accepted})

    def _layout_of(self, tx: Any) -> TorchLayout:
        """The torch layout ``tx`` carries; a plain one for a constructor that is not optx's."""
        return layout_of(tx) or TorchLayout(type(self).__name__)

    # ------------------------------------------------------------------ placement (ZeRO)
    def _init_state(self, tx: Any, params: Any) -> Any:
        """A group's initial state for ``params``, placed (:meth:`_place_state`)."""
        return self._place_state(copy_tree(tx.init(params)))

    def _place_params(self, tree: Any) -> Any:
        """Where params (and gradients) live; ZeroRedundancyOptimizer replicates them."""
        return tree

    def _place_state(self, state: Any) -> Any:
        """Where a group's state lives; ZeroRedundancyOptimizer splits it over its mesh."""
        return state

    def _jit(self, run: Callable[..., Any]) -> Callable[..., Any]:
        """Compiles ``run(params, states, grads, value, captured) -> (params, states)``;
        ZeroRedundancyOptimizer overrides it to fix the output shardings."""
        return jax.jit(run, donate_argnums=(0, 1))

    # ------------------------------------------------------------------ access
    @property
    def params(self) -> Any:
        """The current parameters, as the pytree given, a list of them (one per group), or the
        dict of named params (see the module docstring). Assigning a tree of the same
        structure, shapes and dtypes replaces their values and keeps the state."""
        if self._tree.mode != "named":
            return self._tree.join([s.params for s in self._slots])
        if self._named_view is None:
            self._named_view = self._tree.join([s.params for s in self._slots])
        return self._named_view

    @params.setter
    def params(self, tree: Any) -> None:
        trees = self._tree.split(tree, what="params")
        new = []
        for i, (slot, t) in enumerate(zip(self._slots, trees)):
            G.check_like(slot, i, t)
            new.append(slot.replace(params=self._place_params(copy_tree(t))))
        self._commit(new)

    @property
    def opt_state(self) -> Any:
        """The functional states (optax's and flax's ``opt_state``): the state itself for one
        pytree, else a list with one per group."""
        states = [s.state for s in self._slots]
        return states[0] if self._tree.mode == "tree" else states

    @property
    def state(self) -> StateMapping:
        """torch's ``optimizer.state``: ``opt.state[p]`` is parameter ``p``'s state as a dict
        with torch's keys (see :mod:`optx.optim.state_view`)."""
        return StateMapping(self)

    @property
    def trace_count(self) -> int:
        """How many times the update has been traced (compiled) so far."""
        return self._trace_counter[0]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """A no-op: gradients are passed to :meth:`step` explicitly.

        Args:
          set_to_none: torch's argument; there is no ``.grad`` to clear, so it has no effect."""
        del set_to_none

    # ------------------------------------------------------------------ step
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
        slots = self._slots
        for i, (slot, g) in enumerate(zip(slots, self.param_groups)):
            seen = slot.seen  # torch reads the group at each step: any value replaced?
            if any(map(is_not, map(g.get, seen, repeat(_MISSING)), seen.values())):
                slots = self._synced(slots, i)
        loss = value = template = None
        captured: tuple[Any, ...] = ()
        if closure is not None:
            loss, grads, template, captured = self._closure_grads(
                closure, self._tree.join([s.params for s in slots]))
            value = loss
            if not getattr(type(self), "_needs_value_fn", False):
                template, captured = None, ()
        grads = self._place_params(grads)
        grads = [grads] if self._tree.mode == "tree" else self._tree.split(grads)
        params, states = [s.params for s in slots], [s.state for s in slots]
        leaves = jax.tree_util.tree_leaves(grads)
        if not self._param_ids.isdisjoint(map(id, leaves)):
            # opt.step(opt.params): XLA cannot donate a buffer the call also reads.
            grads = copies.unaliased(grads, jax.tree_util.tree_leaves(params))
        if len(leaves) < self._n_params:  # a None gradient skips its parameter: per-parameter
            slots = G.with_steps(slots, grads)  # steps, so the compiled step sees them
            states = [s.state for s in slots]
        fn = self._compiled(template)
        key = None if template is None else template.key
        cold = key in self._cold
        if cold:
            # Traced and compiled before the commit (the call then finds it in jax's caches),
            # so that a Ctrl-C during a long first compile is not held back until it ends.
            if hasattr(fn, "lower") and not jax.config.jax_disable_jit:  # type: ignore[attr-defined]
                fn.lower(params, states, grads, value, captured).compile()
            self._cold.discard(key)
        try:
            self._commit(slots, run=fn, args=(params, states, grads, value, captured))
        except (ValueError, jax.errors.JaxRuntimeError) as e:
            if "donated" not in str(e):  # a gradient that is a state array: nothing donated
                raise
            grads = copies.unaliased(grads, jax.tree_util.tree_leaves(states))
            self._commit(slots, run=fn, args=(params, states, grads, value, captured))
        if cold and template is not None and closure is not None:  # LBFGS traced it again
            self._jitted[self._closure_grads.rekey(closure, key)] = fn
        return loss

    def _synced(self, slots: list[Slot], i: int) -> list[Slot]:
        """``slots`` with group ``i``'s edits applied (see :func:`optx.optim.groups.applied`);
        a new transformation is committed at once, new hyperparameters with the step."""
        new, rebuilt = G.applied(slots[i], self.param_groups[i], self)
        slots = list(slots)
        slots[i] = new
        if rebuilt:
            self._commit(slots, recompile=True)
        return slots

    def _rebuilt(self, slot: Slot, args: dict[str, Any]) -> tuple[Any, Any]:
        """Group ``slot``'s new transformation for ``args`` and its state, carried over."""
        with validation.group_edit():  # torch checks values in __init__, not at a step
            tx = self._make_tx(args)
        state = G.carried_state(slot.state, tx.init(slot.params), slot.layout, len(slot.order))
        return tx, self._place_state(copy_tree(state))

    def _compiled(self, closure: Any) -> Callable[..., Any]:
        """The jitted update for the current groups; for LBFGS ``closure`` is the template of
        the closure it evaluates (see :func:`optx.optim.step.update_fn`)."""
        key = None if closure is None else closure.key
        fn = self._jitted.get(key)
        if fn is None:
            if len(self._jitted) >= 8:  # LBFGS with a fresh closure every step: bound the cache
                self._jitted.clear()
            fn = self._jit(S.update_fn([s.tx for s in self._slots], self._tree, closure,
                                       self._trace_counter))
            self._jitted[key] = fn
            self._cold.add(key)
        return fn

    # ------------------------------------------------------------------ torch surface
    def state_dict(self) -> dict[str, Any]:
        """torch's layout (see :mod:`optx.optim.state_dict`), parameters numbered in torch's
        order, with ``param_names`` in named groups; state_dict hooks run around it."""
        return self._state_dict_with_hooks(lambda: export_state_dict(self, self._full_states()))

    def _full_states(self) -> list[Any]:
        """Each group's whole state (ZeroRedundancyOptimizer gathers its slices)."""
        return [s.state for s in self._slots]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads torch's layout; a state_dict with ``param_names`` loads into named groups by
        name, else by position in torch's order. All groups or none: on any error nothing
        changes, and an interruption (Ctrl-C, a signal handler's exception) never leaves it
        half-loaded. load_state_dict hooks run around it.

        Args:
          state_dict: ``{'state': ..., 'param_groups': ...}`` as :meth:`state_dict` or torch's
            ``optimizer.state_dict()`` gives it (tensors as numpy arrays, see
            :func:`optx.optim.load`); each group's hyperparameters replace the current ones."""
        def load(sd: dict[str, Any]) -> None:
            slots, data = loaded_slots(self, sd)
            self._commit(slots, data, extra=dict(extra_state(sd)), recompile=True)

        self._load_state_dict_with_hooks(state_dict, load)

    def __repr__(self) -> str:
        return copies.describe(self)

    # ------------------------------------------------------------------ copies
    def __getstate__(self) -> dict[str, Any]:
        """What a copy or pickle keeps: torch's (defaults, state, param groups; not the hooks),
        as arrays and plain values. Transformations are rebuilt from their arguments."""
        return copies.saved(self)

    def __setstate__(self, saved: dict[str, Any]) -> None:
        self._init_empty()
        self.defaults = saved["defaults"]
        self.param_groups = []
        self._commit(*copies.restored(self, saved))

