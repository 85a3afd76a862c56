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

Two kinds of torch state_dicts that a strict reading would refuse load as torch loads them:

* From an older torch, a group may lack the implementation switches and flags added since
  (``foreach``, ``maximize``, ``capturable``, ``differentiable``, ``fused``,
  ``decoupled_weight_decay``, ...). torch's ``__setstate__`` fills them with its constructor's
  defaults (not the instance's arguments), and so does optx: each missing argument whose default
  is a bool or None. A missing numeric hyperparameter (``lr``, ``betas``) is an error here; torch
  would fail at the next step.
* torch keeps a ``step`` per parameter: a parameter that never had a gradient has no state (it
  gets a fresh one, from step 0, at its first step), and one that missed some steps has a
  smaller ``step``. optx keeps one ``count`` per group. Where the update never reads the step
  (``TorchLayout.step_free_unless``) that is exact: a parameter without state loads with its
  initial state, and the group's count is the largest step. The exported ``step`` is then the
  group's for every parameter, not torch's per-parameter ones (those optimizers never read it).
  Other optimizers (Adam's bias correction, Rprop's first step, ASGD's averaging, ...) raise.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from optx.layout import TorchLayout
from optx.state import OptimizerState


def _copy_tree(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)


def _signature_defaults(constructor: Any) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(constructor).parameters.items()}


def _flatten(tree: Any) -> tuple[list[Any], Any]:
    """A slot's leaves, one per parameter; ``None`` where the parameter has no such slot."""
    return jax.tree_util.tree_flatten(tree, is_leaf=lambda x: x is None)


def _even_steps(
    layout: TorchLayout, group: dict[str, Any], entries: list[Any], param_ids: list[Any]
) -> list[Any]:
    """``entries`` with one step for all, where torch's differ (some parameters without state,
    or with a smaller step) and the update never reads it; raises where it does."""
    missing = [pid for pid, e in zip(param_ids, entries) if not e]
    steps = {float(np.asarray(e["step"])) for e in entries if e and "step" in e}
    if len(missing) in (0, len(entries)) and len(steps) <= 1:
        return entries
    why = None
    if layout.step_free_unless is None:
        why = f"{layout.torch_name}'s update depends on each parameter's own step"
    else:
        nonzero = [k for k in layout.step_free_unless
                   if callable(group.get(k)) or group.get(k, 0) != 0]
        if nonzero:
            why = f"with a nonzero {nonzero[0]!r}, {layout.torch_name}'s update depends on it"
    if why:
        what = (f"state given for some parameters only (none for parameters {missing})"
                if missing else f"parameters have different steps {sorted(steps)}")
        raise ValueError(
            f"{what}: optx keeps one step count per param group, and {why}, so this state_dict "
            "cannot be loaded exactly"
        )
    step = max(steps, default=None)
    return [{**e, "step": np.asarray(step, np.float32)} if e and "step" in e else e
            for e in entries]


def _fill_missing(opt: Any, group: dict[str, Any], gi: int) -> dict[str, Any]:
    """``group`` with the switches and flags an older torch did not save, as torch fills them."""
    constructor = type(opt)._constructor
    signature = _signature_defaults(constructor)
    filled = dict(group)
    for k in opt.defaults:
        default = signature.get(k, inspect.Parameter.empty)
        if k not in filled and (default is None or isinstance(default, bool)):
            filled[k] = default
    missing = set(opt.defaults) - set(filled)
    if missing:
        raise ValueError(f"param group {gi} lacks {sorted(missing)}")
    return filled


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
    """One group's state from torch's per-parameter entries (``fresh`` where there are none;
    :func:`_check_partial` has allowed a parameter without one)."""
    present = [e is not None and len(e) > 0 for e in entries]
    if not any(present):
        return fresh
    flat = {k: _flatten(v) for k, v in fresh.slots.items()}
    flagged = {slot: flag for slot, flag in layout.slot_flags if flag in fresh.scalars}
    public_scalars = set(fresh.scalars) - layout.hidden_scalars
    slot_leaves: dict[str, list[Any]] = {k: [] for k in fresh.slots}
    scalars = dict(fresh.scalars)
    counts: set[float] = set()
    allocated: set[str] = set()
    for j, (e, pid) in enumerate(zip(entries, param_ids)):
        refs = {k: leaves[j] for k, (leaves, _) in flat.items()}
        if not present[j]:  # the initial state, as torch creates at the parameter's first step
            for k, ref in refs.items():
                slot_leaves[k].append(ref)
            continue
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
        allocated |= set(flagged) & got
    for slot, flag in flagged.items():
        scalars[flag] = jnp.asarray(slot in allocated)
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
        group = _fill_missing(opt, {k: v for k, v in saved.items() if k != "params"}, gi)
        try:
            group = opt._clean_hyperparams(group)
            tx = opt._make_tx(group)
            layout = opt._layout_of(tx)
            load = layout.import_state or _import_state
            entries = [saved_state.get(pid) for pid in saved["params"]]
            if layout.import_state is None:
                entries = _even_steps(layout, group, entries, list(saved["params"]))
            # Own buffers: the step donates every leaf, and an initial state may share one
            # buffer between slots (as add_param_group copies).
            state = _copy_tree(load(layout, tx.init(params), entries, list(saved["params"])))
        except (ValueError, TypeError) as err:
            raise ValueError(f"param group {gi}: {err}") from err
        loaded.append((group, tx, state))
    for i, (group, tx, state) in enumerate(loaded):
        opt._replace_group_state(i, group, tx, state)
