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
    if _name(opt) == "lbfgs":
        return _lbfgs_export(opt)
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
    if _name(opt) == "lbfgs":
        return _lbfgs_import(opt, state_dict)
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
                slot_leaves[k].append(jnp.array(v, copy=True, dtype=ref.dtype))
            for k in scalars:
                if k in e:
                    v = np.asarray(e[k])
                    if v.shape != ():
                        raise ValueError(f"state {k!r} must be a scalar, got shape {v.shape}")
                    scalars[k] = jnp.array(v, copy=True, dtype=fresh.scalars[k].dtype)
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
            slots={k: jax.tree_util.tree_unflatten(treedef, v) for k, v in slot_leaves.items()},
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


# ---------------------------------------------------------------------------------------------
# LBFGS: torch keeps one global state under the first parameter, with Python lists for the
# history (oldest first) where optx keeps fixed-size ring buffers.

_LBFGS_KEYS = {"func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
               "prev_flat_grad", "prev_loss", "al"}


def _lbfgs_export(opt: Any) -> dict[str, Any]:
    s = opt._states[0]
    n_leaves = len(jax.tree_util.tree_leaves(opt._params[0]))
    group = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    group["params"] = list(range(n_leaves))
    out: dict[str, Any] = {"state": {}, "param_groups": [group]}
    if int(s.count) == 0:
        return out
    n_iter = int(s.n_iter)
    entry: dict[str, Any] = {"func_evals": int(s.func_evals), "n_iter": n_iter}
    if n_iter > 0:
        size = s.old_dirs.shape[0]
        rows = [(int(s.history_start) + i) % size for i in range(int(s.history_count))]
        entry.update(
            d=np.array(s.d), t=float(s.t),
            old_dirs=[np.array(s.old_dirs[r]) for r in rows],
            old_stps=[np.array(s.old_stps[r]) for r in rows],
            ro=[np.array(s.ro[r]) for r in rows],
            H_diag=np.array(s.H_diag), prev_flat_grad=np.array(s.prev_flat_grad),
            prev_loss=float(s.prev_loss),
        )
        if n_iter >= 2:
            entry["al"] = [np.array(s.al[r]) for r in rows] + [None] * (size - len(rows))
    out["state"][0] = entry
    return out


def _lbfgs_import(opt: Any, state_dict: dict[str, Any]) -> None:
    if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
        raise ValueError("state_dict must be a dict with exactly 'state' and 'param_groups'")
    groups = state_dict["param_groups"]
    n_leaves = len(jax.tree_util.tree_leaves(opt._params[0]))
    if len(groups) != 1:
        raise ValueError(
            f"loaded state dict has a different number of parameter groups: {len(groups)} != 1"
        )
    if len(groups[0].get("params", [])) != n_leaves:
        raise ValueError(
            "loaded state dict contains a parameter group 0 that doesn't match the size of "
            f"optimizer's group ({len(groups[0].get('params', []))} != {n_leaves})"
        )
    group = {k: v for k, v in groups[0].items() if k != "params"}
    try:
        tx = opt._make_tx(group)
    except (ValueError, TypeError) as err:
        raise ValueError(f"param group 0: {err}") from err
    fresh = tx.init(opt._params[0])
    entries = [v for k, v in state_dict["state"].items() if v]
    if len(entries) > 1:
        raise ValueError("LBFGS keeps one state (under its first parameter); got several")
    state = fresh
    if entries:
        e = entries[0]
        got = set(e)
        if not {"func_evals", "n_iter"} <= got or not got <= _LBFGS_KEYS:
            raise ValueError(f"LBFGS state has keys {sorted(got)}, expected {sorted(_LBFGS_KEYS)}")
        n, size, dt = fresh.d.shape[0], fresh.old_dirs.shape[0], fresh.d.dtype
        new: dict[str, Any] = {
            "count": jnp.ones((), fresh.count.dtype),
            "func_evals": jnp.asarray(int(e["func_evals"]), fresh.func_evals.dtype),
            "n_iter": jnp.asarray(int(e["n_iter"]), fresh.n_iter.dtype),
        }

        def vec(key: str, v: Any) -> Any:
            a = np.array(v, copy=True)  # never alias the caller's (torch's) memory
            if a.shape != (n,) or not np.issubdtype(a.dtype, np.floating):
                raise ValueError(f"LBFGS state {key!r} must be a float vector of shape ({n},)"
                                 f", got {a.dtype}{a.shape}")
            return a

        if int(e["n_iter"]) > 0:
            missing = _LBFGS_KEYS - {"al"} - got
            if missing:
                raise ValueError(f"LBFGS state lacks {sorted(missing)}")
            dirs, stps, ro = list(e["old_dirs"]), list(e["old_stps"]), list(e["ro"])
            if not (len(dirs) == len(stps) == len(ro)) or len(dirs) > size:
                raise ValueError(
                    f"LBFGS history lists must have equal lengths <= history_size={size}"
                )
            old_dirs = np.zeros((size, n), dt)
            old_stps = np.zeros((size, n), dt)
            ro_a = np.zeros((size,), dt)
            al_a = np.zeros((size,), dt)
            for i, (y, s_, r) in enumerate(zip(dirs, stps, ro)):
                old_dirs[i] = vec("old_dirs", y)
                old_stps[i] = vec("old_stps", s_)
                ro_a[i] = float(np.asarray(r))
            for i, a in enumerate(list(e.get("al", []))[:size]):
                if a is not None:
                    al_a[i] = float(np.asarray(a))
            new.update(
                d=jnp.asarray(vec("d", e["d"]), dt), t=jnp.asarray(float(e["t"]), dt),
                old_dirs=jnp.asarray(old_dirs), old_stps=jnp.asarray(old_stps),
                ro=jnp.asarray(ro_a), al=jnp.asarray(al_a),
                H_diag=jnp.asarray(float(np.asarray(e["H_diag"])), dt),
                prev_flat_grad=jnp.asarray(vec("prev_flat_grad", e["prev_flat_grad"]), dt),
                prev_loss=jnp.asarray(float(e["prev_loss"]), fresh.prev_loss.dtype),
                history_start=jnp.zeros((), fresh.history_start.dtype),
                history_count=jnp.asarray(len(dirs), fresh.history_count.dtype),
            )
        state = fresh._replace(**new)
    g = opt.param_groups[0]
    params = g["params"]
    dict.clear(g)
    dict.update(g, {"params": params, **group})
    opt._txs[0], opt._states[0] = tx, state
    opt._built[0] = opt._structure(g)
    opt._jitted.clear()
