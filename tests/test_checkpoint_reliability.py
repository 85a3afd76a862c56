"""Attacks on ``optx.optim.save``: interrupts at every line, at random times, ``kill -9``,
concurrent savers, file modes, symlinks. Each is deterministic in its verdict and takes a few
seconds.

What must hold after each: the checkpoint at the path loads, with the old content or the new;
no temporary file is left beside it (a killed saver's is removed by the next save of the path,
never a live saver's); the file has the mode ``np.savez``/``torch.save`` would give it; the
exception that interrupted the save is the one that comes out of it.
"""

from __future__ import annotations

import io
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import optx
from optx.optim import checkpoint

WORKER = Path(__file__).with_name("checkpoint_crash_worker.py")


class Preempted(Exception):
    """What a cluster's preemption handler might raise."""


KINDS = [KeyboardInterrupt, SystemExit, Preempted]


def state(value: float, n: int = 100) -> dict:
    return {"state": {0: {"step": np.float32(value), "exp_avg": np.full(n, value)}},
            "param_groups": [{"lr": 0.1, "params": [0]}]}


def value(path: Path) -> float:
    sd = optx.optim.load(path)
    values = np.unique(sd["state"][0]["exp_avg"])
    assert len(values) == 1 and float(sd["state"][0]["step"]) == values[0]
    return float(values[0])


def others(directory: Path, *names: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in names)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Sets the process umask for one test (and restores it)."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


# ----------------------------------------------------------------------------- interrupts


@pytest.fixture
def quiet_finalizers(monkeypatch):
    """zipfile's objects, interrupted half-built, fail in their ``__del__`` whenever the garbage
    collector reaches them, possibly inside np.load's ``ast.literal_eval``; pytest's hook
    reporting that error parses source with ``ast`` again, which breaks Python 3.11's ast there
    ("AST constructor recursion depth mismatch"). Such errors are zipfile's noise: drop them."""
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)


def _raise_at_line(k: int, exc: type[BaseException], inside_numpy: bool):
    """A trace function raising ``exc`` at the ``k``-th line run by save (its own lines, or
    also those of numpy and zipfile below it); ``fired`` says whether it did."""
    count, fired = [0], [False]

    def local(frame, event, arg):
        if event == "line":
            count[0] += 1
            if count[0] == k:
                fired[0] = True
                raise exc()
        return local

    def trace(frame, event, arg):
        if fired[0] or frame.f_code.co_name == "__del__":
            return None
        if frame.f_code.co_filename == checkpoint.__file__:
            return local
        caller = frame.f_back
        while inside_numpy and caller is not None:
            if caller.f_code is checkpoint.save.__code__:
                return local
            caller = caller.f_back
        return None

    return trace, fired


@pytest.mark.parametrize("inside_numpy", [False, True], ids=["save", "save+numpy"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_interrupt_at_every_line_of_save(tmp_path, kind, inside_numpy, quiet_finalizers):
    """An exception raised at each line save runs (every line of checkpoint.py; with numpy's
    and zipfile's, every 9th): no temporary file is left, the old or the new checkpoint is
    there with its mode, and the exception comes out of save as raised."""
    path = tmp_path / "opt.npz"
    optx.optim.save(state(1.0), path)
    os.chmod(path, 0o640)
    trials, k = 0, 1
    while True:
        trace, fired = _raise_at_line(k, kind, inside_numpy)
        sys.settrace(trace)
        try:
            optx.optim.save(state(2.0), path)
        except kind:
            pass
        finally:
            sys.settrace(None)
        if not fired[0]:
            break
        trials += 1
        assert others(tmp_path, path.name) == [], k
        assert value(path) in (1.0, 2.0) and mode(path) == 0o640, k
        optx.optim.save(state(1.0), path)
        k += 9 if inside_numpy else 1
    assert trials > (100 if inside_numpy else 150)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_signal_at_random_times_during_save(tmp_path, kind, quiet_finalizers):
    """A SIGALRM handler raising ``kind`` at a random time of a save (60 trials)."""
    path = tmp_path / "opt.npz"
    new = state(2.0, 50_000)
    start = time.perf_counter()
    optx.optim.save(new, path)
    duration = time.perf_counter() - start
    rng = random.Random(0)

    def handler(signum, frame):
        raise kind()

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        for _ in range(60):
            optx.optim.save(state(1.0), path)
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.0, duration))
                optx.optim.save(new, path)
                time.sleep(10 * duration)  # the signal lands here if the save finished first
            except kind:
                pass
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            assert others(tmp_path, path.name) == []
            assert value(path) in (1.0, 2.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_interrupt_comes_out_of_numpy_not_zipfiles_error(tmp_path, monkeypatch):
    """zipfile, interrupted inside np.savez, raises a ValueError while unwinding: the first
    exception comes out of save. One that save runs inside (an emergency save in an except
    block) is not unwrapped."""

    def savez_interrupted(fh, **arrays):
        try:
            raise OSError(28, "No space left on device")
        finally:
            raise ValueError("Can't close the ZIP file while there is an open writing handle")

    monkeypatch.setattr(checkpoint.np, "savez", savez_interrupted)
    with pytest.raises(OSError, match="No space left"):
        optx.optim.save(state(1.0), tmp_path / "opt.npz")
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        with pytest.raises(OSError, match="No space left"):
            optx.optim.save(state(1.0), tmp_path / "opt.npz")
    assert others(tmp_path) == []


# ----------------------------------------------------------------------------- crashed savers


def test_kill_9_during_save_leaves_no_orphan_after_the_next_save(tmp_path):
    """A saver SIGKILLed at random times (6 trials) leaves its temporary file; the next save
    of the path removes it."""
    path = tmp_path / "opt.npz"
    rng = random.Random(0)
    orphans = 0
    for _ in range(6):
        optx.optim.save(state(1.0), path)
        proc = subprocess.Popen([sys.executable, str(WORKER), str(path), "loop", "100000"],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "saving\n"
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
        assert value(path) in (1.0, 2.0)
        orphans += len(others(tmp_path, path.name))
        optx.optim.save(state(1.0), path)
        assert others(tmp_path, path.name) == []
    assert orphans > 0  # the attack did land mid-save


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_stale_temporary_files_are_removed(tmp_path):
    """Removed: a temporary file of this path whose writer (on this host) is dead, or whose
    writer elsewhere has not touched it for STALE_AFTER_S. Kept: a live writer's, a fresh one
    from another host, and every file that is not a temporary file of this path."""
    path = tmp_path / "opt.npz"
    base = path.name
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = time.time() - checkpoint.STALE_AFTER_S - 60
        stale = {
            "dead writer": checkpoint._temp_name(base, pid=_dead_pid()),
            "old, other host": checkpoint._temp_name(base, pid=sleeper.pid, host="0badc0de"),
        }
        kept = {
            "this process": checkpoint._temp_name(base),
            "live writer": checkpoint._temp_name(base, pid=sleeper.pid),
            "fresh, other host": checkpoint._temp_name(base, pid=_dead_pid(), host="0badc0de"),
            "other checkpoint": checkpoint._temp_name("other.npz", pid=_dead_pid()),
            "user file": f".{base}.optx-tmp-notes",
            "backup": f"{base}.bak",
            "no dot": checkpoint._temp_name(base, pid=_dead_pid())[1:],
        }
        for name in [*stale.values(), *kept.values()]:
            (tmp_path / name).write_bytes(b"x" * 10)
        os.utime(tmp_path / stale["old, other host"], (old, old))
        optx.optim.save(state(1.0), path)
        assert others(tmp_path, base) == sorted(kept.values())
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("base", ["x" * 250 + ".npz", "é" * 120 + ".npz"])
def test_a_long_file_name_gets_a_temporary_name_within_the_limit(tmp_path, base):
    """255 bytes per file name: the temporary name shortens a long name (keeping a hash of it),
    and its stale files are still recognized."""
    path = tmp_path / base
    orphan = checkpoint._temp_name(base, pid=_dead_pid())
    assert len(orphan.encode()) < 255
    (tmp_path / orphan).write_bytes(b"x")
    optx.optim.save(state(2.0), path)
    assert value(path) == 2.0 and others(tmp_path, base) == []


def test_concurrent_savers_never_remove_each_others_files(tmp_path):
    """Three processes saving the same path 40 times each: every save succeeds (none loses
    its temporary file to another's cleanup), and the checkpoint is whole."""
    path = tmp_path / "opt.npz"
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(path), "repeat", "20000", "40"],
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert value(path) == 2.0 and others(tmp_path, path.name) == []


# ----------------------------------------------------------------------------- modes, links


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_umasks_mode_as_np_savez_and_torch_save(tmp_path, umask, mask):
    umask(mask)
    optx.optim.save(state(1.0), tmp_path / "optx.npz")
    np.savez(tmp_path / "numpy.npz", x=np.zeros(1))
    torch.save({}, tmp_path / "torch.pt")
    assert mode(tmp_path / "optx.npz") == mode(tmp_path / "numpy.npz") == \
        mode(tmp_path / "torch.pt") == 0o666 & ~mask


@pytest.mark.parametrize("existing", [0o644, 0o640, 0o600, 0o664])
def test_overwriting_keeps_the_files_mode_as_torch_save(tmp_path, umask, existing):
    umask(0o077)
    for name, write in (("optx.npz", lambda p: optx.optim.save(state(2.0), p)),
                        ("torch.pt", lambda p: torch.save({}, p))):
        path = tmp_path / name
        path.write_bytes(b"old")
        os.chmod(path, existing)
        write(path)
        assert mode(path) == existing, name


@pytest.mark.parametrize("link", ["absolute", "relative", "chain", "dangling"])
def test_a_symlink_is_written_through_as_torch_save(tmp_path, link):
    """The link stays a link and its target gets the checkpoint (atomically, with its mode);
    no temporary file is left in either directory."""
    real = tmp_path / "real"
    real.mkdir()
    target = real / "opt.npz"
    if link != "dangling":
        optx.optim.save(state(1.0), target)
        os.chmod(target, 0o640)
    path = tmp_path / "opt.npz"
    if link == "relative":
        path.symlink_to(Path("real") / "opt.npz")
    elif link == "chain":
        (tmp_path / "middle.npz").symlink_to(target)
        path.symlink_to(tmp_path / "middle.npz")
    else:
        path.symlink_to(target)
    optx.optim.save(state(2.0), path)
    assert path.is_symlink() and value(target) == 2.0
    assert link == "dangling" or mode(target) == 0o640
    assert others(real, "opt.npz") == []
    torch_link = tmp_path / "torch.pt"
    torch_link.symlink_to(real / "torch.pt")
    torch.save({}, torch_link)  # torch does the same
    assert torch_link.is_symlink() and (real / "torch.pt").is_file()


def test_a_file_the_caller_may_not_write_is_refused_as_open_would(tmp_path, monkeypatch):
    """The rename could replace a read-only file; open(path, "wb") (torch.save, np.savez)
    would refuse it, and so does save, leaving it as it was."""
    path = tmp_path / "opt.npz"
    optx.optim.save(state(1.0), path)
    monkeypatch.setattr(checkpoint.os, "access", lambda p, m: False)  # as a non-root user
    with pytest.raises(PermissionError, match="opt.npz"):
        optx.optim.save(state(2.0), path)
    assert value(path) == 1.0 and others(tmp_path, path.name) == []


def test_a_directory_or_fifo_is_never_replaced(tmp_path):
    """A directory raises open's IsADirectoryError; a fifo (or a device: never the real
    /dev/null here, which a broken save run as root would replace) is written in place, as
    torch.save writes it, and stays what it was."""
    with pytest.raises(IsADirectoryError):
        optx.optim.save(state(1.0), tmp_path)
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    optx.optim.save(state(2.0), fifo)
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and others(tmp_path, fifo.name) == []
    assert received and value(io.BytesIO(received[0])) == 2.0
