"""Saving state_dicts without pickle: ``optx.optim.save(sd, path)`` / ``optx.optim.load(path)``.

torch users write ``torch.save(opt.state_dict(), f)``; loading a pickle can execute code. These
mirror that call with a ``.npz`` file read with ``allow_pickle=False``: the arrays are stored as
arrays and everything else (param-group hyperparameters, flags, ``None``) as one JSON document,
so a checkpoint can never run code.

:func:`save` is atomic: it writes a temporary file in the target's directory, flushes and fsyncs
it, then ``os.replace`` s it onto the path (and fsyncs the directory), so a crash mid-save leaves
the previous checkpoint intact. :func:`load` raises :class:`CheckpointError` naming the file for
anything that is not a whole optx checkpoint (truncated, corrupted, foreign).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import IO, Any

import numpy as np

_META = "__optx_meta__"


class CheckpointError(ValueError):
    """A file :func:`load` cannot read as an optx checkpoint; the message names it and why."""


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


def _fsync_dir(directory: str) -> None:
    # Makes the rename itself durable; directories cannot be opened on some systems (Windows).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(obj: dict[str, Any], f: str | os.PathLike[str] | IO[bytes]) -> None:
    """Writes a state_dict (optimizer or scheduler) to ``f`` as ``.npz``, without pickle.

    A path is written atomically: to a temporary file beside it, flushed and fsynced, then
    renamed onto ``f`` with ``os.replace``; until then ``f`` keeps its previous content. An open
    binary file is written in place.
    """
    arrays: dict[str, np.ndarray] = {}
    meta = _encode(obj, arrays, "")
    if _META in arrays:
        raise ValueError(f"{_META} is reserved")
    payload: dict[str, Any] = {_META: np.asarray(json.dumps(meta)), **arrays}
    if hasattr(f, "write"):
        np.savez(f, **payload)
        return
    path = os.fspath(f)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def load(f: str | os.PathLike[str] | IO[bytes]) -> Any:
    """Reads what :func:`save` wrote; refuses pickled content (``allow_pickle=False``).

    Raises:
      CheckpointError: ``f`` is truncated, corrupted or not an optx checkpoint.
      FileNotFoundError: (and other ``OSError`` s) ``f`` cannot be opened.
    """
    with contextlib.ExitStack() as stack:
        if hasattr(f, "read"):
            fh, name = f, getattr(f, "name", repr(f))
        else:
            name = os.fspath(f)  # type: ignore[arg-type]
            fh = stack.enter_context(open(name, "rb"))
        try:
            data = np.load(fh, allow_pickle=False)
        except Exception as e:  # numpy's and zipfile's errors differ by the kind of damage
            raise CheckpointError(f"{name!s}: {_what(fh)} ({_why(e)})") from e
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{name!s}: not an optx checkpoint (a bare .npy array)")
        with data:
            if _META not in data.files:
                raise CheckpointError(
                    f"{name!s}: not an optx checkpoint (an .npz file without {_META})"
                )
            try:
                return _decode(json.loads(str(data[_META])), data)
            except Exception as e:
                raise CheckpointError(f"{name!s}: corrupted checkpoint ({_why(e)})") from e


def _what(fh: Any) -> str:
    """What an unreadable file looks like: a save cut short starts as a zip and then breaks."""
    try:
        fh.seek(0)
        head = fh.read(4)
    except Exception:
        return "not an optx checkpoint"
    if not head:
        return "empty file, not an optx checkpoint"
    if head == b"PK\x03\x04":  # np.savez's zip header: an optx checkpoint, damaged
        return "truncated or corrupted checkpoint"
    return "not an optx checkpoint"


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


__all__ = ["CheckpointError", "load", "save"]
