"""Param groups: one :class:`Slot` per group holding everything optx keeps for it, the group dict
torch users edit, and :class:`ParamTree`, the one map between the user's params and the groups.

``opt.param_groups[i]`` is a :class:`Group`, torch's dict: ``params`` (the group's arrays, a list
in torch's order), every hyperparameter, ``param_names`` for named groups and whatever keys the
user adds. The step reads each group's hyperparameters as torch does, at every step: it compares
them with the values the slot last applied (:meth:`Slot.edited`, a few hundred nanoseconds a
group when nothing changed) and only an edited group costs more. Assigning ``params`` replaces
the group's parameters at once (same arrays keep their state, new ones start fresh, as torch keys
state by tensor).

Whether an edit needs a new transformation is decided here and only here (:func:`structure`):
a non-float argument (``amsgrad``), or a hyperparameter of the layout's ``structural_zeros``
crossing zero (a branch of torch's update that the compiled one leaves out when not taken);
:func:`carried_state` then keeps what torch keeps across that switch.
"""

from __future__ import annotations

import copy
import dataclasses
import weakref
from typing import Any, Callable

import jax
import numpy as np

from optx.layout import TorchLayout
from optx.state import OptimizerState, with_per_leaf_steps

_PLAIN = (float, int, bool, str, type(None))
_NUMBERS = (float, int, np.floating, np.integer)
_MISSING: Any = object()


@dataclasses.dataclass(eq=False)
class Slot:
    """Everything the optimizer keeps for one param group besides its dict.

    Attributes:
      params: the group's parameters, as given (a pytree, or a list).
      state: the group's functional state.
      tx: the group's transformation; ``layout`` its torch layout.
      names: each leaf's name (``jax.tree_util`` order), or None for an unnamed group.
      kind: ``"pairs"`` for ``(name, array)`` pairs, ``"tree"`` for a pytree named by its key
        paths, None for unnamed.
      order: the leaves' indices in torch's order (:func:`optx.optim.param_names.torch_order`).
      given: the caller's arrays, ``id -> (weakref, leaf index)``: the params are copied, so only
        these tell that an array given again is already optimized, and ``opt.state[p]`` finds the
        parameter of an array the user still holds.
      built: the transformation's structure key (:func:`structure`).
      tx_args: the (cleaned) hyperparameters the state holds and the transformation was built
        with (a copy rebuilds it from them).
      seen: the group dict's values as last applied, compared by identity at each step (the
        step's check that the group was edited).
      user: the user's entries of each parameter's state, by torch position.
    """

    params: Any
    state: Any
    tx: Any
    layout: TorchLayout
    names: list[str] | None
    kind: str | None
    order: list[int]
    given: dict[int, tuple[Any, int]]
    built: tuple[Any, ...] = ()
    tx_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    seen: dict[str, Any] = dataclasses.field(default_factory=dict)
    user: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def replace(self, **changes: Any) -> Slot:
        new = copy.copy(self)
        new.__dict__.update(changes)
        return new


def given_arrays(params: Any) -> dict[int, tuple[Any, int]]:
    """The caller's arrays of ``params`` by id, with their leaf index (Python scalars, which
    have no identity to keep, are left out)."""
    given = {}
    for j, leaf in enumerate(jax.tree_util.tree_leaves(params)):
        try:
            given[id(leaf)] = (weakref.ref(leaf), j)
        except TypeError:
            continue
    return given


def leaves_in_order(params: Any, order: list[int]) -> list[Any]:
    """The group's arrays as torch lists them: ``group['params']``."""
    leaves = jax.tree_util.tree_leaves(params)
    return [leaves[j] for j in order]


# ---------------------------------------------------------------------- group edits
def _freeze(v: Any) -> Any:
    try:
        hash(v)
        return v
    except TypeError:
        return id(v)


def structure(args: dict[str, Any], layout: TorchLayout) -> tuple[Any, ...]:
    """What, if changed, needs a new transformation: non-float arguments, and whether a
    hyperparameter of ``layout.structural_zeros`` is zero (a branch of torch's update, left
    out of the compiled one when it is not taken)."""
    items = []
    for k, v in args.items():
        if isinstance(v, bool) or not isinstance(v, (*_NUMBERS, tuple, list)):
            items.append((k, _freeze(v)))
        elif k in layout.structural_zeros:
            items.append((k, v != 0))
    return tuple(items)


def cleaned(group: dict[str, Any], keys: Any,
            clean: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """``group``'s values of ``keys`` as the step reads them; ``clean`` (the optimizer's) only
    for values that are not plain Python scalars or tuples of them."""
    args = {k: group[k] for k in keys}
    odd = {k: v for k, v in args.items() if type(v) not in _PLAIN and not (
        type(v) is tuple and all(type(x) in _PLAIN for x in v))}
    if odd:
        args.update(clean(odd))
    return args


def carried_state(old: Any, new: Any, layout: TorchLayout, n_leaves: int) -> Any:
    """A rebuilt transformation's state ``new`` with what torch keeps across the switch from
    ``old``: the count, per-parameter steps, every buffer both have, and a buffer torch keeps
    unused (a momentum lowered to 0) with its flag."""
    if not (isinstance(old, OptimizerState) and isinstance(new, OptimizerState)):
        return new
    if old.steps is not None:
        new = with_per_leaf_steps(new, n_leaves)
    kept = {k: v for k, v in old.slots.items() if k in layout.kept_slots}
    flags = {f for s, f in layout.slot_flags if s in kept and f in old.scalars}
    slots = {**kept, **{k: old.slots.get(k, v) for k, v in new.slots.items()}}
    scalars = {**{f: old.scalars[f] for f in flags},
               **{k: old.scalars.get(k, v) for k, v in new.scalars.items()}}
    return new._replace(count=old.count, slots=slots, scalars=scalars, steps=old.steps)


def with_hyperparams(state: Any, args: dict[str, Any]) -> Any:
    """``state`` with ``args`` written into its ``hyperparams``, in the stored dtypes (so an
    edited ``lr`` never recompiles); a schedule given to the constructor advances itself."""
    stored = getattr(state, "hyperparams", None)
    if stored is None:
        return state
    hp = stored.written(args)
    return state._replace(hyperparams=hp)


def applied(slot: Slot, group: dict[str, Any], opt: Any) -> tuple[Slot, bool]:
    """``slot`` with ``group``'s current values applied, and whether its transformation was
    rebuilt (``opt._rebuilt``: a structural value changed) rather than only its state's
    hyperparameter arrays rewritten."""
    args = cleaned(group, slot.tx_args, opt._clean_hyperparams)
    seen = {k: group[k] for k in slot.seen}
    built = structure(args, slot.layout)
    if built == slot.built:
        state = with_hyperparams(slot.state, args)
        return slot.replace(state=state, tx_args=args, seen=seen), False
    tx, state = opt._rebuilt(slot, args)
    return slot.replace(tx=tx, state=state, built=built, tx_args=args, seen=seen), True


# ---------------------------------------------------------------------- the group dict
class Group(dict):
    """A param group dict (torch's). Hyperparameter edits are plain dict writes, read at the
    next step; assigning ``params`` reaches the optimizer, which the group holds weakly (no
    reference cycle: a discarded optimizer is freed at once, as torch's)."""

    def __init__(self, owner: Any, index: int, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._owner = weakref.ref(owner)
        self._index = index

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "params" or not (type(value) in _PLAIN or type(value) is tuple):
            owner = self._owner()
            if owner is None:
                raise RuntimeError("this param group's optimizer no longer exists")
            if key == "params":
                owner._replace_params(self._index, value)
                return
            if key in owner.defaults:  # a 1-element array as a scalar, a list as a tuple
                value = owner._clean_hyperparams({key: value})[key]
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __reduce__(self) -> Any:
        # A copy of a group on its own is a plain dict, as torch's.
        return (dict, (dict(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}


# ---------------------------------------------------------------------- the user's params
class ParamTree:
    """The one map between what the user sees (:attr:`Optimizer.params`, ``step``'s gradients)
    and one tree per group. ``mode`` is how the params were given: ``"tree"`` (one pytree, one
    group), ``"groups"`` (a list with one pytree per group) or ``"named"`` (one dict of all
    groups' ``(name, array)`` pairs, in group order)."""

    __slots__ = ("mode", "names")

    def __init__(self, mode: str, names: list[list[str]]) -> None:
        self.mode = mode
        self.names = names

    def join(self, trees: list[Any]) -> Any:
        """One tree per group -> the user's shape (also inside jit: it holds names only)."""
        if self.mode == "tree":
            return trees[0]
        if self.mode == "groups":
            return list(trees)
        return {n: x for ns, t in zip(self.names, trees) for n, x in zip(ns, t)}

    def split(self, tree: Any, what: str = "gradients") -> list[Any]:
        """The user's shape -> one tree per group; a clear error naming the mismatch."""
        if self.mode == "tree":
            return [tree]
        if self.mode == "groups":
            n = len(self.names)
            if not isinstance(tree, (list, tuple)) or len(tree) != n:
                got = len(tree) if isinstance(tree, (list, tuple)) else type(tree).__name__
                raise ValueError(
                    f"expected {what} for {n} param groups (a list mirroring opt.params), got "
                    f"{got}"
                )
            return list(tree)
        if not isinstance(tree, dict):
            raise ValueError(
                f"expected the {what} as a dict keyed by the parameter names, like opt.params; "
                f"got {type(tree).__name__}"
            )
        wanted = {n for ns in self.names for n in ns}
        if tree.keys() != wanted:
            missing = [n for ns in self.names for n in ns if n not in tree]
            extra = [n for n in tree if n not in wanted]
            hint = " (a parameter without a gradient takes None)" if what == "gradients" else ""
            raise ValueError(
                f"the {what} do not match opt.params: missing {missing}, unexpected {extra}"
                + hint
            )
        return [[tree[n] for n in ns] for ns in self.names]


# ---------------------------------------------------------------------- checks over the slots
def check_disjoint(slots: list[Slot], params: Any,
                   skip: int | None) -> dict[int, tuple[Any, int]]:
    """The caller's arrays of a new group (for group ``skip``, a replacement), by id; raises
    torch's error when one of them is already in another group."""
    given = given_arrays(params)
    for i, slot in enumerate(slots):
        if i == skip:
            continue
        ours = {id(x): x for x in jax.tree_util.tree_leaves(slot.params)}
        for key, (ref, _) in given.items():
            leaf = ref()
            seen = slot.given.get(key)
            if (seen is not None and seen[0]() is leaf) or ours.get(key) is leaf:
                raise ValueError("some parameters appear in more than one parameter group")
    return given


def params_mode(slots: list[Slot], mode: str, kind: str | None) -> str:
    """The params' mode (see :class:`ParamTree`) once a group of ``kind`` is added; torch's
    rule: all groups given as ``(name, array)`` pairs or none (a pytree's key-path names are
    JAX's addition and mix with either)."""
    kinds = {s.kind for s in slots}
    if (kind == "pairs" and None in kinds) or (kind is None and "pairs" in kinds) or (
            mode == "named" and kind != "pairs" and slots):
        raise ValueError(
            "all optimizer param groups should be with/without names. cannot add param "
            f"group {'with' if kind else 'without'} names to the optimizer"
        )
    if not slots:
        return "named" if kind == "pairs" else mode
    # A second group makes a one-tree optimizer a multi-group one: params, grads and state
    # become lists, one entry per group.
    return "groups" if mode == "tree" else mode


def with_steps(slots: list[Slot], grads: list[Any]) -> list[Slot]:
    """Gives per-parameter step counts to the states of groups whose gradients skip a
    parameter (a ``None`` leaf), so the compiled step sees the state's final structure: one
    compile per pattern of ``None`` gradients."""
    out = []
    for s, g in zip(slots, grads):
        if isinstance(s.state, OptimizerState) and s.state.steps is None:
            try:
                leaves = jax.tree_util.tree_structure(s.params).flatten_up_to(g)  # type: ignore[attr-defined]
            except (ValueError, TypeError):
                leaves = []  # the update names the mismatch
            if any(x is None for x in leaves):
                s = s.replace(state=with_per_leaf_steps(s.state, len(s.order)))
        out.append(s)
    return out


def check_like(slot: Slot, i: int, tree: Any) -> None:
    """Refuses new values for group ``i``'s params that differ in structure, shape or dtype."""
    ours, treedef = jax.tree_util.tree_flatten(slot.params)
    theirs, their_def = jax.tree_util.tree_flatten(tree)
    if their_def != treedef:  # type: ignore[operator]  # PyTreeDef has no stubs
        raise ValueError(
            f"opt.params = ...: group {i}'s structure {their_def} differs from the params' "
            f"{treedef}")
    for j, (a, b) in enumerate(zip(ours, theirs)):
        shape, dtype = np.shape(b), getattr(b, "dtype", None) or np.asarray(b).dtype
        if shape != a.shape or dtype != a.dtype:
            label = repr(slot.names[j]) if slot.names is not None else f"leaf {j}"
            raise ValueError(
                f"opt.params = ...: group {i}'s {label} is {dtype}{list(shape)}, the "
                f"parameter is {a.dtype}{list(a.shape)}")
