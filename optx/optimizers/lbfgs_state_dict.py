"""``torch.optim.LBFGS``'s state_dict layout, the export/import hooks of LBFGS's
:class:`optx.layout.TorchLayout`.

torch keeps one global state under the first parameter, with Python lists for the history
(oldest first) where :class:`optx.LbfgsState` keeps fixed-size ring buffers. Its vectors are
the parameters flattened in torch's order (a dict's insertion order), optx's in
``jax.tree_util`` order: :func:`_permute` converts. Parameter groups, their checks and the commit
are ``optx.optim.state_dict``'s; these two functions convert the one group's state.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

_KEYS = {"func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
         "prev_flat_grad", "prev_loss", "al"}


def _permute(v: Any, sizes: Sequence[int], src: Sequence[int], dst: Sequence[int]) -> Any:
    """A flat vector over the parameters, its per-parameter segments rearranged from the leaf
    order ``src`` to ``dst`` (both lists of leaf indices)."""
    v = np.asarray(v)
    if list(src) == list(dst) or v.shape != (sum(sizes),):
        return v  # nothing to do, or a shape the import reports
    starts = np.concatenate([[0], np.cumsum([sizes[j] for j in src])])
    at = {j: (starts[k], starts[k + 1]) for k, j in enumerate(src)}
    return np.concatenate([v[at[j][0]:at[j][1]] for j in dst])


def export_state(layout: Any, s: Any, order: Sequence[int],
                 sizes: Sequence[int]) -> dict[int, dict[str, Any]]:
    """torch's ``{0: state}`` (nothing before the first step) from an ``LbfgsState``."""
    del layout
    leaf = range(len(order))

    def vec(v: Any) -> Any:
        return _permute(np.array(v), sizes, leaf, order)

    if int(s.count) == 0:
        return {}
    n_iter = int(s.n_iter)
    entry: dict[str, Any] = {"func_evals": int(s.func_evals), "n_iter": n_iter}
    if n_iter > 0:
        size = s.old_dirs.shape[0]
        rows = [(int(s.history_start) + i) % size for i in range(int(s.history_count))]
        entry.update(
            d=vec(s.d), t=float(s.t),
            old_dirs=[vec(s.old_dirs[r]) for r in rows],
            old_stps=[vec(s.old_stps[r]) for r in rows],
            ro=[np.array(s.ro[r]) for r in rows],
            H_diag=np.array(s.H_diag), prev_flat_grad=vec(s.prev_flat_grad),
            prev_loss=float(s.prev_loss),
        )
        if n_iter >= 2:
            entry["al"] = [np.array(s.al[r]) for r in rows] + [None] * (size - len(rows))
    return {0: entry}


def _number(key: str, v: Any, kind: type) -> Any:
    """A loaded scalar as ``kind``; raises naming ``key``."""
    a = np.asarray(v) if v is not None else np.asarray(np.nan, object)
    if a.size != 1 or a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"LBFGS state {key!r} must be a number, got {v!r}")
    x = a.reshape(()).item()
    if kind is int:
        if not np.isfinite(x) or x != int(x) or x < 0:
            raise ValueError(f"LBFGS state {key!r} must be a non-negative integer, got {v!r}")
        return int(x)
    return float(x)


def _counter(key: str, v: Any, dtype: Any) -> Any:
    """A loaded counter as an array of ``dtype``; raises naming ``key`` when it does not fit."""
    x = _number(key, v, int)
    top = int(np.iinfo(dtype).max)
    if x > top:
        raise ValueError(f"LBFGS state {key!r} must be at most {top}, got {v!r}")
    return jnp.asarray(x, dtype)


def import_state(layout: Any, fresh: Any, entries: Sequence[Any], labels: Sequence[str],
                 order: Sequence[int], sizes: Sequence[int]) -> Any:
    """The ``LbfgsState`` for torch's state entries of the group (at most one is non-empty)."""
    del layout, labels
    leaf = range(len(order))
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
        "func_evals": _counter("func_evals", e["func_evals"], fresh.func_evals.dtype),
        "n_iter": _counter("n_iter", e["n_iter"], fresh.n_iter.dtype),
    }

    def vec(key: str, v: Any) -> Any:
        try:
            a = np.asarray(v)  # a view as given: its shape is checked before any copy
        except (TypeError, ValueError) as err:
            raise ValueError(f"LBFGS state {key!r} is not an array") from err
        if a.shape != (n,) or not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"LBFGS state {key!r} must be a float vector of shape ({n},)"
                             f", got {a.dtype}{a.shape}")
        # A copy: never alias the caller's (torch's) memory.
        return _permute(np.array(a, copy=True), sizes, order, leaf)

    def history(key: str) -> list[Any]:
        v = e[key]
        if isinstance(v, (str, bytes, dict)) or not hasattr(v, "__len__"):
            raise ValueError(f"LBFGS state {key!r} must be a list, got {type(v).__name__}")
        if len(v) > size:
            raise ValueError(
                f"LBFGS history lists must have equal lengths <= history_size={size}")
        return list(v)

    if _number("n_iter", e["n_iter"], int) > 0:
        missing = _KEYS - {"al"} - got
        if missing:
            raise ValueError(f"LBFGS state lacks {sorted(missing)}")
        dirs, stps, ro = history("old_dirs"), history("old_stps"), history("ro")
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
            ro_a[i] = _number("ro", r, float)
        al = e.get("al", [])
        if not isinstance(al, (list, tuple)):
            raise ValueError(f"LBFGS state 'al' must be a list, got {type(al).__name__}")
        for i, a in enumerate(list(al)[:size]):
            if a is not None:
                al_a[i] = _number("al", a, float)
        new.update(
            d=jnp.asarray(vec("d", e["d"]), dt), t=jnp.asarray(_number("t", e["t"], float), dt),
            old_dirs=jnp.asarray(old_dirs), old_stps=jnp.asarray(old_stps),
            ro=jnp.asarray(ro_a), al=jnp.asarray(al_a),
            H_diag=jnp.asarray(_number("H_diag", e["H_diag"], float), dt),
            prev_flat_grad=jnp.asarray(vec("prev_flat_grad", e["prev_flat_grad"]), dt),
            prev_loss=jnp.asarray(_number("prev_loss", e["prev_loss"], float),
                                  fresh.prev_loss.dtype),
            history_start=jnp.zeros((), fresh.history_start.dtype),
            history_count=jnp.asarray(len(dirs), fresh.history_count.dtype),
        )
    return fresh._replace(**new)
