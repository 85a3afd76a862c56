"""Step time, compile time and peak memory of one optimizer update: optx vs optax vs torch.

Run from the repository root::

    python benchmarks/bench_step.py                     # full run (several minutes on 2 cores)
    python benchmarks/bench_step.py --quick             # fewer repeats, 10 and 1000 leaves
    python benchmarks/bench_step.py --leaves 10,1000 --optimizers adam --reps 21
    python benchmarks/bench_step.py --optimizers sgd_nesterov,rmsprop,adagrad --quick
    python benchmarks/bench_step.py --device gpu        # on a GPU; skips with a message without

``--device auto`` (the default) runs on the GPU when JAX sees one. On the GPU the defaults are
issue 16's: Adam at 1 B float32 params in 10 leaves and at 200 M params in 1000 leaves, for
optx, the ``optx.optim`` adapter and optax against torch CUDA ``fused=True`` and
``foreach=True``; the device's copy bandwidth is measured first (a jitted, donated ``x + 1``
over 1 GiB), and each step is also given as the fraction of it that moving 7 x 4 bytes per
parameter (torch's fused Adam: read p, g, m, v, write p, m, v) would take. Results go to
``benchmarks/results/gpu.json``.

Every (implementation, optimizer, leaf count) cell runs in its own fresh subprocess, so compile
caches, allocator state and peak RSS do not leak from one cell into the next. The table prints
ratios against torch ``fused=True`` and against optax from the same run (absolute times on a
shared machine are noise; ratios within one run are what to compare), and everything measured is
written to ``benchmarks/results/latest.json``. A CPU run ends with the small-model latency row
(``bench_adapter.py``'s 11.8 k-parameter MLP: optx, the adapter, optax and torch's eager
``foreach`` and single-tensor Adam, interleaved in one process; ``--no-small-model`` skips it).

What is measured, per cell (float32 parameters, gradients fixed, ``N`` timed steps after warm-up):

* step: the median wall time of one update. JAX: one ``jax.jit`` of ``update`` +
  ``apply_updates`` with params and state donated, blocked until ready. torch: ``opt.step()``
  with ``.grad`` set, for ``foreach=False`` (single-tensor), ``foreach=True`` and ``fused=True``.
  The ``optx.optim`` adapter: ``opt.step(grads)``.
* compile: JAX tracing + lowering + XLA compilation of the step (for the adapter: the first
  ``step`` minus a steady-state step). torch has nothing to compile.
* peak memory of a step against the theoretical ``params + grads + state`` bytes. JAX (the
  functional step and the adapter's own jitted step): XLA's buffer assignment
  (``compiled.memory_analysis()``: arguments + outputs - aliased + temporaries), which is exact
  for the step itself. The adapter also records its process's peak RSS (``rss_peak_bytes``),
  which includes the compiler's memory. torch: the process's peak RSS minus its RSS before any
  parameter was allocated, which also counts allocator slack (an upper bound).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from step_tables import (  # noqa: F401  (the tables' names, as tests and users call them)
    FLOOR_BYTES_PER_PARAM,
    GPU_TARGETS,
    TARGETS,
    _table,
    gpu_targets_table,
    targets_table,
)
from worker import run_worker

ROOT = Path(__file__).resolve().parent.parent
IMPLS = ("optx", "optx_optim", "optax", "torch_single", "torch_foreach", "torch_fused")
OPTIMIZERS = ("adam", "adamw", "sgd")
ALL_OPTIMIZERS = ("adam", "adamw", "sgd", "sgd_nesterov", "rmsprop", "adagrad")
# Total parameter count per leaf count: the three models.
DEFAULT_TOTAL = {10: 20_000_000, 1000: 20_000_000, 5000: 5_000_000}
HYPER = {
    "adam": {"lr": 1e-3},
    "adamw": {"lr": 1e-3, "weight_decay": 1e-2},
    "sgd": {"lr": 1e-2, "momentum": 0.9},
    "sgd_nesterov": {"lr": 1e-2, "momentum": 0.9, "nesterov": True},
    "rmsprop": {"lr": 1e-2},
    "adagrad": {"lr": 1e-2},
}
STATE_SLOTS = {"adam": 2, "adamw": 2, "sgd": 1, "sgd_nesterov": 1, "rmsprop": 1, "adagrad": 1}
# torch class / optx constructor / optx.optim class per benchmark name.
TORCH_CLASS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "sgd_nesterov": "SGD",
               "rmsprop": "RMSprop", "adagrad": "Adagrad"}  # fmt: skip
# GPU: issue 16's models, Adam at 1 B params in 10 leaves and 200 M params in 1000 leaves.
GPU_TOTAL = {10: 1_000_000_000, 1000: 200_000_000}
GPU_IMPLS = ("optx", "optx_optim", "optax", "torch_foreach", "torch_fused")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _xla_peak(mem) -> int:
    """Bytes live during a compiled step: arguments + outputs - donated (aliased) + temporaries."""
    return (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        - mem.alias_size_in_bytes
        + mem.temp_size_in_bytes
    )


def _sizes(leaves: int, total: int) -> list[int]:
    base, extra = divmod(total, leaves)
    return [base + (i < extra) for i in range(leaves)]


# --------------------------------------------------------------------------------------------
# Workers: one cell each, in a fresh process. Each returns a dict of measurements.
# --------------------------------------------------------------------------------------------


def _worker_jax(impl: str, opt_name: str, leaves: int, total: int, reps: int) -> dict:
    rss0 = _rss_bytes()
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(ROOT))
    sizes = _sizes(leaves, total)
    if _device() == "gpu":  # generated on the device: 1 B params would take minutes on the host
        keys = jax.random.split(jax.random.PRNGKey(0), 2 * leaves)
        params = [jax.random.normal(keys[i], (n,), jnp.float32) for i, n in enumerate(sizes)]
        grads = [jax.random.normal(keys[leaves + i], (n,), jnp.float32) * 1e-2
                 for i, n in enumerate(sizes)]  # fmt: skip
    else:
        rng = np.random.default_rng(0)
        params = [jnp.asarray(rng.standard_normal(n, np.float32)) for n in sizes]
        grads = [jnp.asarray(rng.standard_normal(n, np.float32) * 1e-2) for n in sizes]
    jax.block_until_ready((params, grads))
    hp = HYPER[opt_name]

    if impl == "optx_optim":
        import optx.optim

        cls = TORCH_CLASS[opt_name]
        rss0 = _rss_bytes()  # jax and optx are imported; params and grads count below
        rss0 -= 2 * 4 * total
        opt = getattr(optx.optim, cls)(params, **hp)
        del params
        t0 = time.perf_counter()
        opt.step(grads)
        jax.block_until_ready(opt.params)
        first = time.perf_counter() - t0
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            opt.step(grads)
            jax.block_until_ready(opt.params)
            times.append(time.perf_counter() - t0)
        step = statistics.median(times)
        out = {
            "step_s": step,
            "compile_s": max(first - step, 0.0),
            "rss_peak_bytes": _peak_rss_bytes() - rss0,
        }
        # XLA's buffer plan for the adapter's own jitted step, called as step() calls it (the
        # lowering hits the jit cache's trace; params and state are donated, so they alias).
        fn = opt._compiled(None)
        args = ([s.params for s in opt._slots], [s.state for s in opt._slots], [grads], None, ())
        mem = fn.lower(*args).compile().memory_analysis()
        if mem is not None:
            out.update(peak_bytes=_xla_peak(mem), peak_method="xla_memory_analysis")
        else:
            out.update(peak_bytes=out["rss_peak_bytes"], peak_method="rss")
        return out

    if impl == "optx":
        import optx

        tx = getattr(optx, TORCH_CLASS[opt_name].lower())(**hp)
        apply_updates = optx.apply_updates
    else:
        import optax

        if opt_name == "adam":
            tx = optax.adam(hp["lr"])
        elif opt_name == "adamw":
            tx = optax.adamw(hp["lr"], weight_decay=hp["weight_decay"])
        elif opt_name == "rmsprop":
            tx = optax.rmsprop(hp["lr"], decay=0.99, eps=1e-8)
        elif opt_name == "adagrad":
            tx = optax.adagrad(hp["lr"], initial_accumulator_value=0.0, eps=1e-10)
        else:
            tx = optax.sgd(hp["lr"], momentum=hp["momentum"], nesterov=hp.get("nesterov", False))
        apply_updates = optax.apply_updates

    def step_fn(p, s, g):
        updates, s = tx.update(g, s, p)
        return apply_updates(p, updates), s

    state = tx.init(params)
    c0 = time.process_time()  # CPU time: far less sensitive to other load than wall time
    t0 = time.perf_counter()
    compiled = jax.jit(step_fn, donate_argnums=(0, 1)).lower(params, state, grads).compile()
    compile_s = time.perf_counter() - t0
    compile_cpu_s = time.process_time() - c0
    mem = compiled.memory_analysis()
    peak = _xla_peak(mem) if mem is not None else None
    for _ in range(2):  # warm-up
        params, state = compiled(params, state, grads)
    jax.block_until_ready(params)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        params, state = compiled(params, state, grads)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - t0)
    n_fusions = compiled.as_text().count(" fusion(")
    out = {"step_s": statistics.median(times), "compile_s": compile_s,
           "compile_cpu_s": compile_cpu_s, "fusions": n_fusions}  # fmt: skip
    if peak is not None:
        out.update(peak_bytes=peak, peak_method="xla_memory_analysis")
    else:
        out.update(peak_bytes=_peak_rss_bytes() - rss0, peak_method="rss")
    return out


def _worker_torch(impl: str, opt_name: str, leaves: int, total: int, reps: int) -> dict:
    import torch

    flags = {
        "torch_single": {"foreach": False},
        "torch_foreach": {"foreach": True},
        "torch_fused": {"fused": True},
    }[impl]
    cls = getattr(torch.optim, TORCH_CLASS[opt_name])
    gpu = _device() == "gpu"
    if gpu and not torch.cuda.is_available():
        raise RuntimeError("this torch has no CUDA")
    dev = "cuda" if gpu else "cpu"

    def sync():
        if gpu:
            torch.cuda.synchronize()

    # A tiny step first, so libraries and kernels loaded lazily do not count as step memory.
    tiny = torch.zeros(8, requires_grad=True, device=dev)
    tiny.grad = torch.ones(8, device=dev)
    cls([tiny], **HYPER[opt_name], **flags).step()
    sync()
    rss0 = torch.cuda.memory_allocated() if gpu else _rss_bytes()
    torch.manual_seed(0)
    params = [torch.randn(n, device=dev) for n in _sizes(leaves, total)]
    for p in params:
        p.requires_grad_(True)
        p.grad = torch.randn(p.shape, device=dev) * 1e-2
    opt = cls(params, **HYPER[opt_name], **flags)
    sync()
    t0 = time.perf_counter()
    opt.step()
    sync()
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps + 2):
        t0 = time.perf_counter()
        opt.step()
        sync()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[2:])
    peak = (torch.cuda.max_memory_allocated() if gpu else _peak_rss_bytes()) - rss0
    return {
        "step_s": step,
        "compile_s": None,
        "first_step_s": first,
        "peak_bytes": peak,
        "peak_method": "cuda_max_allocated" if gpu else "rss",
        "threads": torch.get_num_threads(),
    }


def _worker_bandwidth(reps: int) -> dict:
    """The device's measured copy bandwidth: a jitted, donated ``x + 1`` over 1 GiB (read and
    write: 2 GiB moved per call), median of ``reps``."""
    import jax
    import jax.numpy as jnp

    n = 1 << 28  # float32: 1 GiB
    x = jnp.zeros((n,), jnp.float32)
    fn = jax.jit(lambda a: a + 1.0, donate_argnums=0)
    for _ in range(3):
        x = fn(x)
    x.block_until_ready()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        x = fn(x)
        x.block_until_ready()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return {"bytes_per_s": 2 * 4 * n / step, "step_s": step, "device": str(x.devices())}


def _device() -> str:
    return os.environ.get("OPTX_BENCH_DEVICE", "cpu")


def gpu_available() -> tuple[bool, str]:
    """Whether JAX sees a GPU, asked in a subprocess (so this process's JAX stays unloaded)."""
    code = "import jax; print(len(jax.devices('gpu')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip() not in ("", "0"):
        return True, f"{proc.stdout.strip()} GPU(s)"
    tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no GPU devices"]
    return False, tail[0]


def _worker(args) -> None:
    impl, opt_name = args.worker
    leaves, total = args.worker_leaves, args.worker_total
    if impl == "bandwidth":
        out = _worker_bandwidth(args.reps)
    elif impl.startswith("torch"):
        out = _worker_torch(impl, opt_name, leaves, total, args.reps)
    else:
        out = _worker_jax(impl, opt_name, leaves, total, args.reps)
    print("RESULT " + json.dumps(out), flush=True)


# --------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------


def _optim_available() -> bool:
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import optx.optim as o; o.Adam"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def _run_cell(impl, opt_name, leaves, total, reps, timeout, device="cpu") -> dict:
    cmd = [
        sys.executable, __file__, "--worker", impl, opt_name,
        "--worker-leaves", str(leaves), "--worker-total", str(total), "--reps", str(reps),
    ]  # fmt: skip
    env = dict(os.environ, OPTX_BENCH_DEVICE=device)
    if device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"  # a CPU run stays on the CPU on a GPU machine too
    return run_worker(cmd, timeout, env)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats, leaves 10,1000")
    parser.add_argument("--leaves", default=None, help="comma-separated leaf counts")
    parser.add_argument("--total", type=int, default=None, help="total params for every count")
    parser.add_argument("--optimizers", default=None,
                        help=f"comma-separated, of {','.join(ALL_OPTIMIZERS)}")
    parser.add_argument("--impls", default=None)
    parser.add_argument("--reps", type=int, default=None, help="timed steps per cell (median)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--out", default=None,
                        help="results JSON (default results/latest.json, on GPU results/gpu.json)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="auto: the GPU when JAX sees one, else the CPU")
    parser.add_argument("--small-model", action=argparse.BooleanOptionalAction, default=True,
                        help="on the CPU, also the small-model latency row (bench_adapter.py's "
                        "11.8 k-parameter MLP: optx, the adapter, optax, torch foreach and "
                        "single-tensor, interleaved)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--worker-leaves", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-total", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.reps = args.reps or 15
        return _worker(args)

    device = "cpu"
    if args.device != "cpu":
        has_gpu, why = gpu_available()
        if has_gpu:
            device = "gpu"
        elif args.device == "gpu":
            print(f"no GPU visible to JAX ({why}): skipping the GPU benchmark. It needs a "
                  "CUDA jaxlib (pip install 'jax[cuda12]') and, for the torch rows, a CUDA "
                  "torch.")  # fmt: skip
            return
    reps = args.reps or (5 if args.quick else 15)
    if device == "gpu":
        default_leaves = ",".join(str(n) for n in GPU_TOTAL)
        default_impls, default_opts = ",".join(GPU_IMPLS), "adam"
    else:
        default_leaves = "10,1000" if args.quick else "10,1000,5000"
        default_impls, default_opts = ",".join(IMPLS), ",".join(OPTIMIZERS)
    leaf_counts = [int(x) for x in (args.leaves or default_leaves).split(",")]
    impls = [i for i in (args.impls or default_impls).split(",") if i]
    if "optx_optim" in impls and not _optim_available():
        print("optx.optim is not importable: skipping the adapter")
        impls.remove("optx_optim")
    name = "gpu.json" if device == "gpu" else "latest.json"
    out = Path(args.out or ROOT / "benchmarks" / "results" / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    bandwidth = None
    if device == "gpu":
        bw = _run_cell("bandwidth", "adam", 0, 0, reps, args.timeout, device)
        bandwidth = bw.get("bytes_per_s")
        print(f"  measured copy bandwidth: {bandwidth / 1e9 if bandwidth else float('nan'):.0f} "
              f"GB/s {bw.get('error', '')}", flush=True)  # fmt: skip
    meta = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
        "reps": reps,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "device": device,
        "copy_bandwidth_bytes_per_s": bandwidth,
    }
    results: list[dict] = []
    for opt_name in (args.optimizers or default_opts).split(","):
        for leaves in leaf_counts:
            sizes = GPU_TOTAL if device == "gpu" else DEFAULT_TOTAL
            total = args.total or sizes.get(leaves, 20_000_000)
            theory = (2 + STATE_SLOTS[opt_name]) * 4 * total
            for impl in impls:
                r = _run_cell(impl, opt_name, leaves, total, reps, args.timeout, device)
                r.update(impl=impl, optimizer=opt_name, leaves=leaves, params=total,
                         theory_bytes=theory)  # fmt: skip
                results.append(r)
                step = f"{r['step_s'] * 1e3:8.1f} ms" if "step_s" in r else r.get("error")
                print(f"  {opt_name:12s} {leaves:5d} leaves {impl:14s} {step}", flush=True)
                # Written after every cell, so an interrupted run keeps what it measured.
                meta["load_avg_now"] = os.getloadavg()
                record = {"meta": meta, "results": results,
                          "table": _table(results, bandwidth)}  # fmt: skip
                out.write_text(json.dumps(record, indent=1))
    table = _table(results, bandwidth)
    print()
    print(table)
    print()
    if device == "cpu":
        print(targets_table(results))
        if args.small_model:
            import bench_adapter

            small = bench_adapter.run_model("mlp", rounds=41 if not args.quick else 11)
            print("\nSmall model, one step (us), interleaved:\n")
            print(bench_adapter.table({"mlp": small}))
            record = {"meta": meta, "results": results, "table": table, "small_model": small}
            out.write_text(json.dumps(record, indent=1))
    elif bandwidth:
        print(gpu_targets_table(results, bandwidth))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
