"""torch's ``optimizer.state_dict()`` layout for :class:`optx.optim.Optimizer`.

``{'state': {i: {...}}, 'param_groups': [{..., 'params': [i, ...]}]}`` with parameters numbered
in torch's order (:mod:`optx.optim.param_names`: a dict's insertion order, a list's order) across
the groups; tensors are numpy arrays both ways. What a group's state looks like in torch is its
transformation's :class:`optx.layout.TorchLayout`: by default one entry per parameter with
torch's keys, read from :class:`optx.OptimizerState`: ``step`` (a 0-d float32 array, torch's
default scalar dtype) from the parameter's step count, every slot under its own name, and the
scalars torch keeps per parameter (NAdam's ``mu_product``, ASGD's ``eta``/``mu``). A parameter
that has never taken a step has no entry, as in torch, whose state is created lazily (Adagrad's,
which torch creates in ``__init__``, exists from the start: ``TorchLayout.state_at_init``). A layout
with its own ``export_state``/``import_state`` (LBFGS) replaces that per-group conversion; the
groups, their checks and the commit stay here.

Parameters with different steps (some skipped by a ``None`` gradient, or never stepped) load
exactly: the state then keeps one step count per parameter (``OptimizerState.steps``).

Keys of ``state`` that are not parameter numbers (``opt.state["custom"] = 1``) and entries of a
parameter's state beyond its optimizer's (``opt.state[p]["note"] = x``) are the user's: kept,
exported and loaded as torch does. Unlike torch, a load refuses what would silently detach state
from its parameter: an integer key, or a string of digits (``"0"``, as JSON round trips write
keys), that numbers no parameter of the state_dict; an entry that lacks keys its optimizer's
state has, or has a ``step`` where its optimizer keeps none (another optimizer's state); a
``step`` that is negative, fractional, not finite or above 2**31 - 1 (torch takes any number and
computes its bias corrections from it); a hyperparameter that is None or not a number where
torch's default is a number (torch fails at its next step, or computes with it).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from optx import validation
from optx.layout import TorchLayout
from optx.optim import param_names
from optx.optim.groups import structure
from optx.state import OptimizerState

_STEP_MAX = np.iinfo(np.int32).max


def copy_tree(tree: Any) -> Any:
    """Own copies of every leaf: the step donates them, and no two may share a buffer."""
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)


def _flatten(tree: Any) -> list[Any]:
    """A slot's leaves, one per parameter; ``None`` where the parameter has no such slot."""
    return jax.tree_util.tree_flatten(tree, is_leaf=lambda x: x is None)[0]


def _steps_and_scalars(state: OptimizerState, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each leaf's step count and scalars, as numpy vectors."""
    if state.steps is None:
        steps = np.full((n,), int(state.count))
        scalars = {k: np.repeat(np.asarray(v)[None], n, 0) for k, v in state.scalars.items()}
    else:
        steps = np.asarray(state.steps)
        scalars = {k: np.asarray(v) for k, v in state.scalars.items()}
    return steps, scalars


def _export_default(layout: TorchLayout, state: OptimizerState, order: Sequence[int],
                    sizes: Sequence[int]) -> dict[int, dict[str, Any]]:
    """torch's entry of each parameter that has taken a step, keyed by torch position; slots are
    the state's arrays themselves (copied by :func:`export_state_dict`)."""
    del sizes
    n = len(order)
    if state.steps is None and int(state.count) == 0 and not layout.state_at_init:
        return {}
    steps, scalars = _steps_and_scalars(state, n)
    flags = {slot: scalars[flag] for slot, flag in layout.slot_flags if flag in scalars}
    slots = {k: _flatten(v) for k, v in state.slots.items()}
    public = [k for k in scalars if k not in layout.hidden_scalars]
    out = {}
    for k, j in enumerate(order):
        if steps[j] == 0 and not layout.state_at_init:
            continue
        entry: dict[str, Any] = {}
        if layout.has_step:
            entry["step"] = np.asarray(steps[j], np.float32)
        for name, leaves in slots.items():
            # A lazily allocated slot (SGD's momentum_buffer) is torch state once its flag is set.
            if leaves[j] is not None and (name not in flags or bool(flags[name][j])):
                entry[name] = leaves[j]
        entry.update({name: scalars[name][j].copy() for name in public})
        out[k] = entry
    return out


def _step_value(value: Any, label: str) -> int:
    """A loaded ``step`` as the integer count it must be; raises naming the parameter."""
    v = np.asarray(value)
    what = f"state 'step' of parameter {label}"
    if v.size != 1 or v.ndim > 1:
        raise ValueError(f"{what} must be a scalar, got shape {v.shape}")
    if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
        raise ValueError(f"{what} must be a number, got dtype {v.dtype}")
    x = float(v.reshape(()))
    if not math.isfinite(x) or x < 0 or x != int(x) or x > _STEP_MAX:
        raise ValueError(
            f"{what} is {x!r}: a step count must be a non-negative integer at most {_STEP_MAX}"
        )
    return int(x)


def _tensor(key: str, value: Any, ref: Any, label: str) -> Any:
    what = f"state {key!r} of parameter {label}"
    try:
        v = np.asarray(value)
    except (TypeError, ValueError) as err:  # a ragged list, an object numpy cannot hold
        raise ValueError(f"{what} is not an array: {type(value).__name__}") from err
    # jnp's issubdtype knows ml_dtypes' floats (bfloat16, float8) as floating; numpy's does not.
    if not (jnp.issubdtype(v.dtype, jnp.floating) or jnp.issubdtype(v.dtype, jnp.complexfloating)
            or v.dtype == ref.dtype):
        raise ValueError(f"{what} has dtype {v.dtype}, expected {ref.dtype}")
    if v.shape != ref.shape:
        raise ValueError(
            f"{what} has shape {v.shape}, expected {ref.shape} (the parameter at that position "
            "has that shape)"
        )
    return jnp.array(v, copy=True, dtype=ref.dtype)


def _scalar(key: str, value: Any, like: Any, label: str) -> Any:
    v = np.asarray(value)
    if v.size != 1 or v.ndim > 1 or not np.issubdtype(v.dtype, np.number):
        raise ValueError(
            f"state {key!r} of parameter {label} must be a scalar number, got "
            f"{type(value).__name__} of shape {v.shape}"
        )
    return v.reshape(()).astype(like.dtype)


def _import_default(layout: TorchLayout, fresh: OptimizerState, entries: Sequence[Any],
                    labels: Sequence[str], order: Sequence[int],
                    sizes: Sequence[int]) -> tuple[OptimizerState, dict[int, dict[str, Any]]]:
    """One group's state from torch's per-parameter entries (in torch order), and the entries'
    keys that are not its optimizer's (the user's), by torch position."""
    n = len(order)
    slots = {k: _flatten(v) for k, v in fresh.slots.items()}
    flagged = {slot: flag for slot, flag in layout.slot_flags if flag in fresh.scalars}
    public = set(fresh.scalars) - layout.hidden_scalars
    steps = np.zeros((n,), np.int64)
    scalars = {k: np.repeat(np.asarray(v)[None], n, 0) for k, v in fresh.scalars.items()}
    new_slots = {k: list(v) for k, v in slots.items()}
    user: dict[int, dict[str, Any]] = {}
    for k, (e, label) in enumerate(zip(entries, labels)):
        j = order[k]
        if not e:
            continue  # the initial state, as torch creates at the parameter's first step
        if not isinstance(e, dict):
            raise ValueError(f"state of parameter {label} must be a dict, got {type(e).__name__}")
        ours = {name for name, leaves in slots.items() if leaves[j] is not None} | public
        if layout.has_step:
            ours.add("step")
        if not ours & set(e) and "step" not in e and not _param_shaped(e, sizes[j]):
            user[k] = dict(e)  # the user's entries only: no state yet
            continue
        missing = sorted(ours - set(flagged) - set(e))
        if missing or ("step" in e and not layout.has_step):
            why = (f"lacks {missing}" if missing else
                   f"has a 'step', which {layout.torch_name}'s state has not")
            raise ValueError(
                f"state of parameter {label} has keys {sorted(map(str, e))}: it {why} "
                f"({layout.torch_name} keeps {sorted(ours)}); was it saved by another optimizer?"
            )
        extra = {key: v for key, v in e.items() if key not in ours}
        if extra:
            user[k] = extra
        steps[j] = _step_value(e["step"], label) if layout.has_step else 1
        for name in slots:
            if name in e:
                new_slots[name][j] = _tensor(name, e[name], slots[name][j], label)
        for name in public:
            scalars[name][j] = _scalar(name, e[name], scalars[name], label)
        for slot, flag in flagged.items():
            scalars[flag][j] = slot in e
    if not steps.any() and not layout.state_at_init:
        return fresh, user
    treedefs = {k: jax.tree_util.tree_structure(v, is_leaf=lambda x: x is None)
                for k, v in fresh.slots.items()}
    state = fresh._replace(
        slots={k: treedefs[k].unflatten(v)  # type: ignore[attr-defined]  # PyTreeDef has no stubs
               for k, v in new_slots.items()},
    )
    uniform = (steps == steps[0]).all() and all((v == v[0]).all() for v in scalars.values())
    if uniform:
        return state._replace(
            count=jnp.asarray(steps[0], fresh.count.dtype),
            scalars={k: jnp.asarray(v[0], fresh.scalars[k].dtype) for k, v in scalars.items()},
        ), user
    return state._replace(
        count=jnp.asarray(steps.max(), fresh.count.dtype),
        steps=jnp.asarray(steps, fresh.count.dtype),
        scalars={k: jnp.asarray(v, fresh.scalars[k].dtype) for k, v in scalars.items()},
    ), user


def _param_shaped(entry: dict[str, Any], size: int) -> bool:
    """Whether an entry holds an array as large as its parameter: optimizer state, not a note."""
    return any(np.size(v) == size and np.ndim(v) > 0 for v in entry.values()
               if isinstance(v, (np.ndarray, jax.Array)))


def _signature_defaults(constructor: Any) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(constructor).parameters.items()}


def _fill_missing(opt: Any, group: dict[str, Any], gi: int) -> dict[str, Any]:
    """``group`` with the switches and flags an older torch did not save, as torch's
    ``__setstate__`` fills them: each missing argument whose default is a bool or None."""
    signature = _signature_defaults(type(opt)._constructor)
    filled = {**type(opt)._group_extras, **group}  # AdamW's decoupled_weight_decay, forced anyway
    for k in opt.defaults:
        default = signature.get(k, inspect.Parameter.empty)
        if k not in filled and (default is None or isinstance(default, bool)):
            filled[k] = default
    missing = set(opt.defaults) - set(filled)
    if missing:
        raise ValueError(f"param group {gi} lacks {sorted(missing)}")
    return filled


def _check_supported(opt: Any) -> None:
    for slot in opt._slots:
        s = slot.state
        if slot.layout.export_state is None and not isinstance(s, OptimizerState):
            raise NotImplementedError(
                f"state_dict is not supported for {type(opt).__name__} "
                f"(state type {type(s).__name__})"
            )


def _sizes(params: Any) -> list[int]:
    return [int(np.size(x)) for x in jax.tree_util.tree_leaves(params)]


def group_entries(opt: Any, i: int, state: Any = None) -> dict[int, dict[str, Any]]:
    """Group ``i``'s torch state (of ``state``, by default its own), ``{torch position:
    entry}``, with the user's entries; arrays are the state's own (not copied)."""
    meta = opt._slots[i]
    layout = meta.layout
    export = layout.export_state or _export_default
    entries = export(layout, meta.state if state is None else state, meta.order,
                     _sizes(meta.params))
    for k, extra in meta.user.items():
        entries[k] = {**entries.get(k, {}), **extra}
    return entries


def torch_keys(opt: Any, i: int, k: int) -> set[str] | None:
    """The keys torch's state of group ``i``'s ``k``-th parameter has (optional ones too);
    None for a layout of its own (LBFGS), whose import knows them."""
    layout = opt._slots[i].layout
    state = opt._slots[i].state
    if layout.import_state is not None or not isinstance(state, OptimizerState):
        return None
    j = opt._slots[i].order[k]
    keys = {name for name, v in state.slots.items() if _flatten(v)[j] is not None}
    keys |= set(state.scalars) - layout.hidden_scalars
    return keys | {"step"} if layout.has_step else keys


def reimport(opt: Any, i: int, entries: dict[int, Any]) -> tuple[Any, dict[int, Any]]:
    """Group ``i``'s state and user entries from torch entries ``{position: entry}`` (what
    ``opt.state[p][key] = value`` writes through); validated as a loaded state_dict is."""
    meta = opt._slots[i]
    layout, params = meta.layout, meta.params
    n = len(meta.order)
    ordered = [entries.get(k) for k in range(n)]
    labels = _labels(opt, i, list(range(n)), meta.order)
    fresh = meta.tx.init(params)
    if layout.import_state is not None:
        state = layout.import_state(layout, fresh, ordered, labels, meta.order, _sizes(params))
        none: dict[int, Any] = {}
        return copy_tree(state), none
    state, user = _import_default(layout, fresh, ordered, labels, meta.order, _sizes(params))
    return copy_tree(state), user


def export_state_dict(opt: Any, states: list[Any]) -> dict[str, Any]:
    """``opt``'s state_dict, from each group's whole state ``states``."""
    _check_supported(opt)
    state: dict[Any, Any] = {}
    groups = []
    index = 0
    first: dict[int, int] = {}  # a group's index -> the number of its first parameter
    for i, group in enumerate(opt.param_groups):
        # A group listed twice (`param_groups.extend(param_groups)`) numbers its parameters as
        # at their first appearance, as torch does (its #36831); the count still advances.
        own = next((j for j, g in enumerate(opt.param_groups[:i]) if g is group), i)
        if own >= len(opt._slots):
            raise ValueError(
                f"param group {i} was put in param_groups directly; add it with "
                "add_param_group so the optimizer builds its state")
        meta = opt._slots[own]
        n = len(meta.order)
        if own == i:
            first[i] = index
            for k, entry in group_entries(opt, i, states[i]).items():
                if entry:
                    state[index + k] = jax.tree_util.tree_map(
                        lambda x: np.array(x) if isinstance(x, (jax.Array, np.ndarray)) else x,
                        entry)
        g = {k: v for k, v in group.items() if k not in ("params", "param_names")}
        g["params"] = list(range(first[own], first[own] + n))
        if meta.names is not None:
            g["param_names"] = [meta.names[j] for j in meta.order]
        elif group.get("param_names") is not None:
            # Names a loaded state_dict brought to an unnamed group: torch keeps them too.
            g["param_names"] = list(group["param_names"])
        groups.append(g)
        index += n
    state.update(opt._extra_state)
    return {"state": state, "param_groups": groups}


def _position_ids(opt: Any, gi: int, saved: dict[str, Any]) -> tuple[list[Any], list[int]]:
    """The saved group's parameter ids for our parameters in torch order, and the order (leaf
    indices) after loading: by name when both sides are named, else by position."""
    meta = opt._slots[gi]
    ids = list(saved["params"])
    saved_names = saved.get("param_names")
    if saved_names is None or meta.names is None:
        return ids, list(meta.order)
    saved_names = list(saved_names)
    if len(ids) != len(saved_names):
        raise ValueError(
            f"loaded param group {gi} has {len(ids)} params but {len(saved_names)} param_names"
        )
    pos = param_names.index_names(saved_names, f"loaded param group {gi}")
    mine = param_names.index_names(meta.names, f"param group {gi}")
    missing = [n for n in meta.names if n not in pos]
    extra = [n for n in saved_names if n not in mine]
    if missing or extra:
        raise ValueError(
            f"loaded state dict's param group {gi} does not name the optimizer's parameters: "
            f"missing {missing}, unexpected {extra}"
        )
    # The loaded order becomes the group's torch order, so exporting gives torch its order back.
    return ids, [mine[n] for n in saved_names]


def _labels(opt: Any, gi: int, ids: Sequence[Any], order: Sequence[int]) -> list[str]:
    names = opt._slots[gi].names
    if names is None:
        return [str(pid) for pid in ids]
    return [f"{pid} ({names[j]!r})" for pid, j in zip(ids, order)]


def _check_keys(state: dict[Any, Any], known: set[Any]) -> None:
    """Refuses keys that look like parameter numbers but number no parameter."""
    for key in state:
        if key in known:
            continue
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            raise ValueError(
                f"the state_dict's 'state' has an entry for parameter {key}, which no param "
                f"group lists (they list {sorted(known)})"
            )
        if isinstance(key, str) and key.strip().lstrip("-").isdigit():
            raise ValueError(
                f"the state_dict's 'state' has the key {key!r}, a parameter number as a string "
                "(as a JSON round trip writes keys): convert the keys back to int"
            )


def load_groups(opt: Any, state_dict: dict[str, Any]) -> list[Any]:
    """Validates ``state_dict`` and builds each group's new contents without touching ``opt``:
    ``[(group, tx, state, order, user entries, loaded names)]``; raises ``ValueError``."""
    _check_supported(opt)
    if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
        raise ValueError("state_dict must be a dict with exactly 'state' and 'param_groups'")
    saved_groups = state_dict["param_groups"]
    saved_state = state_dict["state"]
    if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
        raise ValueError("state_dict's 'param_groups' must be a list and 'state' a dict")
    if len(saved_groups) != len(opt.param_groups):
        raise ValueError(
            "loaded state dict has a different number of parameter groups: "
            f"{len(saved_groups)} != {len(opt.param_groups)}"
        )
    known: set[Any] = set()
    for gi, saved in enumerate(saved_groups):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
            raise ValueError(f"loaded param group {gi} must be a dict with a 'params' list")
        known.update(saved["params"])
    _check_keys(saved_state, known)
    loaded = []
    for gi, (saved, slot) in enumerate(zip(saved_groups, opt._slots)):
        params = slot.params
        n = len(slot.order)
        if len(saved["params"]) != n:
            raise ValueError(
                f"loaded state dict contains a parameter group {gi} that doesn't match the size "
                f"of optimizer's group ({len(saved['params'])} != {n})"
            )
        hyper = {k: v for k, v in saved.items() if k not in ("params", "param_names")}
        group = _fill_missing(opt, hyper, gi)
        try:
            group = _loaded_hyperparams(opt, group)
            tx = opt._make_tx(group)
        except (ValueError, TypeError) as err:
            raise ValueError(f"param group {gi}: {err}") from err
        try:
            ids, order = _position_ids(opt, gi, saved)
            layout = opt._layout_of(tx)
            entries = [saved_state.get(pid) for pid in ids]
            labels = _labels(opt, gi, ids, order)
            fresh = tx.init(params)
            user: dict[int, Any]
            if layout.import_state is not None:
                state, user = layout.import_state(
                    layout, fresh, entries, labels, order, _sizes(params)), {}
            else:
                state, user = _import_default(
                    layout, fresh, entries, labels, order, _sizes(params))
            # Own buffers: the step donates every leaf, and an initial state may share one
            # buffer between slots.
            state = copy_tree(state)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"param group {gi}: {err}. Parameters are matched "
                + ("by name (param_names)" if saved.get("param_names") is not None
                   and slot.names is not None else
                   "by position in torch's order (a dict's insertion order, as "
                   "named_parameters() gives it); a torch checkpoint saved with param_names "
                   "(param groups built from named_parameters()) is matched by name instead")
            ) from err
        names = saved.get("param_names")
        loaded.append((group, tx, state, order, user, None if names is None else list(names)))
    return loaded


def extra_state(state_dict: dict[str, Any]) -> dict[Any, Any]:
    """The user's entries of ``state`` that are not parameter numbers."""
    known = {pid for g in state_dict["param_groups"] for pid in g["params"]}
    return {k: v for k, v in state_dict["state"].items() if k not in known}


_FLOAT_TYPES = (float, int, np.floating, np.integer)


def _loaded_hyperparams(opt: Any, group: dict[str, Any]) -> dict[str, Any]:
    """A loaded group's hyperparameters: cleaned, with the values torch forces; a numeric one
    (its default is a number, or a tuple of them) that is None or not a number is refused with
    its name."""
    numeric = {}
    optional = set()
    for k, d in opt._signature_defaults().items():
        parts = d if isinstance(d, tuple) else (d,)
        if k in group and any(isinstance(x, _FLOAT_TYPES) and not isinstance(x, bool)
                              for x in parts):
            numeric[k] = group[k]
            optional |= {f"{k}[{i}]" for i, x in enumerate(parts) if x is None}
    validation.check_numbers(numeric, who="loaded param group", optional=frozenset(optional))
    return {**opt._clean_hyperparams(group), **type(opt)._group_extras}


def loaded_slots(opt: Any, state_dict: dict[str, Any]) -> tuple[list[Any], dict[int, Any]]:
    """Every group's new slot and dict contents from ``state_dict`` (validated by
    :func:`load_groups`), for one commit: all groups or none."""
    slots, data = [], {}
    for i, (group, tx, state, order, user, names) in enumerate(load_groups(opt, state_dict)):
        slot, g = opt._slots[i], opt.param_groups[i]
        kept = names if names is not None else g.get("param_names")
        data[i] = {"params": [], **group}
        if kept is not None:
            data[i]["param_names"] = list(kept)
        args = {k: group[k] for k in opt.defaults}
        layout = opt._layout_of(tx)
        slots.append(slot.replace(
            tx=tx, layout=layout, state=opt._place_state(state), order=list(order),
            user=dict(user), built=structure(args, layout), tx_args=args,
            seen={k: group[k] for k in args}))
    return slots, data
