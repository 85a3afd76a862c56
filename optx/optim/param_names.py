"""Parameter names, as torch 2.x's ``named_parameters()`` support in ``torch.optim``.

A group's parameters are named when they are given as ``(name, array)`` pairs (torch's
``model.named_parameters()``), or when they are a pytree with dict keys or attributes: each leaf
is then named by its key path joined with dots, ``{"layer1": {"weight": w}}`` giving
``"layer1.weight"`` and a list index giving ``"0"``, exactly as torch names the parameters of a
module that the pytree mirrors (``nn.Sequential`` children are ``"0"``, ``"1"``, ...). A plain
array or a list of arrays is unnamed, as torch's ``model.parameters()``.

Named groups carry ``param_names`` in ``param_groups`` and in ``state_dict()``, as torch writes
them. A state_dict carrying ``param_names`` loads **by name** into a named group (torch loads by
position): a pytree whose leaf order differs from the torch module's (dicts sort their keys)
resumes exactly. The loaded order is kept as the group's ``param_names`` and ``state_dict()``
exports in that order, so torch, which loads by position, reads it back right.
"""

from __future__ import annotations

import collections.abc
from typing import Any

import jax
import numpy as np

MIXED = "all optimizer params should be with/without names. Some param names are missing"


def materialize(params: Any, group: bool = False) -> Any:
    """A one-shot iterable of params (``model.parameters()``-style generator, ``map``,
    ``dict.values()``) as a list, as torch's ``list(params)``; pytrees are returned as given.
    torch refuses a set as a group's params (not as the list of groups)."""
    if group and isinstance(params, (set, frozenset)):
        raise TypeError(
            "optimizer parameters need to be organized in ordered collections, but the ordering "
            "of tensors in sets will change between runs. Please use a list instead."
        )
    if isinstance(params, (collections.abc.Iterator, collections.abc.ValuesView,
                           collections.abc.ItemsView, set, frozenset)):
        return list(params)
    return params


def _is_pair(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)


def _key_str(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _path_names(tree: Any) -> tuple[list[str], bool]:
    """Dotted key paths of the leaves, and whether every path holds a dict key or attribute."""
    names, named = [], True
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names.append(".".join(_key_str(k) for k in path))
        named = named and any(not hasattr(k, "idx") for k in path)
    return names, named


def split_named(params: Any) -> tuple[Any, list[str] | None, bool]:
    """``(params, leaf names or None, explicit)``: ``(name, array)`` pairs become a list of
    arrays with their names (``explicit``); a pytree with keys is named by its key paths."""
    if isinstance(params, (list, tuple)) and any(_is_pair(p) for p in params):
        if not all(_is_pair(p) for p in params):
            raise ValueError(MIXED)
        names = []
        for name, value in params:
            sub, _ = _path_names(value)
            names += [f"{name}.{s}" if s else name for s in sub]
        return [value for _, value in params], names, True
    names, named = _path_names(params)
    return params, (names if named and names else None), False


def _index(names: list[str], what: str) -> dict[str, int]:
    pos: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in pos:
            raise ValueError(f"{what} has the parameter name {n!r} twice")
        pos[n] = i
    return pos


# LBFGS's state: flat vectors over all parameters, concatenated in parameter order.
_FLAT_VECTORS = ("d", "prev_flat_grad")
_FLAT_LISTS = ("old_dirs", "old_stps")


def _is_lbfgs(opt: Any) -> bool:
    return bool(getattr(type(opt), "_needs_value_fn", False))


def _sizes(opt: Any, gi: int) -> dict[str, int]:
    leaves = jax.tree_util.tree_leaves(opt._params[gi])
    return {n: int(np.size(x)) for n, x in zip(opt._param_names[gi], leaves)}


def _permute_flat(entry: Any, sizes: dict[str, int], src: list[str], dst: list[str]) -> Any:
    """An LBFGS state entry with its flat vectors rearranged from ``src`` to ``dst`` order."""
    if not isinstance(entry, dict):
        return entry
    starts, offset = {}, 0
    for n in src:
        starts[n], offset = offset, offset + sizes[n]

    def permute(v: Any) -> Any:
        v = np.asarray(v)
        if v.shape != (offset,):
            return v  # the import reports the shape
        return np.concatenate([v[starts[n]:starts[n] + sizes[n]] for n in dst])

    out = dict(entry)
    for k in _FLAT_VECTORS:
        if k in out:
            out[k] = permute(out[k])
    for k in _FLAT_LISTS:
        if k in out:
            out[k] = [permute(v) for v in out[k]]
    return out


def to_leaf_order(opt: Any, state_dict: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """``state_dict`` with every named group's ``params`` ids put in the optimizer's leaf order
    by name (``param_names`` removed), and the ``param_names`` each group keeps after loading
    (torch: the loaded ones, else the current ones). Raises ``ValueError`` naming any missing
    or unexpected name."""
    if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list):
        return state_dict, [g.get("param_names") for g in opt.param_groups]
    groups, keep = [], []
    for gi, saved in enumerate(state_dict["param_groups"]):
        if gi >= len(opt.param_groups) or not isinstance(saved, dict):
            groups.append(saved)
            continue
        saved = dict(saved)
        saved_names = saved.pop("param_names", None)
        keep.append(saved_names if saved_names is not None
                    else opt.param_groups[gi].get("param_names"))
        leaf_names = opt._param_names[gi]
        if saved_names is not None and leaf_names is not None:
            saved_names = list(saved_names)
            ids = list(saved.get("params", []))
            if len(ids) != len(saved_names):
                raise ValueError(
                    f"loaded param group {gi} has {len(ids)} params but "
                    f"{len(saved_names)} param_names"
                )
            pos = _index(saved_names, f"loaded param group {gi}")
            mine = set(_index(leaf_names, f"param group {gi}"))
            missing = [n for n in leaf_names if n not in pos]
            extra = [n for n in saved_names if n not in mine]
            if missing or extra:
                raise ValueError(
                    f"loaded state dict's param group {gi} does not name the optimizer's "
                    f"parameters: missing {missing}, unexpected {extra}"
                )
            if saved_names != leaf_names and _is_lbfgs(opt):
                state_dict = {**state_dict, "state": {
                    k: _permute_flat(v, _sizes(opt, gi), saved_names, leaf_names)
                    for k, v in state_dict.get("state", {}).items()}}
            saved["params"] = [ids[pos[n]] for n in leaf_names]
        groups.append(saved)
    return {**state_dict, "param_groups": groups}, keep


def to_export_order(opt: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
    """A state_dict exported in leaf order, rearranged so each named group lists its params in
    the order of its ``param_names`` (the order a loaded torch state_dict had)."""
    state = dict(state_dict["state"])
    for gi, group in enumerate(state_dict["param_groups"]):
        names, leaf_names = group.get("param_names"), opt._param_names[gi]
        if names is None or leaf_names is None or list(names) == list(leaf_names):
            continue
        pos = _index(list(leaf_names), f"param group {gi}")
        ids = group["params"]
        if _is_lbfgs(opt):  # one state, under the first parameter, of flat vectors
            state = {k: _permute_flat(v, _sizes(opt, gi), list(leaf_names), list(names))
                     for k, v in state.items()}
            continue
        old = {i: state.pop(i) for i in ids if i in state}
        for k, name in enumerate(names):
            entry = old.get(ids[pos[name]])
            if entry is not None:
                state[ids[k]] = entry
    return {**state_dict, "state": dict(sorted(state.items()))}
