"""The benchmark scripts' own logic (no timings): the GPU run skips cleanly on a CPU-only
machine, and issue 16's target table says met or not from the ratios it is given."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_step  # noqa: E402


def test_gpu_run_skips_with_a_message_without_a_gpu(tmp_path):
    has_gpu, _ = bench_step.gpu_available()
    if has_gpu:
        pytest.skip("a GPU is visible: the GPU run would run, not skip")
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_step.py"), "--device", "gpu",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no GPU visible to JAX" in proc.stdout and "skipping" in proc.stdout
    assert not out.exists()


def _cell(impl, step_ms, compile_s=None):
    r = {"optimizer": "adam", "leaves": 10, "impl": impl, "step_s": step_ms / 1e3}
    if compile_s is not None:
        r["compile_cpu_s"] = compile_s
    return r


def test_targets_table_says_met_or_not():
    results = [
        _cell("optx", 10.0, 1.05),
        _cell("optx_optim", 11.5),
        _cell("optax", 10.0, 1.0),
        _cell("torch_fused", 5.0),
    ]
    table = bench_step.targets_table(results)
    row = table.splitlines()[-1].split(" | ")
    assert row[0] == "| adam" and row[1] == "10"
    assert row[2].startswith("1.05") and row[3] == "yes"  # compile 1.05 <= 1.1
    assert row[4].startswith("1.00") and row[5] == "yes"  # step 1.00 <= 1.0
    assert row[6] == "1.15" and row[7] == "no"  # adapter 1.15 > 1.1
    assert row[8] == "2.00 |"  # optx against torch fused, reported without a target


def test_targets_table_marks_missing_cells():
    results = [_cell("optx", 10.0, 1.0), _cell("optax", 8.0, 0.5),
               {"optimizer": "adam", "leaves": 10, "impl": "torch_fused", "error": "no fused"}]
    row = bench_step.targets_table(results).splitlines()[-1].split(" | ")
    assert row[3] == "no" and row[5] == "no"
    assert row[6:8] == ["-", "-"] and row[8] == "- |"


def test_gpu_targets_table_measures_against_the_copy_bandwidth():
    bandwidth = 2e12  # bytes/s
    params = 1_000_000_000
    floor_s = bench_step.FLOOR_BYTES_PER_PARAM * params / bandwidth  # 14 ms
    results = [
        {"optimizer": "adam", "leaves": 10, "impl": "optx", "params": params,
         "step_s": floor_s / 0.95},
        {"optimizer": "adam", "leaves": 10, "impl": "optax", "params": params,
         "step_s": floor_s / 0.5},
        {"optimizer": "adam", "leaves": 10, "impl": "torch_fused", "params": params,
         "step_s": floor_s / 0.9},
    ]
    rows = [r.split(" | ") for r in
            bench_step.gpu_targets_table(results, bandwidth).splitlines()[2:]]
    assert [r[2] for r in rows] == ["optx", "optax"]  # torch's rows are the reference
    assert rows[0][4:8] == ["95%", "yes", "0.95", "yes |"]
    assert rows[1][4:8] == ["50%", "no", "1.80", "no |"]


def test_low_bit_state_bytes_meet_the_targets():
    """benchmarks/bench_low_bit.py's byte count on its 21 M-parameter model (shapes only)."""
    import bench_low_bit
    import jax.numpy as jnp

    import optx

    params = {f"w{i}": jnp.zeros((bench_low_bit.SIDE, bench_low_bit.SIDE), jnp.float32)
              for i in range(bench_low_bit.LAYERS)}
    assert bench_low_bit.state_bytes_per_param(optx.adamw(), params) == 8.0
    assert bench_low_bit.state_bytes_per_param(optx.adamw_8bit(), params) <= 2.05
    assert bench_low_bit.state_bytes_per_param(optx.adamw_fp8(), params) <= 2.05
    assert bench_low_bit.state_bytes_per_param(optx.adamw_4bit(), params) <= 1.07
