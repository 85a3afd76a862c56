"""ruff and mypy are clean on optx/, so `make test` enforces what `make lint` checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_ruff_clean():
    proc = _run("ruff", "check", "--output-format", "concise", "optx", "tests", "benchmarks",
                "examples")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_mypy_clean():
    proc = _run("mypy", "optx")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
