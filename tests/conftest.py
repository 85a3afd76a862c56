"""Test-session setup: float64 for parity, 4 host devices for multi-device tests, collective
timeouts that a busy machine cannot reach."""

import os

# XLA:CPU's collectives meet at a rendezvous where each device's thread waits for the others.
# With 4 forced host devices on 2 busy cores, a thread can wait more than the 40 s after which
# XLA aborts the whole process (--xla_cpu_collective_call_terminate_timeout_seconds, default 40;
# it warns after --xla_cpu_collective_call_warn_stuck_timeout_seconds, default 20); a collective
# itself may take --xla_cpu_collective_timeout_seconds (default 1800). pytest's own timeout
# catches a real hang. The Makefile exports the same flags.
XLA_TEST_FLAGS = {
    "--xla_force_host_platform_device_count": "4",
    "--xla_cpu_collective_call_warn_stuck_timeout_seconds": "600",
    "--xla_cpu_collective_call_terminate_timeout_seconds": "3600",
    "--xla_cpu_collective_timeout_seconds": "3600",
}


def with_test_flags(flags: str, **override: str) -> str:
    """``flags`` (an XLA_FLAGS value) with each of :data:`XLA_TEST_FLAGS` it does not set."""
    wanted = {**XLA_TEST_FLAGS, **{f"--{k}": v for k, v in override.items()}}
    given = {f.split("=")[0] for f in flags.split()}
    return " ".join([flags, *(f"{k}={v}" for k, v in wanted.items() if k not in given)]).strip()


os.environ["XLA_FLAGS"] = with_test_flags(os.environ.get("XLA_FLAGS", ""))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
