"""The one stateful, ``torch.optim``-style optimizer over any optx functional constructor.

Each CamelCase class (``Adam``, ``SGD``, ...) is a name plus a constructor: it gets torch's
signature and docstring from it (:mod:`optx.optim.signature`). Everything else lives here and in
the modules it is split into: param groups (:mod:`.groups`), the compiled step (:mod:`.step`),
torch's ``optimizer.state`` mapping (:mod:`.state_view`) and the state_dict layout
(:mod:`.state_dict`). The group dicts in ``param_groups`` are the source of truth for
hyperparameters: an edited value is written into that group's ``state.hyperparams`` before the
next step (an array of the stored dtype, so editing ``group['lr']`` never recompiles); a
structural one (``amsgrad``), or one of the layout's ``structural_zeros`` crossing zero (a
``momentum`` raised from 0, which allocates a buffer, a ``weight_decay`` set to 0), rebuilds that
group's transformation: torch switches branch there, and optx compiles only the branches the
groups take.

How the params are given decides what :attr:`Optimizer.params` and ``step``'s gradients are:

* one pytree: that pytree;
* torch's list of group dicts: a list with one pytree per group;
* ``(name, array)`` pairs (as ``named_parameters()`` gives them), alone or as each group's
  params: one dict ``{name: array}`` over all groups, in their order, also after
  ``add_param_group``; the gradient of that dict is what ``step`` takes.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable

import jax
import numpy as np

from optx import validation
from optx.layout import TorchLayout, layout_of
from optx.optim import param_names
from optx.optim.groups import Group, Meta, given_arrays, leaves_in_order
from optx.optim.hooks import (
    HooksMixin,
    RemovableHandle,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
    with_step_hooks,
)
from optx.optim.interrupts import signals_deferred
from optx.optim.signature import class_doc, torch_init
from optx.optim.state_dict import copy_tree, export_state_dict, extra_state, load_groups
from optx.optim.state_view import StateMapping
from optx.optim.step import StepMixin

__all__ = [
    "Optimizer",
    "RemovableHandle",
    "register_optimizer_step_post_hook",
    "register_optimizer_step_pre_hook",
]

_FLOAT_TYPES = (float, int, np.floating, np.integer)
_DUPLICATE = (
    "optimizer contains a parameter group with duplicate parameters; in future, this will "
    "cause an error; see github.com/pytorch/pytorch/issues/40967 for more information"
)


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


def _freeze(v: Any) -> Any:
    try:
        hash(v)
        return v
    except TypeError:
        return id(v)


class Optimizer(StepMixin, HooksMixin):
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
      params: the current parameters (see the module docstring for their shape).
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

    def _construct(self, params: Any, arguments: dict[str, Any]) -> None:
        self._init_hooks()
        self._init_step()
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
        self._params: list[Any] = []
        self._states: list[Any] = []
        self._txs: list[Any] = []
        self._meta: list[Meta] = []
        self._extra_state: dict[Any, Any] = {}
        self._changed: set[int] = set()
        if _is_group_list(params):
            self._mode = "groups"
            groups = list(params)
        else:
            self._mode = "tree"
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

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a param group (torch's ``add_param_group``): its keys override the defaults.

        Unfreezing a part of a model mid-run is ``opt.add_param_group({'params': pairs,
        'lr': 1e-5})``: with named params the new ``(name, array)`` pairs join :attr:`params`'
        one dict, and ``step`` then takes their gradients too.

        Args:
          param_group: a dict with ``params`` (arrays, ``(name, array)`` pairs or a pytree,
            none of them already in a group) and any hyperparameters to override the
            defaults; a missing one takes its value in ``defaults``."""
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
        group.update(self._group_extras)
        raw, names, explicit = param_names.split_named(
            param_names.materialize(param_group["params"], group=True))
        # torch refuses an empty params list in __init__ only: a later empty group is
        # accepted (schedulefree's test_foreach builds one).
        given = self._check_disjoint(raw, skip=None)
        if _has_duplicates(raw):
            warnings.warn(_DUPLICATE, UserWarning, stacklevel=3)
        given_names = param_group.get("param_names")
        if names is None and given_names is not None:  # a group rebuilt from a state_dict's groups
            if len(given_names) != len(jax.tree_util.tree_leaves(raw)):
                raise ValueError(param_names.MIXED)
            names, explicit = list(given_names), True
        kind = "pairs" if explicit else ("tree" if names is not None else None)
        self._check_name_kinds(kind)
        order = (list(range(len(names))) if kind == "pairs" and names is not None
                 else param_names.torch_order(raw))
        # Own copies: the step donates params and state, which must not delete the caller's
        # arrays, and no two donated leaves may share a buffer.
        params = copy_tree(raw)
        tx = self._make_tx(group)
        layout = self._layout_of(tx)
        if self.param_groups and not layout.supports_param_groups:
            raise ValueError(
                f"{layout.torch_name} doesn't support per-parameter options (parameter groups)"
            )
        state = self._init_state(tx, params)
        meta = Meta(names, kind, order, given, self._structure(group, layout),
                    {k: group[k] for k in self.defaults if k in group})
        with signals_deferred():  # all of the group or none of it
            if self.param_groups and self._mode == "tree":
                # A second group makes the optimizer a multi-group one: params, grads and state
                # become lists, one entry per group.
                self._mode = "groups"
            if kind == "pairs" and not self.param_groups:
                self._mode = "named"
            self._params.append(params)
            self._txs.append(tx)
            self._states.append(state)
            self._meta.append(meta)
            data = {"params": leaves_in_order(params, order), **dict(sorted(group.items()))}
            if names is not None:
                data["param_names"] = [names[j] for j in order]
            self.param_groups.append(Group(self, len(self.param_groups), data))
            self._invalidate()

    def _check_name_kinds(self, kind: str | None) -> None:
        """torch's rule: all groups given as ``(name, array)`` pairs or none (a pytree's key-path
        names are JAX's addition and mix with either)."""
        kinds = {m.kind for m in self._meta}
        if (kind == "pairs" and None in kinds) or (kind is None and "pairs" in kinds) or (
                self._mode == "named" and kind != "pairs" and self.param_groups):
            raise ValueError(
                "all optimizer param groups should be with/without names. cannot add param "
                f"group {'with' if kind else 'without'} names to the optimizer"
            )

    def _clean_hyperparams(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with each hyperparameter as the step reads it: a 1-element array as a
        scalar (torch's ``_to_scalar``) and a list as a tuple (torch takes lists for tuples)."""
        known = {k: _as_tuples(v) for k, v in values.items() if k in self.defaults}
        return {**values, **validation.scalar_hyperparams(known)}

    def _loaded_hyperparams(self, group: dict[str, Any]) -> dict[str, Any]:
        """A loaded group's hyperparameters: cleaned, with the values torch forces; a numeric
        one (its default is a number, or a tuple of them) that is None or not a number is
        refused with its name."""
        defaults = self._signature_defaults()
        numeric = {}
        optional = set()
        for k, d in defaults.items():
            parts = d if isinstance(d, tuple) else (d,)
            if k in group and any(isinstance(x, _FLOAT_TYPES) and not isinstance(x, bool)
                                  for x in parts):
                numeric[k] = group[k]
                optional |= {f"{k}[{i}]" for i, x in enumerate(parts) if x is None}
        validation.check_numbers(numeric, who="loaded param group", optional=frozenset(optional))
        return {**self._clean_hyperparams(group), **self._group_extras}

    def _check_disjoint(self, params: Any, skip: int | None) -> dict[int, tuple[Any, int]]:
        """The caller's arrays of a new group (for group ``skip``, a replacement), by id; raises
        torch's error when one of them is already in another group."""
        given = given_arrays(params)
        for i, (meta, current) in enumerate(zip(self._meta, self._params)):
            if i == skip:
                continue
            ours = {id(x): x for x in jax.tree_util.tree_leaves(current)}
            for key, (ref, _) in given.items():
                leaf = ref()
                seen = meta.given.get(key)
                if (seen is not None and seen[0]() is leaf) or ours.get(key) is leaf:
                    raise ValueError("some parameters appear in more than one parameter group")
        return given

    def _replace_params(self, i: int, value: Any) -> None:
        """``group['params'] = value``. torch keys state by tensor: the same arrays keep their
        state, new ones start from a fresh state."""
        value, names, explicit = param_names.split_named(
            param_names.materialize(value, group=True))
        old = self._params[i]
        old_leaves = jax.tree_util.tree_leaves(old)
        new_leaves, new_def = jax.tree_util.tree_flatten(value)
        current = self.param_groups[i]["params"]
        same_list = len(new_leaves) == len(current) and all(
            a is b for a, b in zip(new_leaves, current))
        same_tree = new_def == jax.tree_util.tree_structure(old) and all(  # type: ignore[operator]  # PyTreeDef has no stubs
            a is b for a, b in zip(new_leaves, old_leaves))
        given = self._check_disjoint(value, skip=i)
        meta = self._meta[i]
        kind = "pairs" if explicit else ("tree" if names is not None else None)
        if same_list or same_tree:
            return
        params = copy_tree(value)
        order = (list(range(len(names))) if kind == "pairs" and names is not None
                 else param_names.torch_order(params))
        state = self._init_state(self._txs[i], params)
        with signals_deferred():
            self._params[i], self._states[i] = params, state
            meta.given, meta.names, meta.kind, meta.order, meta.user = given, names, kind, order, {}
            dict.__setitem__(self.param_groups[i], "params", leaves_in_order(params, order))
            if names is not None:
                dict.__setitem__(self.param_groups[i], "param_names", [names[j] for j in order])
            else:
                dict.pop(self.param_groups[i], "param_names", None)
            self._invalidate()

    def _init_state(self, tx: Any, params: Any) -> Any:
        """A group's initial state for ``params`` (ZeroRedundancyOptimizer shards it)."""
        return copy_tree(tx.init(params))

    def _make_tx(self, group: dict[str, Any]) -> Any:
        constructor = type(self)._constructor
        accepted = inspect.signature(constructor).parameters
        return constructor(**{k: group[k] for k in self.defaults if k in accepted})

    def _layout_of(self, tx: Any) -> TorchLayout:
        """The torch layout ``tx`` carries; a plain one for a constructor that is not optx's."""
        return layout_of(tx) or TorchLayout(type(self).__name__)

    def _structure(self, group: dict[str, Any], layout: TorchLayout) -> tuple[Any, ...]:
        """What, if changed, needs a new transformation: non-float arguments, and whether a
        hyperparameter of ``layout.structural_zeros`` is zero (a branch of torch's update, left
        out of the compiled one when it is not taken)."""
        items = []
        for k in self.defaults:
            v = group[k]
            if isinstance(v, bool) or not isinstance(v, (*_FLOAT_TYPES, tuple, list)):
                items.append((k, _freeze(v)))
            elif k in layout.structural_zeros:
                items.append((k, v != 0))
        return tuple(items)

    # ------------------------------------------------------------------ access
    @property
    def params(self) -> Any:
        """The current parameters, as the pytree given, a list of them (one per group), or the
        dict of named params (see the module docstring)."""
        if self._mode == "tree":
            return self._params[0]
        if self._mode == "groups":
            return list(self._params)
        if self._named_view is None:
            self._named_view = {
                name: leaf for meta, group in zip(self._meta, self.param_groups)
                for name, leaf in zip(group["param_names"], group["params"])
            }
        return self._named_view

    @params.setter
    def params(self, value: Any) -> None:
        # Temporary (the adapter branch provides the checked setter): new values for the
        # current params, in the getter's shape; the state is kept.
        trees = self._grads_per_group(value)
        new = []
        for old, tree in zip(self._params, trees):
            if jax.tree_util.tree_structure(tree) != jax.tree_util.tree_structure(old):  # type: ignore[operator]
                raise ValueError("opt.params = value: value must have the structure of opt.params")
            new.append(copy_tree(tree))
        self._params = new
        self._named_view = None
        for g, p, m in zip(self.param_groups, self._params, self._meta):
            dict.__setitem__(g, "params", leaves_in_order(p, m.order))

    @property
    def opt_state(self) -> Any:
        """The functional states (optax's and flax's ``opt_state``): the state itself for one
        pytree, else a list with one per group."""
        return self._states[0] if self._mode == "tree" else list(self._states)

    @property
    def state(self) -> StateMapping:
        """torch's ``optimizer.state``: ``opt.state[p]`` is parameter ``p``'s state as a dict
        with torch's keys (see :mod:`optx.optim.state_view`)."""
        return StateMapping(self)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """A no-op: gradients are passed to :meth:`step` explicitly.

        Args:
          set_to_none: torch's argument; there is no ``.grad`` to clear, so it has no effect."""
        del set_to_none

    def _invalidate(self) -> None:
        """Forgets what was derived from the params and groups (compiled steps, views)."""
        self._named_view: dict[str, Any] | None = None
        self._jitted.clear()
        self._changed.update(range(len(self.param_groups)))

    # ------------------------------------------------------------------ torch surface
    def state_dict(self) -> dict[str, Any]:
        """torch's layout (see :mod:`optx.optim.state_dict`), parameters numbered in torch's
        order, with ``param_names`` in named groups; state_dict hooks run around it."""
        return self._state_dict_with_hooks(lambda: export_state_dict(self))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads torch's layout; a state_dict with ``param_names`` loads into named groups by
        name, else by position in torch's order. On any error nothing changes, and an
        interruption (Ctrl-C, a signal handler's exception) never leaves it half-loaded.
        load_state_dict hooks run around it.

        Args:
          state_dict: ``{'state': ..., 'param_groups': ...}`` as :meth:`state_dict` or torch's
            ``optimizer.state_dict()`` gives it (tensors as numpy arrays, see
            :func:`optx.optim.load`); each group's hyperparameters replace the current ones."""
        def load(sd: dict[str, Any]) -> None:
            loaded = load_groups(self, sd)
            extra = extra_state(sd)
            with signals_deferred():
                for i, (group, tx, st, order, user, names) in enumerate(loaded):
                    self._commit_group(i, group, tx, st, order, user, names)
                self._extra_state = dict(extra)
                self._invalidate()

        self._load_state_dict_with_hooks(state_dict, load)

    def _commit_group(self, i: int, group: dict[str, Any], tx: Any, state: Any,
                      order: list[int], user: dict[int, Any], names: list[str] | None) -> None:
        """Installs group ``i``'s loaded hyperparameters, transformation and state."""
        g = self.param_groups[i]
        meta = self._meta[i]
        params = g["params"] if order == meta.order else leaves_in_order(self._params[i], order)
        kept = names if names is not None else g.get("param_names")
        data = {"params": params, **group}
        if kept is not None:
            data["param_names"] = list(kept)
        dict.clear(g)
        dict.update(g, data)
        meta.order, meta.user = list(order), dict(user)
        meta.built = self._structure(g, self._layout_of(tx))
        meta.tx_args = {k: g[k] for k in self.defaults}
        self._txs[i], self._states[i] = tx, state

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

    # ------------------------------------------------------------------ copies
    def __getstate__(self) -> dict[str, Any]:
        """What a copy or pickle keeps: torch's (defaults, state, param groups; not the hooks),
        as arrays and plain values. Transformations are rebuilt from their arguments."""
        return {
            "defaults": self.defaults,
            "mode": self._mode,
            "groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups],
            "params": self._params,
            "states": self._states,
            "meta": [(m.names, m.kind, m.order, m.built, m.tx_args, m.user) for m in self._meta],
            "extra_state": self._extra_state,
        }

    def __setstate__(self, saved: dict[str, Any]) -> None:
        self._init_hooks()
        self._init_step()
        self.defaults = saved["defaults"]
        self._mode = saved["mode"]
        self._params = list(saved["params"])
        self._states = [copy_tree(s) for s in saved["states"]]
        self._extra_state = dict(saved["extra_state"])
        self._changed = set()
        self._meta, self._txs, self.param_groups = [], [], []
        for i, (group, (names, kind, order, built, tx_args, user)) in enumerate(
                zip(saved["groups"], saved["meta"])):
            self._meta.append(Meta(names, kind, list(order), given_arrays(self._params[i]),
                                   built, dict(tx_args), dict(user)))
            self._txs.append(self._make_tx(tx_args))
            data = {"params": leaves_in_order(self._params[i], order), **group}
            self.param_groups.append(Group(self, i, data))
        self._invalidate()


def _has_duplicates(params: Any) -> bool:
    ids = [id(x) for x in jax.tree_util.tree_leaves(params)]
    return len(ids) != len(set(ids))

