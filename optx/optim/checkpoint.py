"""Saving state_dicts without pickle: ``optx.optim.save(sd, path)`` / ``optx.optim.load(path)``.

torch users write ``torch.save(opt.state_dict(), f)``; loading a pickle can execute code. These
mirror that call with a ``.npz`` file read with ``allow_pickle=False``: the arrays are stored as
arrays and everything else (param-group hyperparameters, flags, ``None``) as one JSON document,
so a checkpoint can never run code.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

_META = "__optx_meta__"


def _encode(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    if isinstance(value, dict):
        return {"dict": [[_encode(k, arrays, f"{path}/k{i}"), _encode(v, arrays, f"{path}/{i}")]
                         for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, (list, tuple)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_encode(v, arrays, f"{path}/{i}") for i, v in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"py": value}
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"cannot save {type(value).__name__} at {path or '/'} without pickle")
    arrays[path] = array
    return {"array": path}


def _decode(node: Any, arrays: Any) -> Any:
    (kind, value), = node.items()
    if kind == "dict":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value}
    if kind == "list":
        return [_decode(v, arrays) for v in value]
    if kind == "tuple":
        return tuple(_decode(v, arrays) for v in value)
    if kind == "py":
        return value
    if kind == "array":
        return np.array(arrays[value])
    raise ValueError(f"unknown node {kind!r} in checkpoint")


def save(obj: dict[str, Any], f: str | os.PathLike[str]) -> None:
    """Writes a state_dict (optimizer or scheduler) to ``f`` as ``.npz``, without pickle."""
    arrays: dict[str, np.ndarray] = {}
    meta = _encode(obj, arrays, "")
    if _META in arrays:
        raise ValueError(f"{_META} is reserved")
    payload: dict[str, Any] = {_META: np.asarray(json.dumps(meta)), **arrays}
    with open(f, "wb") as fh:
        np.savez(fh, **payload)


def load(f: str | os.PathLike[str]) -> Any:
    """Reads what :func:`save` wrote; refuses pickled content (``allow_pickle=False``)."""
    with np.load(f, allow_pickle=False) as data:
        meta = json.loads(str(data[_META]))
        return _decode(meta, data)


__all__ = ["load", "save"]
