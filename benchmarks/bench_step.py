"""Step time, compile time and peak memory of one optimizer update: optx vs optax vs torch.

Run from the repository root::

    python benchmarks/bench_step.py                     # full run (several minutes on 2 cores)
    python benchmarks/bench_step.py --quick             # fewer repeats, 10 and 1000 leaves
    python benchmarks/bench_step.py --leaves 10,1000 --optimizers adam --reps 21

Every (implementation, optimizer, leaf count) cell runs in its own fresh subprocess, so compile
caches, allocator state and peak RSS do not leak from one cell into the next. The table prints
ratios against torch ``fused=True`` and against optax from the same run (absolute times on a
shared machine are noise; ratios within one run are what to compare), and everything measured is
written to ``benchmarks/results/latest.json``.

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

ROOT = Path(__file__).resolve().parent.parent
IMPLS = ("optx", "optx_optim", "optax", "torch_single", "torch_foreach", "torch_fused")
OPTIMIZERS = ("adam", "adamw", "sgd")
# Total parameter count per leaf count: the three models.
DEFAULT_TOTAL = {10: 20_000_000, 1000: 20_000_000, 5000: 5_000_000}
HYPER = {
    "adam": {"lr": 1e-3},
    "adamw": {"lr": 1e-3, "weight_decay": 1e-2},
    "sgd": {"lr": 1e-2, "momentum": 0.9},
}
STATE_SLOTS = {"adam": 2, "adamw": 2, "sgd": 1}


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
    rng = np.random.default_rng(0)
    params = [jnp.asarray(rng.standard_normal(n, np.float32)) for n in sizes]
    grads = [jnp.asarray(rng.standard_normal(n, np.float32) * 1e-2) for n in sizes]
    jax.block_until_ready((params, grads))
    hp = HYPER[opt_name]

    if impl == "optx_optim":
        import optx.optim

        cls = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}[opt_name]
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
        args = (list(opt._params), list(opt._states), [grads], opt._hyperparam_args(), None)
        mem = fn.lower(*args).compile().memory_analysis()
        if mem is not None:
            out.update(peak_bytes=_xla_peak(mem), peak_method="xla_memory_analysis")
        else:
            out.update(peak_bytes=out["rss_peak_bytes"], peak_method="rss")
        return out

    if impl == "optx":
        import optx

        tx = {"adam": optx.adam, "adamw": optx.adamw, "sgd": optx.sgd}[opt_name](**hp)
        apply_updates = optx.apply_updates
    else:
        import optax

        if opt_name == "adam":
            tx = optax.adam(hp["lr"])
        elif opt_name == "adamw":
            tx = optax.adamw(hp["lr"], weight_decay=hp["weight_decay"])
        else:
            tx = optax.sgd(hp["lr"], momentum=hp["momentum"])
        apply_updates = optax.apply_updates

    def step_fn(p, s, g):
        updates, s = tx.update(g, s, p)
        return apply_updates(p, updates), s

    state = tx.init(params)
    t0 = time.perf_counter()
    compiled = jax.jit(step_fn, donate_argnums=(0, 1)).lower(params, state, grads).compile()
    compile_s = time.perf_counter() - t0
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
    out = {"step_s": statistics.median(times), "compile_s": compile_s, "fusions": n_fusions}
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
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[opt_name]
    # A tiny step first, so libraries and kernels loaded lazily do not count as step memory.
    tiny = torch.zeros(8, requires_grad=True)
    tiny.grad = torch.ones(8)
    cls([tiny], **HYPER[opt_name], **flags).step()
    rss0 = _rss_bytes()
    torch.manual_seed(0)
    params = [torch.randn(n) for n in _sizes(leaves, total)]
    for p in params:
        p.requires_grad_(True)
        p.grad = torch.randn(p.shape) * 1e-2
    opt = cls(params, **HYPER[opt_name], **flags)
    t0 = time.perf_counter()
    opt.step()
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps + 2):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[2:])
    return {
        "step_s": step,
        "compile_s": None,
        "first_step_s": first,
        "peak_bytes": _peak_rss_bytes() - rss0,
        "peak_method": "rss",
        "threads": torch.get_num_threads(),
    }


def _worker(args) -> None:
    impl, opt_name = args.worker
    leaves, total = args.worker_leaves, args.worker_total
    if impl.startswith("torch"):
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


def _run_cell(impl, opt_name, leaves, total, reps, timeout) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", impl, opt_name,
        "--worker-leaves", str(leaves), "--worker-total", str(total), "--reps", str(reps),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit {proc.returncode}"}


def _fmt_ratio(a, b) -> str:
    return f"{a / b:5.2f}x" if a is not None and b else "   - "


def _table(results: list[dict]) -> str:
    lines = [
        "| optimizer | leaves | params | impl | step ms | vs torch fused | vs optax | "
        "compile s | peak / (p+g+state) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cells = {(r["optimizer"], r["leaves"], r["impl"]): r for r in results}
    for r in results:
        ref = cells.get((r["optimizer"], r["leaves"], "torch_fused"), {})
        oax = cells.get((r["optimizer"], r["leaves"], "optax"), {})
        if "error" in r:
            lines.append(
                f"| {r['optimizer']} | {r['leaves']} | {r['params'] / 1e6:g}M | {r['impl']} | "
                f"error: {r['error'][:60]} |  |  |  |  |"
            )
            continue
        comp = f"{r['compile_s']:.2f}" if r.get("compile_s") is not None else "-"
        mem = r["peak_bytes"] / r["theory_bytes"]
        lines.append(
            f"| {r['optimizer']} | {r['leaves']} | {r['params'] / 1e6:g}M | {r['impl']} | "
            f"{r['step_s'] * 1e3:.1f} | {_fmt_ratio(r['step_s'], ref.get('step_s'))} | "
            f"{_fmt_ratio(r['step_s'], oax.get('step_s'))} | {comp} | "
            f"{mem:.2f} ({r['peak_method']}) |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats, leaves 10,1000")
    parser.add_argument("--leaves", default=None, help="comma-separated leaf counts")
    parser.add_argument("--total", type=int, default=None, help="total params for every count")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--reps", type=int, default=None, help="timed steps per cell (median)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latest.json"))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--worker-leaves", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-total", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.reps = args.reps or 15
        return _worker(args)

    reps = args.reps or (5 if args.quick else 15)
    default_leaves = "10,1000" if args.quick else "10,1000,5000"
    leaf_counts = [int(x) for x in (args.leaves or default_leaves).split(",")]
    impls = [i for i in args.impls.split(",") if i]
    if "optx_optim" in impls and not _optim_available():
        print("optx.optim is not importable: skipping the adapter")
        impls.remove("optx_optim")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
        "reps": reps,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    results: list[dict] = []
    for opt_name in args.optimizers.split(","):
        for leaves in leaf_counts:
            total = args.total or DEFAULT_TOTAL.get(leaves, 20_000_000)
            theory = (2 + STATE_SLOTS[opt_name]) * 4 * total
            for impl in impls:
                r = _run_cell(impl, opt_name, leaves, total, reps, args.timeout)
                r.update(impl=impl, optimizer=opt_name, leaves=leaves, params=total,
                         theory_bytes=theory)  # fmt: skip
                results.append(r)
                step = f"{r['step_s'] * 1e3:8.1f} ms" if "step_s" in r else r.get("error")
                print(f"  {opt_name:6s} {leaves:5d} leaves {impl:14s} {step}", flush=True)
                # Written after every cell, so an interrupted run keeps what it measured.
                meta["load_avg_now"] = os.getloadavg()
                record = {"meta": meta, "results": results, "table": _table(results)}
                out.write_text(json.dumps(record, indent=1))
    table = _table(results)
    print()
    print(table)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
