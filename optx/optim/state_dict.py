"""torch's ``optimizer.state_dict()`` layout for :class:`optx.optim.Optimizer`.

``{'state': {i: {...}}, 'param_groups': [{..., 'params': [i, ...]}]}`` with parameters numbered
in ``jax.tree_util`` leaf order across the groups. What a group's state looks like in torch is
its transformation's :class:`optx.layout.TorchLayout`: by default one entry per parameter, read
from :class:`optx.OptimizerState` with torch's keys: ``step`` (a 0-d float32 array, torch's
default scalar dtype) from ``count`` for the optimizers torch counts per parameter, every slot
under its own name, and the shared scalars torch keeps per parameter (NAdam's ``mu_product``,
ASGD's ``eta``/``mu``). A layout with its own ``export_state``/``import_state`` (LBFGS) replaces
that per-group conversion; the groups, their checks and the commit stay here.
Tensors are numpy arrays both ways.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from optx.layout import TorchLayout
from optx.state import OptimizerState


def _flatten(tree: Any) -> tuple[list[Any], Any]:
    """A slot's leaves, one per parameter; ``None`` where the parameter has no such slot."""
    return jax.tree_util.tree_flatten(tree, is_leaf=lambda x: x is None)


def _check_supported(opt: Any) -> None:
    for i, s in enumerate(opt._states):
        if opt._layout_of(opt._txs[i]).export_state is None and not isinstance(s, OptimizerState):
            raise NotImplementedError(
                f"state_dict is not supported for {type(opt).__name__} "
                f"(state type {type(s).__name__})"
            )


def _export_state(layout: TorchLayout, state: OptimizerState, n_params: int) -> dict[int, Any]:
    """torch's per-parameter entries of one group (none before the first step)."""
    if int(state.count) == 0:
        return {}
    # A lazily allocated slot (SGD's momentum_buffer) is not torch state until its flag is set.
    unallocated = {slot for slot, flag in layout.slot_flags
                   if flag in state.scalars and not bool(state.scalars[flag])}
    slots = {k: _flatten(v)[0] for k, v in state.slots.items() if k not in unallocated}
    scalars = {k: np.array(v) for k, v in state.scalars.items()
               if k not in layout.hidden_scalars}
    out = {}
    for j in range(n_params):
        entry: dict[str, Any] = {}
        if layout.has_step:
            entry["step"] = np.asarray(float(state.count), dtype=np.float32)
        entry.update({k: np.array(leaves[j]) for k, leaves in slots.items()
                      if leaves[j] is not None})
        entry.update({k: v.copy() for k, v in scalars.items()})
        out[j] = entry
    return out


def export_state_dict(opt: Any) -> dict[str, Any]:
    _check_supported(opt)
    state: dict[int, Any] = {}
    groups = []
    index = 0
    for i, (group, params, s) in enumerate(zip(opt.param_groups, opt._params, opt._states)):
        layout = opt._layout_of(opt._txs[i])
        n = len(jax.tree_util.tree_leaves(params))
        export = layout.export_state or _export_state
        for j, entry in export(layout, s, n).items():
            if entry:
                state[index + j] = entry
        g = {k: v for k, v in group.items() if k != "params"}
        g["params"] = list(range(index, index + n))
        groups.append(g)
        index += n
    return {"state": state, "param_groups": groups}


def _tensor(key: str, value: Any, ref: Any, pid: Any) -> Any:
    v = np.asarray(value)
    if v.shape != ref.shape:
        raise ValueError(
            f"state {key!r} of parameter {pid} has shape {v.shape}, expected {ref.shape}"
        )
    if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.complexfloating)):
        raise ValueError(
            f"state {key!r} of parameter {pid} has dtype {v.dtype}, expected {ref.dtype}"
        )
    return jnp.array(v, copy=True, dtype=ref.dtype)


def _import_state(
    layout: TorchLayout, fresh: OptimizerState, entries: Sequence[Any], param_ids: Sequence[Any]
) -> OptimizerState:
    """One group's state from torch's per-parameter entries (``fresh`` where there are none)."""
    present = [e is not None and len(e) > 0 for e in entries]
    if not any(present):
        return fresh
    if not all(present):
        raise ValueError("state given for some parameters only")
    flat = {k: _flatten(v) for k, v in fresh.slots.items()}
    flagged = {slot: flag for slot, flag in layout.slot_flags if flag in fresh.scalars}
    public_scalars = set(fresh.scalars) - layout.hidden_scalars
    slot_leaves: dict[str, list[Any]] = {k: [] for k in fresh.slots}
    scalars = dict(fresh.scalars)
    counts: set[float] = set()
    for j, (e, pid) in enumerate(zip(entries, param_ids)):
        refs = {k: leaves[j] for k, (leaves, _) in flat.items()}
        expected = {k for k, ref in refs.items() if ref is not None} | public_scalars
        if layout.has_step:
            expected.add("step")
        got = set(e)
        if not (expected - set(flagged)) <= got or not got <= expected:
            raise ValueError(
                f"state of parameter {pid} has keys {sorted(got)}, expected {sorted(expected)}"
            )
        if "step" in e:
            counts.add(float(np.asarray(e["step"])))
        for k, ref in refs.items():
            slot_leaves[k].append(ref if ref is None or k not in e else _tensor(k, e[k], ref, pid))
        for k in public_scalars & got:
            v = np.asarray(e[k])
            if v.shape != ():
                raise ValueError(f"state {k!r} must be a scalar, got shape {v.shape}")
            scalars[k] = jnp.array(v, copy=True, dtype=fresh.scalars[k].dtype)
        for slot, flag in flagged.items():
            scalars[flag] = jnp.asarray(slot in e)
    if len(counts) > 1:
        raise ValueError(f"parameters have different steps {sorted(counts)}")
    # Without a torch step (SGD, Muon), any state means at least one step was taken.
    count = int(counts.pop()) if counts else 1
    return fresh._replace(
        count=jnp.asarray(count, fresh.count.dtype),
        slots={k: jax.tree_util.tree_unflatten(flat[k][1], v) for k, v in slot_leaves.items()},
        scalars=scalars,
    )


def import_state_dict(opt: Any, state_dict: dict[str, Any]) -> None:
    """Validates everything, then loads; on any error raises ``ValueError`` and changes nothing."""
    _check_supported(opt)
    if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
        raise ValueError("state_dict must be a dict with exactly 'state' and 'param_groups'")
    saved_groups = state_dict["param_groups"]
    saved_state = state_dict["state"]
    if len(saved_groups) != len(opt.param_groups):
        raise ValueError(
            "loaded state dict has a different number of parameter groups: "
            f"{len(saved_groups)} != {len(opt.param_groups)}"
        )
    # Build new groups, their transformations (a flag such as amsgrad may differ) and states
    # first; commit only when all of them are valid.
    loaded = []
    for gi, (saved, params) in enumerate(zip(saved_groups, opt._params)):
        n = len(jax.tree_util.tree_leaves(params))
        if "params" not in saved or len(saved["params"]) != n:
            raise ValueError(
                f"loaded state dict contains a parameter group {gi} that doesn't match the size "
                f"of optimizer's group ({len(saved.get('params', []))} != {n})"
            )
        group = {k: v for k, v in saved.items() if k != "params"}
        missing = set(opt.defaults) - set(group)
        if missing:
            raise ValueError(f"param group {gi} lacks {sorted(missing)}")
        try:
            tx = opt._make_tx(group)
            layout = opt._layout_of(tx)
            load = layout.import_state or _import_state
            entries = [saved_state.get(pid) for pid in saved["params"]]
            state = load(layout, tx.init(params), entries, list(saved["params"]))
        except (ValueError, TypeError) as err:
            raise ValueError(f"param group {gi}: {err}") from err
        loaded.append((group, tx, state))
    for i, (group, tx, state) in enumerate(loaded):
        opt._replace_group_state(i, group, tx, state)
