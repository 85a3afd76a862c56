"""Saving state_dicts without pickle: ``optx.optim.save(sd, path)`` / ``optx.optim.load(path)``.

torch users write ``torch.save(opt.state_dict(), f)``; loading a pickle can execute code. These
mirror that call with a ``.npz`` file read with ``allow_pickle=False``: the arrays are stored as
arrays and everything else (param-group hyperparameters, flags, ``None``, a scheduler's
``Counter`` of milestones, tuples, numpy scalars, keys of any of these types) as one JSON
document, so a checkpoint can never run code. Decoding builds only dicts, lists, tuples,
``Counter`` s, Python scalars and numpy arrays and scalars of a fixed list of dtypes: numpy's own
and ``ml_dtypes``' (``bfloat16``, the ``float8`` variants, ...), whose bytes are stored as
unsigned integers because ``.npy`` cannot describe them.

:func:`save` is atomic: it writes a temporary file in the target's directory, flushes and fsyncs
it, then ``os.replace`` s it onto the path (and fsyncs the directory), so a crash mid-save leaves
the previous checkpoint intact. The file gets the mode ``np.savez`` or ``torch.save`` would give
it (``0o666`` less the umask, or the mode of the file it replaces), and a symlinked path is
written through the link (the link stays, its target is replaced). A process killed mid-save
leaves its temporary file (``.<name>.optx-tmp-<host>-<pid>-<token>``); the next save of the same
path removes those whose writer is dead (see :func:`_stale`). :func:`load` raises
:class:`CheckpointError` naming the file for anything that is not a whole optx checkpoint
(truncated, corrupted, foreign).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import hashlib
import io
import json
import os
import re
import secrets
import socket
import stat
import sys
import time
from typing import IO, Any

import numpy as np

_META = "__optx_meta__"


@functools.cache
def _extension_dtypes() -> dict[str, np.dtype]:
    """ml_dtypes' dtypes (bfloat16, float8...), which .npy cannot describe (it stores them as
    raw ``|V`` bytes, or writes a header it cannot read back): saved as unsigned integers of
    their size, with the name in the metadata. Imported on first use: ml_dtypes takes seconds
    to import, and an array of its dtypes means it is imported already."""
    import ml_dtypes

    return {np.dtype(t).name: np.dtype(t) for t in vars(ml_dtypes).values()
            if isinstance(t, type) and issubclass(t, np.generic)}


class CheckpointError(ValueError):
    """A file :func:`load` cannot read as an optx checkpoint; the message names it and why."""


def _encode(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    if isinstance(value, collections.Counter):
        return {"counter": [[_encode(k, arrays, f"{path}/k{i}"), _encode(v, arrays, f"{path}/{i}")]
                            for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, dict):
        return {"dict": [[_encode(k, arrays, f"{path}/k{i}"), _encode(v, arrays, f"{path}/{i}")]
                         for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, (list, tuple)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_encode(v, arrays, f"{path}/{i}") for i, v in enumerate(value)]}
    # numpy scalars first: np.float64 is a float and np.complex128 a complex, but they come back
    # as what they were (an np.int64 key stays hashable and equal).
    if not isinstance(value, np.generic):
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"py": value}
        if isinstance(value, complex):
            return {"complex": [value.real, value.imag]}
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"cannot save {type(value).__name__} at {path or '/'} without pickle")
    node: dict[str, Any] = {"array": path}
    extension = _extension_dtypes().get(array.dtype.name) if "ml_dtypes" in sys.modules else None
    if extension is not None and extension == array.dtype:  # (np.dtype(None) is float64)
        node["dtype"] = array.dtype.name
        array = array.view(f"u{array.dtype.itemsize}")
    if isinstance(value, np.generic):
        node["scalar"] = True
    arrays[path] = array
    return node


def _decode(node: Any, arrays: Any) -> Any:
    if not isinstance(node, dict):
        raise ValueError(f"node {node!r} in checkpoint is not an object")
    if "array" in node:
        return _decode_array(node, arrays)
    (kind, value), = node.items()
    if kind == "dict":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value}
    if kind == "counter":
        return collections.Counter({_decode(k, arrays): _decode(v, arrays) for k, v in value})
    if kind == "list":
        return [_decode(v, arrays) for v in value]
    if kind == "tuple":
        return tuple(_decode(v, arrays) for v in value)
    if kind == "py" and (value is None or isinstance(value, (bool, int, float, str))):
        return value
    if kind == "complex" and len(value) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return complex(*value)
    raise ValueError(f"unknown node {kind!r} in checkpoint")


def _decode_array(node: dict[str, Any], arrays: Any) -> Any:
    if not set(node) <= {"array", "dtype", "scalar"}:
        raise ValueError(f"unknown array fields {sorted(set(node))} in checkpoint")
    array = np.array(arrays[node["array"]])
    if "dtype" in node:
        dtype = _extension_dtypes().get(node["dtype"])
        if dtype is None or array.dtype != np.dtype(f"u{dtype.itemsize}"):
            raise ValueError(
                f"array {node['array']!r}: {array.dtype} cannot hold dtype {node['dtype']!r}")
        array = array.view(dtype)
    if node.get("scalar", False):
        if array.ndim:
            raise ValueError(f"scalar {node['array']!r} has shape {array.shape}")
        return array[()]
    return array


def _fsync_dir(directory: str) -> None:
    # Makes the rename itself durable; directories cannot be opened on some systems (Windows).
    fd = None
    try:
        fd = os.open(directory, os.O_RDONLY)
        os.fsync(fd)
    except OSError:
        pass
    finally:
        if fd is not None:  # closed whatever interrupts the fsync
            os.close(fd)


# Temporary files: ".<name>.optx-tmp-<host>-<pid>-<token>". <host> tells whether <pid> is a
# process id this process can check: it hashes the host name, the pid namespace and the boot.
_TMP = ".optx-tmp-"
_TMP_RE = re.compile(r"(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[0-9a-f]{16}")
# A temporary file written by another host (or pid namespace, or before a reboot) is stale once
# nothing has written to it for this long: a live save keeps writing, or fsyncs, well within it.
STALE_AFTER_S = 3600.0


def _host_tag() -> str:
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):  # Linux: pids are per namespace, and per boot
        parts.append(os.readlink("/proc/self/ns/pid"))
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as fh:
        parts.append(fh.read())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


_HOST = _host_tag()


def _temp_prefix(base: str) -> str:
    """What the temporary files of ``base`` start with. A long name is shortened (with a hash
    of it) so that the temporary name stays within the 255 bytes a file name may have."""
    if len(base.encode()) > 180:
        digest = hashlib.sha256(base.encode()).hexdigest()[:16]
        base = base.encode()[:120].decode(errors="ignore") + "~" + digest
    return f".{base}{_TMP}"


def _temp_name(base: str, pid: int | None = None, host: str | None = None) -> str:
    return (f"{_temp_prefix(base)}{host or _HOST}-{os.getpid() if pid is None else pid}-"
            f"{secrets.token_hex(8)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _stale(directory: str, base: str, name: str) -> bool:
    """Whether ``name`` is a temporary file of a save of ``base`` whose writer is gone: written
    by a dead process of this host (its pid no longer exists), or by anyone and left untouched
    for :data:`STALE_AFTER_S`. A live writer's file (its pid exists, and it writes) is kept, so
    concurrent saves of the same path never delete each other's files."""
    prefix = _temp_prefix(base)
    match = _TMP_RE.fullmatch(name[len(prefix):]) if name.startswith(prefix) else None
    if match is None:
        return False
    # On Windows os.kill(pid, 0) would terminate the process: only the age counts there.
    if match["host"] == _HOST and os.name == "posix" and not _pid_alive(int(match["pid"])):
        return True
    try:
        age = time.time() - os.stat(os.path.join(directory, name)).st_mtime
    except OSError:
        return False
    return age > STALE_AFTER_S


def _remove_stale(directory: str, base: str) -> None:
    """Best effort: a directory that cannot be listed, or a file another process removes
    first, is left to the next save."""
    prefix = _temp_prefix(base)
    names: list[str] = []
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        names = [e.name for e in entries if e.name.startswith(prefix)]
    for name in names:
        if _stale(directory, base, name):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _existing(target: str) -> os.stat_result | None:
    """The file ``target`` names (``None``: none); refuses a regular file the caller may not
    write, as ``open(target, 'wb')`` would, although the rename would replace it."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(st.st_mode) and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), target)
    return st


def save(obj: dict[str, Any], f: str | os.PathLike[str] | IO[bytes]) -> None:
    """Writes a state_dict (optimizer or scheduler) to ``f`` as ``.npz``, without pickle.

    A path is written atomically: to a temporary file beside it, flushed and fsynced, then
    renamed onto ``f`` with ``os.replace``; until then ``f`` keeps its previous content, and an
    exception at any point (``KeyboardInterrupt`` included) leaves no temporary file. The file
    has the umask's mode, or keeps the mode of the file it replaces; a symlink is written
    through (its target is replaced). Temporary files of earlier saves of ``f`` whose process
    died are removed first. An open binary file is written in place.

    Args:
        obj: what ``state_dict()`` returned: nested dicts, lists, tuples and ``Counter`` s of
            arrays, numbers, strings, booleans and ``None``.
        f: a path, or a binary file open for writing.

    Raises:
      TypeError: ``obj`` holds something that cannot be saved without pickle (nothing is
        written).
      OSError: ``f`` cannot be written: as with ``open(f, "wb")``, a directory raises
        ``IsADirectoryError`` and a file the caller may not write ``PermissionError``, although
        the rename could replace it (nothing is written).

    Example:
        >>> import io, jax.numpy as jnp, optx
        >>> opt = optx.optim.SGD([jnp.zeros(2)], lr=0.1, momentum=0.9)
        >>> buffer = io.BytesIO()
        >>> optx.optim.save(opt.state_dict(), buffer)
        >>> _ = buffer.seek(0)
        >>> optx.optim.load(buffer)["param_groups"][0]["lr"]
        0.1
    """
    arrays: dict[str, np.ndarray] = {}
    meta = _encode(obj, arrays, "")
    if _META in arrays:
        raise ValueError(f"{_META} is reserved")
    payload: dict[str, Any] = {_META: np.asarray(json.dumps(meta)), **arrays}
    if hasattr(f, "write"):
        _savez(f, payload)
        return
    # torch.save(obj, link) opens the link and so writes its target: replace the target.
    target = os.path.realpath(os.fspath(f))
    directory, base = os.path.split(target)
    existing = _existing(target)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        # A device or a fifo is written in place, as torch.save does (never replaced by a
        # file), in one write: zipfile needs a file whose offsets it can trust. A directory
        # raises open's IsADirectoryError.
        buffer = io.BytesIO()
        _savez(buffer, payload)
        with open(target, "wb") as fh:
            fh.write(buffer.getbuffer())
        return
    _remove_stale(directory, base)
    tmp = os.path.join(directory, _temp_name(base))
    try:
        # "x": created here (0o666 less the umask, as np.savez and torch.save create files),
        # never an existing file. Nothing between its creation and the rename is unprotected:
        # whatever is raised, the handler below removes the file by name.
        with open(tmp, "xb") as fh:
            if existing is not None:  # replacing keeps the mode, as writing in place does
                os.chmod(tmp, stat.S_IMODE(existing.st_mode) & 0o777)
            _savez(fh, payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        if not isinstance(e, FileExistsError):  # a name taken by someone else: not ours
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _savez(fh: Any, payload: dict[str, Any]) -> None:
    """``np.savez``, raising the exception that interrupted it.

    zipfile, interrupted inside a member's ``close``, raises ``ValueError("Can't close the ZIP
    file while there is an open writing handle")`` while unwinding; the first exception (Ctrl-C,
    a preemption handler's ``SystemExit``, a full disk's ``OSError``) is what comes out.
    """
    outer = sys.exc_info()[1]  # save() may run in an except block: not ours to unwrap
    first = None
    try:
        np.savez(fh, **payload)
    except BaseException as e:
        first = e
        while (first.__context__ is not None and first.__context__ is not outer
               and first.__cause__ is None and not first.__suppress_context__):
            first = first.__context__
        if first is e:
            raise
    if first is not None:  # raised here, outside the handler: the cleanup error is dropped
        try:
            raise first
        finally:
            del first  # no frame <-> traceback cycle keeping numpy's half-written zip alive


def load(f: str | os.PathLike[str] | IO[bytes]) -> Any:
    """Reads what :func:`save` wrote; refuses pickled content (``allow_pickle=False``).

    Args:
        f: a path, or a binary file open for reading.

    Returns:
        The state_dict as it was saved (arrays as numpy arrays), ready for
        ``load_state_dict``.

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
