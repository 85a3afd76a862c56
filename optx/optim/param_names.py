"""Parameter names and torch's parameter order, as torch 2.x's ``named_parameters()`` support.

**Names.** A group's parameters are named when they are given as ``(name, array)`` pairs
(torch's ``model.named_parameters()``), or when they are a pytree with dict keys or attributes:
each leaf is then named by its key path joined with dots, ``{"layer1": {"weight": w}}`` giving
``"layer1.weight"`` and a list index giving ``"0"``, exactly as torch names the parameters of a
module that the pytree mirrors (``nn.Sequential`` children are ``"0"``, ``"1"``, ...). A plain
array or a list of arrays is unnamed, as torch's ``model.parameters()``. Named groups carry
``param_names`` in ``param_groups`` and in ``state_dict()``, as torch writes them, and a
state_dict carrying ``param_names`` loads **by name** into a named group.

**Order.** torch numbers parameters in the order its module lists them. A pytree's torch order
is :func:`torch_order`: a dict's insertion order (what ``named_parameters()`` gives when the dict
was built from it; ``jax.tree_util`` sorts dict keys instead), a list's order, and every other
node's own order. ``state_dict()`` numbers parameters in that order and a nameless state_dict
loads by position in it, so a torch checkpoint saved without names lands on the parameter torch
had at that position, and torch reads optx's checkpoints the same way.
"""

from __future__ import annotations

import collections.abc
from typing import Any

import jax

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


def torch_order(tree: Any) -> list[int]:
    """The leaves of ``tree`` (their indices in ``jax.tree_util`` order) in torch's order:
    each dict's keys in insertion order, every other node's children in their own order."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    if not any(isinstance(k, jax.tree_util.DictKey) for path, _ in flat for k in path):
        return list(range(len(flat)))
    children_of: dict[int, dict[Any, tuple[int, Any]]] = {}

    def children(node: Any) -> dict[Any, tuple[int, Any]]:
        """``{key: (torch rank, child)}`` of a node, computed once per node."""
        found = children_of.get(id(node))
        if found is None:
            if isinstance(node, dict):
                found = {jax.tree_util.DictKey(k): (r, v) for r, (k, v) in enumerate(node.items())}
            else:
                one_level = jax.tree_util.tree_flatten_with_path(
                    node, is_leaf=lambda x: x is not node)[0]
                found = {path[0]: (r, child) for r, (path, child) in enumerate(one_level)}
            children_of[id(node)] = found
        return found

    def rank(path: Any) -> list[int]:
        node, out = tree, []
        for key in path:
            r, node = children(node)[key]
            out.append(r)
        return out

    ranks = [rank(path) for path, _ in flat]
    return sorted(range(len(flat)), key=ranks.__getitem__)


def index_names(names: list[str], what: str) -> dict[str, int]:
    """``{name: position}``; raises when a name appears twice."""
    pos: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in pos:
            raise ValueError(f"{what} has the parameter name {n!r} twice")
        pos[n] = i
    return pos
