"""What a copy or pickle of an :class:`optx.optim.Optimizer` keeps, and its restoration:
torch's (defaults, state, param groups; not the hooks), as arrays and plain values;
transformations are rebuilt from their arguments. Also its ``repr``, torch's."""

from __future__ import annotations

from typing import Any

import jax

from optx.optim.groups import ParamTree, Slot, given_arrays
from optx.optim.state_dict import copy_tree


def saved(opt: Any) -> dict[str, Any]:
    """``opt``'s copyable state."""
    return {
        "defaults": opt.defaults,
        "mode": opt._tree.mode,
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        "params": [s.params for s in opt._slots],
        "states": [s.state for s in opt._slots],
        "meta": [(s.names, s.kind, s.order, s.built, s.tx_args, s.user) for s in opt._slots],
        "extra_state": opt._extra_state,
    }


def restored(opt: Any, saved: dict[str, Any]) -> tuple[Any, ...]:
    """The arguments of ``opt._commit`` that install ``saved`` (slots, group dicts, params
    tree, extra state)."""
    slots, data = [], {}
    for i, (group, params, state, (names, kind, order, built, tx_args, user)) in enumerate(
            zip(saved["groups"], saved["params"], saved["states"], saved["meta"])):
        tx = opt._make_tx(tx_args)
        slots.append(Slot(params, copy_tree(state), tx, opt._layout_of(tx), names, kind,
                          list(order), given_arrays(params), built, dict(tx_args),
                          {k: group[k] for k in tx_args if k in group}, dict(user)))
        data[i] = {"params": [], **group}
    tree = ParamTree(saved["mode"], [list(s.names or ()) for s in slots])
    return slots, data, None, (), tree, dict(saved["extra_state"])


def describe(opt: Any) -> str:
    """torch's ``repr`` of an optimizer: each group's keys but ``params``."""
    lines = [type(opt).__name__ + " ("]
    for i, group in enumerate(opt.param_groups):
        if i:
            lines.append("")
        lines.append(f"Parameter Group {i}")
        for key in sorted(group):
            if key != "params":
                lines.append(f"    {key}: {group[key]}")
    lines.append(")")
    return "\n".join(lines)


def unaliased(grads: Any, donated: list[Any]) -> Any:
    """``grads`` with each leaf that is one of the ``donated`` arrays copied (XLA cannot donate
    a buffer the same call also reads: ``opt.step(opt.params)``)."""
    ids = set(map(id, donated))
    return jax.tree_util.tree_map(lambda g: copy_tree(g) if id(g) in ids else g, grads)
