"""torch's ``optimizer.state_dict()`` layout for :class:`optx.optim.Optimizer`.

``{'state': {i: {...}}, 'param_groups': [{..., 'params': [i, ...]}]}`` with parameters numbered
in ``jax.tree_util`` leaf order across the groups. Per-parameter entries use torch's keys, read
from :class:`optx.OptimizerState`: ``step`` (a 0-d float32 array, torch's default scalar dtype)
from ``count`` for the optimizers torch counts per parameter, every slot under its own name, and
the shared scalars torch keeps per parameter (NAdam's ``mu_product``, ASGD's ``eta``/``mu``).
Tensors are numpy arrays both ways.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optx.torch_optimizer import OptimizerState

# Optimizers torch keeps a per-parameter ``step`` for (SGD and Muon keep none).
_HAS_STEP = {
    "adadelta", "adafactor", "adagrad", "adam", "adamax", "adamw", "asgd", "nadam", "radam",
    "rmsprop", "rprop", "sparse_adam",
}
# Internal scalars that are not torch state.
_PRIVATE_SCALARS = {"momentum_buffer_initialized"}


def _name(opt: Any) -> str:
    return getattr(type(opt)._constructor, "__name__", "")


def _check_functional(opt: Any) -> None:
    for s in opt._states:
        if not isinstance(s, OptimizerState):
            raise NotImplementedError(
                f"state_dict is not supported for {type(opt).__name__} "
                f"(state type {type(s).__name__})"
            )


def _param_state(opt: Any, state: OptimizerState, leaf: int) -> dict[str, Any]:
    if int(state.count) == 0:
        return {}
    out: dict[str, Any] = {}
    if _name(opt) in _HAS_STEP:
        out["step"] = np.asarray(float(state.count), dtype=np.float32)
    initialized = state.scalars.get("momentum_buffer_initialized")
    for k, tree in state.slots.items():
        value = jax.tree_util.tree_leaves(tree, is_leaf=lambda x: x is None)[leaf]
        if value is None:
            continue
        if k == "momentum_buffer" and initialized is not None and not bool(initialized):
            continue
        out[k] = np.array(value)
    for k, v in state.scalars.items():
        if k not in _PRIVATE_SCALARS:
            out[k] = np.array(v)
    return out


def export_state_dict(opt: Any) -> dict[str, Any]:
    _check_functional(opt)
    state: dict[int, Any] = {}
    groups = []
    index = 0
    for group, params, s in zip(opt.param_groups, opt._params, opt._states):
        n = len(jax.tree_util.tree_leaves(params))
        ids = list(range(index, index + n))
        for j, i in enumerate(ids):
            entry = _param_state(opt, s, j)
            if entry:
                state[i] = entry
        g = {k: v for k, v in group.items() if k != "params"}
        g["params"] = ids
        groups.append(g)
        index += n
    return {"state": state, "param_groups": groups}


def _expected_keys(opt: Any, s: OptimizerState, leaf: int) -> set[str]:
    keys = {"step"} if _name(opt) in _HAS_STEP else set()
    for k, tree in s.slots.items():
        if jax.tree_util.tree_leaves(tree, is_leaf=lambda x: x is None)[leaf] is not None:
            keys.add(k)
    keys |= {k for k in s.scalars if k not in _PRIVATE_SCALARS}
    return keys


def import_state_dict(opt: Any, state_dict: dict[str, Any]) -> None:
    """Validates everything, then loads; on any error raises ``ValueError`` and changes nothing."""
    _check_functional(opt)
    if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
        raise ValueError("state_dict must be a dict with exactly 'state' and 'param_groups'")
    saved_groups = state_dict["param_groups"]
    saved_state = state_dict["state"]
    if len(saved_groups) != len(opt.param_groups):
        raise ValueError(
            "loaded state dict has a different number of parameter groups: "
            f"{len(saved_groups)} != {len(opt.param_groups)}"
        )
    # Build new groups and their transformations first (a flag such as amsgrad may differ).
    new_groups, new_txs, new_states, index = [], [], [], 0
    for gi, (saved, params) in enumerate(zip(saved_groups, opt._params)):
        leaves, treedef = jax.tree_util.tree_flatten(params)
        if "params" not in saved or len(saved["params"]) != len(leaves):
            raise ValueError(
                f"loaded state dict contains a parameter group {gi} that doesn't match the size "
                f"of optimizer's group ({len(saved.get('params', []))} != {len(leaves)})"
            )
        group = {k: v for k, v in saved.items() if k != "params"}
        missing = set(opt.defaults) - set(group)
        if missing:
            raise ValueError(f"param group {gi} lacks {sorted(missing)}")
        try:
            tx = opt._make_tx(group)
        except (ValueError, TypeError) as err:
            raise ValueError(f"param group {gi}: {err}") from err
        fresh = tx.init(params)
        entries = [saved_state.get(pid) for pid in saved["params"]]
        counts: set[float] = set()
        slot_leaves: dict[str, list[Any]] = {k: [] for k in fresh.slots}
        scalars = dict(fresh.scalars)
        present = [e is not None and len(e) > 0 for e in entries]
        if any(present) and not all(present):
            raise ValueError(f"param group {gi}: state given for some parameters only")
        for j, e in enumerate(entries):
            fresh_leaf = {
                k: jax.tree_util.tree_leaves(v, is_leaf=lambda x: x is None)[j]
                for k, v in fresh.slots.items()
            }
            if not present[j]:
                for k in fresh.slots:
                    slot_leaves[k].append(fresh_leaf[k])
                continue
            expected = _expected_keys(opt, fresh, j)
            got = set(e)
            has_flag = "momentum_buffer_initialized" in fresh.scalars
            optional = {"momentum_buffer"} if has_flag else set()
            if not (expected - optional) <= got or not got <= expected:
                raise ValueError(
                    f"state of parameter {saved['params'][j]} has keys {sorted(got)}, "
                    f"expected {sorted(expected)}"
                )
            if "step" in e:
                counts.add(float(np.asarray(e["step"])))
            for k in fresh.slots:
                ref = fresh_leaf[k]
                if ref is None:
                    slot_leaves[k].append(None)
                    continue
                if k not in e:
                    slot_leaves[k].append(ref)
                    continue
                v = np.asarray(e[k])
                if v.shape != ref.shape:
                    raise ValueError(
                        f"state {k!r} of parameter {saved['params'][j]} has shape {v.shape}, "
                        f"expected {ref.shape}"
                    )
                if not (np.issubdtype(v.dtype, np.floating)
                        or np.issubdtype(v.dtype, np.complexfloating)):
                    raise ValueError(
                        f"state {k!r} of parameter {saved['params'][j]} has dtype {v.dtype}, "
                        f"expected {ref.dtype}"
                    )
                slot_leaves[k].append(jnp.asarray(v, dtype=ref.dtype))
            for k in scalars:
                if k in e:
                    v = np.asarray(e[k])
                    if v.shape != ():
                        raise ValueError(f"state {k!r} must be a scalar, got shape {v.shape}")
                    scalars[k] = jnp.asarray(v, dtype=fresh.scalars[k].dtype)
            if "momentum_buffer_initialized" in scalars:
                scalars["momentum_buffer_initialized"] = jnp.asarray("momentum_buffer" in e)
        if len(counts) > 1:
            raise ValueError(f"param group {gi}: parameters have different steps {sorted(counts)}")
        if counts:
            count = int(counts.pop())
        elif any(present):
            count = 1  # SGD/Muon keep no step; any state means at least one step was taken.
        else:
            count = 0
        state = fresh._replace(
            count=jnp.asarray(count, fresh.count.dtype),
            slots={k: treedef.unflatten(v) for k, v in slot_leaves.items()},
            scalars=scalars,
        )
        new_groups.append(group)
        new_txs.append(tx)
        new_states.append(state)
        index += len(leaves)
    # Commit.
    for i, group in enumerate(new_groups):
        g = opt.param_groups[i]
        params = g["params"]
        dict.clear(g)
        dict.update(g, {"params": params, **group})
        opt._txs[i] = new_txs[i]
        opt._states[i] = new_states[i]
        opt._built[i] = opt._structure(g)
    opt._jitted.clear()
