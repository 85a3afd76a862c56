"""What the ``optx.optim`` adapter costs over the jitted functional update it wraps, and one small
model's step latency across libraries.

Run from the repository root::

    python benchmarks/bench_adapter.py            # the three models below, about two minutes
    python benchmarks/bench_adapter.py --quick    # the small model only

Models (float32, Adam at torch's defaults with ``lr=1e-3``):

* ``mlp``: an 11.8 k-parameter MLP, 16-64-64-64-32-10, as 10 tensors (5 weights, 5 biases);
* ``20M/10`` and ``20M/1000``: 20 M parameters in 10 and in 1000 equal 1-D leaves.

Each model runs in its own fresh process. Within it every implementation is built and warmed
up, then the timed rounds are *interleaved*: each round times ``--steps`` consecutive steps of
each implementation in turn (the order rotating from round to round), each step blocked until
its result is ready, so that load on a shared machine lands on all of them alike. A step's time
is the median over rounds of the round's mean.

* ``optx``: ``jax.jit`` of ``optx.adam``'s ``update`` + ``apply_updates``, params and state
  donated: what the adapter wraps.
* ``adapter``: ``optx.optim.Adam(params, lr=1e-3).step(grads)``.
* ``optax``: ``optax.adam`` in the same jitted, donated step (small model only).
* ``torch foreach`` / ``torch single``: ``torch.optim.Adam(foreach=True / False).step()`` with
  ``.grad`` set (small model only).

The adapter's *fixed cost* is ``adapter - optx`` per step (the Python it runs around the same
compiled update); the targets are at most 30 us on the small model and ``adapter / optx`` at most
1.05 on the 20 M models. Results go to ``benchmarks/results/adapter.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from worker import run_worker

ROOT = Path(__file__).resolve().parent.parent
MLP_DIMS = (16, 64, 64, 64, 32, 10)
MODELS = {"mlp": None, "20M/10": (10, 20_000_000), "20M/1000": (1000, 20_000_000)}
SMALL_IMPLS = ("optx", "adapter", "optax", "torch foreach", "torch single")
LARGE_IMPLS = ("optx", "adapter")
TARGET_FIXED_US = 30.0
TARGET_RATIO = 1.05


def _shapes(model: str) -> list[tuple[int, ...]]:
    if model == "mlp":
        shapes: list[tuple[int, ...]] = []
        for a, b in zip(MLP_DIMS, MLP_DIMS[1:]):
            shapes += [(a, b), (b,)]
        return shapes
    leaves, total = MODELS[model]
    base, extra = divmod(total, leaves)
    return [(base + (i < extra),) for i in range(leaves)]


def _steppers(model: str, impls: tuple[str, ...]) -> dict:
    """``{impl: step()}``: each call runs one update and blocks until it is done."""
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT))
    rng = np.random.default_rng(0)
    shapes = _shapes(model)
    host_p = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    host_g = [(rng.standard_normal(s) * 1e-2).astype(np.float32) for s in shapes]
    out = {}
    for impl in impls:
        if impl in ("optx", "optax"):
            if impl == "optx":
                import optx

                tx, apply = optx.adam(lr=1e-3), optx.apply_updates
            else:
                import optax

                tx, apply = optax.adam(1e-3), optax.apply_updates

            def run(p, s, g, tx=tx, apply=apply):
                updates, s = tx.update(g, s, p)
                return apply(p, updates), s

            fn = jax.jit(run, donate_argnums=(0, 1))
            params = [jax.numpy.asarray(p) for p in host_p]
            grads = [jax.numpy.asarray(g) for g in host_g]
            box = [params, tx.init(params)]

            def step(fn=fn, box=box, grads=grads):
                box[0], box[1] = fn(box[0], box[1], grads)
                jax.block_until_ready(box[0])

        elif impl == "adapter":
            import optx.optim

            opt = optx.optim.Adam([jax.numpy.asarray(p) for p in host_p], lr=1e-3)
            grads = [jax.numpy.asarray(g) for g in host_g]

            def step(opt=opt, grads=grads):
                opt.step(grads)
                jax.block_until_ready(opt.params)

        else:
            import torch

            params = [torch.tensor(p, requires_grad=True) for p in host_p]
            for p, g in zip(params, host_g):
                p.grad = torch.tensor(g)
            topt = torch.optim.Adam(params, lr=1e-3, foreach=impl == "torch foreach")

            def step(topt=topt):
                topt.step()

        for _ in range(3):  # compile and warm up
            step()
        out[impl] = step
    return out


def _worker(model: str, impls: tuple[str, ...], rounds: int, steps: int) -> dict:
    steppers = _steppers(model, impls)
    samples: dict[str, list[float]] = {k: [] for k in steppers}
    names = list(steppers)
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            step = steppers[k]
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            samples[k].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in samples.items()}


def table(results: dict) -> str:
    lines = ["| model | " + " | ".join(f"{i} us" for i in SMALL_IMPLS)
             + " | adapter - optx us | adapter / optx | target |",
             "|---|" + "---|" * (len(SMALL_IMPLS) + 3)]
    for model, r in results.items():
        if "error" in r:
            lines.append(f"| {model} | error: {r['error']} |")
            continue
        cells = [f"{r[i] * 1e6:,.0f}" if i in r else "" for i in SMALL_IMPLS]
        fixed = (r["adapter"] - r["optx"]) * 1e6
        ratio = r["adapter"] / r["optx"]
        if model == "mlp":
            met = fixed <= TARGET_FIXED_US
            target = f"fixed <= {TARGET_FIXED_US:g} us: {'met' if met else 'not met'}"
        else:
            met = ratio <= TARGET_RATIO
            target = f"ratio <= {TARGET_RATIO}: {'met' if met else 'not met'}"
        lines.append(f"| {model} | " + " | ".join(cells)
                     + f" | {fixed:+,.0f} | {ratio:.3f} | {target} |")
    return "\n".join(lines)


def run_model(model: str, rounds: int | None = None) -> dict:
    """One model's per-step times ``{impl: seconds}``, measured in a fresh process."""
    small = model == "mlp"
    rounds = rounds or (41 if small else 9)
    steps = 200 if small else 3
    impls = SMALL_IMPLS if small else LARGE_IMPLS
    cmd = [sys.executable, __file__, "--worker", model, ",".join(impls), str(rounds), str(steps)]
    return run_worker(cmd, timeout=1200)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small model only")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "adapter.json"))
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        model, impls, rounds, steps = args.worker
        result = _worker(model, tuple(impls.split(",")), int(rounds), int(steps))
        print("RESULT " + json.dumps(result))
        return
    models = ["mlp"] if args.quick else list(MODELS)
    results = {}
    for model in models:
        results[model] = run_model(model, args.rounds)
        print(f"{model}: {results[model]}", flush=True)
    text = table(results)
    print(text)
    meta = {"time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": platform.platform(), "cpus": os.cpu_count(),
            "load_avg": os.getloadavg()}
    Path(args.out).write_text(json.dumps(
        {"meta": meta, "results": results, "table": text}, indent=1) + "\n")


if __name__ == "__main__":
    main()
