"""``torch.optim.LBFGS``'s state_dict layout, the export/import hooks of LBFGS's
:class:`optx.layout.TorchLayout`.

torch keeps one global state under the first parameter, with Python lists for the history
(oldest first) where :class:`optx.LbfgsState` keeps fixed-size ring buffers. Parameter groups,
their checks and the commit are ``optx.optim.state_dict``'s; these two functions convert the one
group's state.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

_KEYS = {"func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
         "prev_flat_grad", "prev_loss", "al"}


def export_state(layout: Any, s: Any, n_params: int) -> dict[int, dict[str, Any]]:
    """torch's ``{0: state}`` (nothing before the first step) from an ``LbfgsState``."""
    del layout, n_params
    if int(s.count) == 0:
        return {}
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
    return {0: entry}


def import_state(layout: Any, fresh: Any, entries: Sequence[Any], param_ids: Sequence[int]) -> Any:
    """The ``LbfgsState`` for torch's state entries of the group (at most one is non-empty)."""
    del layout, param_ids
    given = [e for e in entries if e]
    if len(given) > 1:
        raise ValueError("LBFGS keeps one state (under its first parameter); got several")
    if not given:
        return fresh
    e = given[0]
    got = set(e)
    if not {"func_evals", "n_iter"} <= got or not got <= _KEYS:
        raise ValueError(f"LBFGS state has keys {sorted(got)}, expected {sorted(_KEYS)}")
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
        missing = _KEYS - {"al"} - got
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
    return fresh._replace(**new)
