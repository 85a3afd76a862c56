"""Two processes on localhost (jax.distributed, gloo CPU collectives) train like one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import with_test_flags

WORKER = Path(__file__).with_name("multi_process_worker.py")
TIMEOUT = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # One CPU device per process, not the 4 forced host devices of the test session.
    # (With the session's collective timeouts: tests/conftest.py.)
    env["XLA_FLAGS"] = with_test_flags("--xla_force_host_platform_device_count=1")
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("JAX_ENABLE_X64", None)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _run(num_processes: int, tmp_path: Path, mode: str = "jit") -> list[dict[str, np.ndarray]]:
    port = str(_free_port())
    outs = [tmp_path / f"{mode}_p{num_processes}_{i}.npz" for i in range(num_processes)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(i), str(num_processes), port, str(outs[i]), mode],
            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(num_processes)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    return [dict(np.load(o)) for o in outs]


def test_two_processes_equal_one_process(tmp_path):
    (single,) = _run(1, tmp_path)
    first, second = _run(2, tmp_path)
    for k, v in single.items():
        if k.startswith("init_"):
            continue
        assert v.dtype == np.float32
        # Both processes hold the same replicated params...
        np.testing.assert_array_equal(first[k], second[k])
        # ...equal to the single-process run on the full batch.
        np.testing.assert_allclose(first[k], v, rtol=1e-5, atol=1e-5)
    # Training moved the params, so the comparison is not vacuous.
    for k in ("w1", "b1", "w2"):
        assert np.abs(single[k] - single[f"init_{k}"]).max() > 1e-3


def test_zero_adapter_two_processes_equal_one_process(tmp_path):
    """ZeroRedundancyOptimizer over a 2-process mesh: each process keeps half of the state,
    and the params and the gathered state_dict equal the single-process run's."""
    (single,) = _run(1, tmp_path, "zero")
    first, second = _run(2, tmp_path, "zero")
    assert any(k.startswith("state_") for k in single)
    for k, v in single.items():
        if k.startswith("init_"):
            continue
        np.testing.assert_array_equal(first[k], second[k])
        np.testing.assert_allclose(first[k], v, rtol=1e-5, atol=1e-6)
    for k in ("w1", "b1", "w2"):
        assert np.abs(single[k] - single[f"init_{k}"]).max() > 1e-3
