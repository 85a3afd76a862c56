"""Runs one benchmark cell in a fresh Python process (no compile cache or peak RSS shared).

A worker prints one line ``RESULT <json>``; anything else it prints is ignored.
"""

from __future__ import annotations

import json
import subprocess


def run_worker(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict:
    """The worker's result dict, or ``{"error": ...}`` when it timed out or printed no result."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
