"""Issue 33.3: the collective timeouts tests/conftest.py (and the Makefile) set are flags the
installed jaxlib knows (XLA aborts on an unknown one), and a 4-device psum runs with them."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import XLA_TEST_FLAGS, with_test_flags

PSUM = """
import jax, jax.numpy as jnp
assert jax.device_count() == 4, jax.devices()
out = jax.pmap(lambda x: jax.lax.psum(x, "i"), axis_name="i")(jnp.arange(4.0))
print(out.tolist())
"""


def _run(flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", PSUM], env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_collective_timeout_flags_are_known_and_a_4_device_psum_runs():
    flags = with_test_flags("")
    assert all(f"{k}={v}" in flags for k, v in XLA_TEST_FLAGS.items())
    assert os.environ["XLA_FLAGS"].split().count(
        "--xla_cpu_collective_call_terminate_timeout_seconds=3600") == 1
    done = _run(flags)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[6.0, 6.0, 6.0, 6.0]"
    # The control: XLA refuses a flag it does not know, so the run above accepted all of them.
    bad = _run(flags + " --xla_cpu_collective_call_terminate_timeout_secondz=1")
    assert bad.returncode != 0 and "Unknown flag" in bad.stderr, bad.stderr[-2000:]
