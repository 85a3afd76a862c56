"""A param group's new :class:`~optx.optim.groups.Slot`, from the dict given to
``add_param_group`` or from ``group['params'] = value``: checked, copied and initialized, not yet
stored (the optimizer's commit stores it)."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import jax

from optx.optim import param_names
from optx.optim.groups import Slot, check_disjoint, params_mode, structure
from optx.optim.state_dict import copy_tree

_DUPLICATE = (
    "optimizer contains a parameter group with duplicate parameters; in future, this will "
    "cause an error; see github.com/pytorch/pytorch/issues/40967 for more information"
)


def _has_duplicates(params: Any) -> bool:
    ids = [id(x) for x in jax.tree_util.tree_leaves(params)]
    return len(ids) != len(set(ids))


def built(opt: Any, param_group: dict[str, Any]) -> tuple[Slot, dict[str, Any], str]:
    """``(slot, group dict contents, params mode)`` of ``param_group`` added to ``opt``."""
    if not isinstance(param_group, dict) or "params" not in param_group:
        raise TypeError("param_group must be a dict with a 'params' entry")
    # torch keeps unknown keys (e.g. 'initial_lr', user tags); they are simply not passed on.
    group = opt._clean_hyperparams(
        {k: v for k, v in param_group.items() if k not in ("params", "param_names")})
    for k, v in opt.defaults.items():
        if k not in group and v is inspect.Parameter.empty:
            raise ValueError(
                "parameter group didn't specify a value of required optimization parameter " + k
            )
        group.setdefault(k, v)
    group.update(type(opt)._group_extras)
    raw, names, explicit = param_names.split_named(
        param_names.materialize(param_group["params"], group=True))
    given = check_disjoint(opt._slots, raw, skip=None)
    if _has_duplicates(raw):
        warnings.warn(_DUPLICATE, UserWarning, stacklevel=4)
    given_names = param_group.get("param_names")
    if names is None and given_names is not None:  # a group rebuilt from a state_dict's groups
        if len(given_names) != len(jax.tree_util.tree_leaves(raw)):
            raise ValueError(param_names.MIXED)
        names, explicit = list(given_names), True
    kind = "pairs" if explicit else ("tree" if names is not None else None)
    mode = params_mode(opt._slots, opt._tree.mode, kind)
    order = (list(range(len(names))) if kind == "pairs" and names is not None
             else param_names.torch_order(raw))
    # Own copies: the step donates params and state, which must not delete the caller's
    # arrays, and no two donated leaves may share a buffer.
    params = opt._place_params(copy_tree(raw))
    tx = opt._make_tx(group)
    layout = opt._layout_of(tx)
    if opt.param_groups and not layout.supports_param_groups:
        raise ValueError(
            f"{layout.torch_name} doesn't support per-parameter options (parameter groups)"
        )
    args = {k: group[k] for k in opt.defaults if k in group}
    data = {"params": [], **dict(sorted(group.items()))}
    if names is not None:
        data["param_names"] = [names[j] for j in order]
    slot = Slot(params, opt._init_state(tx, params), tx, layout, names, kind, order, given,
                structure(args, layout), args, {k: data[k] for k in args})
    return slot, data, mode


def replaced(opt: Any, i: int, value: Any) -> tuple[Slot, dict[str, Any]] | None:
    """Group ``i``'s slot and dict contents after ``group['params'] = value``, or None when
    ``value`` holds the same arrays. torch keys state by tensor: the same arrays keep their
    state, new ones start from a fresh state."""
    value, names, explicit = param_names.split_named(param_names.materialize(value, group=True))
    slot = opt._slots[i]
    old_leaves = jax.tree_util.tree_leaves(slot.params)
    new_leaves, new_def = jax.tree_util.tree_flatten(value)
    current = opt.param_groups[i]["params"]
    same_list = len(new_leaves) == len(current) and all(
        a is b for a, b in zip(new_leaves, current))
    same_tree = new_def == jax.tree_util.tree_structure(slot.params) and all(  # type: ignore[operator]  # PyTreeDef has no stubs
        a is b for a, b in zip(new_leaves, old_leaves))
    given = check_disjoint(opt._slots, value, skip=i)
    kind = "pairs" if explicit else ("tree" if names is not None else None)
    if same_list or same_tree:
        return None
    params = opt._place_params(copy_tree(value))
    order = (list(range(len(names))) if kind == "pairs" and names is not None
             else param_names.torch_order(params))
    new = slot.replace(params=params, state=opt._init_state(slot.tx, params), given=given,
                       names=names, kind=kind, order=order, user={})
    data = {k: v for k, v in opt.param_groups[i].items() if k != "param_names"}
    if names is not None:
        data["param_names"] = [names[j] for j in order]
    return new, data
