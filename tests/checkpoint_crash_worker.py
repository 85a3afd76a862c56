"""A process that dies while saving a checkpoint (tests/test_checkpoint_crash.py).

Usage: python checkpoint_crash_worker.py PATH POINT [N [COUNT]]

Saves a state_dict of N float64 values (all 2.0) to PATH with ``optx.optim.save`` and SIGKILLs
itself at POINT: ``partial`` (half of the file's bytes written), ``fsync`` (all written, before
fsync), ``replace`` (before the rename), ``done`` (after save returned, never killed: the new
checkpoint must be there), ``loop`` (saves forever, for a parent that kills it at a random time),
``repeat`` (saves COUNT times and exits: one of several concurrent savers of PATH).

The module is loaded from its file, without importing optx (whose import pulls in jax), so the
process starts in a fraction of a second; checkpoint.py needs only numpy.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import sys
from pathlib import Path

import numpy as np

path, point = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
source = Path(__file__).resolve().parents[1] / "optx" / "optim" / "checkpoint.py"
spec = importlib.util.spec_from_file_location("checkpoint", source)
assert spec is not None and spec.loader is not None
checkpoint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checkpoint)


def die(*_args: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if point == "partial":
    real_savez = np.savez

    def savez_then_die(fh, **arrays):
        buf = io.BytesIO()
        real_savez(buf, **arrays)
        data = buf.getvalue()
        fh.write(data[: len(data) // 2])
        fh.flush()
        die()

    checkpoint.np.savez = savez_then_die  # type: ignore[attr-defined]
elif point == "fsync":
    checkpoint.os.fsync = die  # type: ignore[attr-defined]
elif point == "replace":
    checkpoint.os.replace = die  # type: ignore[attr-defined]

state = {"state": {0: {"step": np.float32(2), "exp_avg": np.full(n, 2.0)}},
         "param_groups": [{"lr": 0.5, "params": [0]}]}
if point == "loop":
    print("saving", flush=True)
    while True:
        checkpoint.save(state, path)
for _ in range(count):
    checkpoint.save(state, path)
