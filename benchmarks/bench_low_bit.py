"""Low-bit optimizer state (torchao's Adam8bit ... AdamWFp8 in optx): memory and speed.

Prints, for a 20 M-parameter model (20 matrices of 1024 x 1024, all quantized):

1. state bytes per parameter of optx.adamw (8.0) and of each low-bit optimizer (targets:
   <= 2.05 for 8-bit and fp8, <= 1.07 for 4-bit), counted from the state's arrays;
2. the peak process memory (``ru_maxrss``) of a jitted, donating training step (loss, grads,
   update) for fp32 AdamW and AdamW8bit, each in its own subprocess, on a larger model
   (``--peak-params``, default 100 M), with XLA's own count of the step's temporary bytes
   (``compiled.memory_analysis()``: deterministic, the buffers beyond arguments and outputs);
3. the step time of AdamW8bit, AdamW4bit and AdamWFp8 against optx.adamw at 20 M, measured
   interleaved (target for 8 bits: <= 1.5x), and with ``--torchao`` torchao's AdamW8bit step
   (torch.compile on CPU) too.

    python benchmarks/bench_low_bit.py [--peak-params 1e8] [--peak-loss square|linear]
                                       [--reps 10] [--torchao]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import optx

SIDE = 1024
LAYERS = 20  # 20 x 1024 x 1024 = 20.97 M parameters
LOW_BIT = {"adamw_8bit": optx.adamw_8bit, "adamw_4bit": optx.adamw_4bit,
           "adamw_fp8": optx.adamw_fp8}


def model(n_params: float = LAYERS * SIDE * SIDE) -> dict[str, jax.Array]:
    layers = max(1, round(n_params / (SIDE * SIDE)))
    return {f"w{i}": jnp.full((SIDE, SIDE), 0.01 * (i + 1), jnp.float32) for i in range(layers)}


def state_bytes_per_param(tx: optx.GradientTransformation, params: dict[str, jax.Array]) -> float:
    state = jax.eval_shape(tx.init, params)
    slots = jax.tree_util.tree_leaves(state.slots)
    total = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in slots)
    n = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    return total / n


BATCH = 8  # rows of the input of the "linear" loss


def _loss(kind: str):
    """``"square"``: ``sum(w**2)`` over the weights, an elementwise gradient that XLA computes
    inside fp32 AdamW's fused update (no gradient buffer at all, which no real network allows).
    ``"linear"``: each weight a linear layer applied to a fixed batch, ``sum((x @ w)**2)``: the
    gradient ``2 x.T (x w)`` is a matmul's output, held in memory as in any real network."""
    if kind == "square":
        return lambda p: sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(p))
    x = jnp.full((BATCH, SIDE), 0.01, jnp.float32)
    return lambda p: sum(jnp.sum((x @ w) ** 2) for w in jax.tree_util.tree_leaves(p))


def _train_step(tx, loss_kind: str = "square"):
    loss = _loss(loss_kind)

    def step(p, s):
        g = jax.grad(loss)(p)
        u, s = tx.update(g, s, p)
        return optx.apply_updates(p, u), s

    return jax.jit(step, donate_argnums=(0, 1))


def peak_worker(name: str, n_params: float, loss_kind: str) -> dict[str, float]:
    """Runs in a subprocess: a few jitted training steps, then the peak RSS."""
    tx = optx.adamw() if name == "adamw" else LOW_BIT[name]()
    params = model(n_params)
    state = tx.init(params)
    step = _train_step(tx, loss_kind).lower(params, state).compile()
    temp = step.memory_analysis().temp_size_in_bytes
    for _ in range(3):
        params, state = step(params, state)
    jax.block_until_ready(params)
    n = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    return {"params": n, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            * 1024, "xla_temp_bytes": temp}


def peak_memory(name: str, n_params: float, loss_kind: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--peak-worker", name, "--peak-params", str(n_params),
         "--peak-loss", loss_kind],
        capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_times(reps: int) -> dict[str, float]:
    """Median step time (s) of optx.adamw and the low-bit AdamWs at 20 M, interleaved step by
    step."""
    steps = {}
    states = {}
    params = {}
    for name, tx in [("adamw", optx.adamw())] + [(k, f()) for k, f in LOW_BIT.items()]:
        params[name] = model()
        states[name] = tx.init(params[name])
        steps[name] = jax.jit(lambda p, s, g, tx=tx: tx.update(g, s, p), donate_argnums=(1,))
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-3), params["adamw"])
    times: dict[str, list[float]] = {k: [] for k in steps}
    for rep in range(reps + 2):
        for name, fn in steps.items():
            start = time.perf_counter()
            updates, states[name] = fn(params[name], states[name], grads)
            jax.block_until_ready((updates, states[name]))
            if rep >= 2:  # the first two compile and warm up
                times[name].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}


def torchao_step_time(reps: int) -> float:
    import torch
    import torchao.optim as ao

    ps = [torch.nn.Parameter(torch.full((SIDE, SIDE), 0.01)) for _ in range(LAYERS)]
    opt = ao.AdamW8bit(ps)
    for p in ps:
        p.grad = torch.full_like(p, 1e-3)
    times = []
    for rep in range(reps + 2):
        start = time.perf_counter()
        opt.step()
        if rep >= 2:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peak-params", type=float, default=1e8)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--torchao", action="store_true")
    ap.add_argument("--peak-loss", choices=("square", "linear"), action="append",
                    help="the training step's loss (default: both; see _loss)")
    ap.add_argument("--peak-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peak_worker:
        print(json.dumps(peak_worker(args.peak_worker, args.peak_params, args.peak_loss[0])))
        return

    params = model()
    n = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    print(f"state bytes per parameter ({n / 1e6:.1f} M parameters, float32):")
    base = state_bytes_per_param(optx.adamw(), params)
    print(f"  {'adamw':<12} {base:6.3f}")
    for name, make in LOW_BIT.items():
        b = state_bytes_per_param(make(), params)
        target = 1.07 if "4bit" in name else 2.05
        print(f"  {name:<12} {b:6.3f}  ({base / b:4.1f}x less; target <= {target}: "
              f"{'met' if b <= target else 'NOT met'})")

    for loss_kind in args.peak_loss or ("square", "linear"):
        print(f"peak process memory of a jitted training step ({args.peak_params / 1e6:.0f} M "
              f"parameters, {loss_kind!r} loss, separate processes):")
        peaks = {name: peak_memory(name, args.peak_params, loss_kind)
                 for name in ("adamw", "adamw_8bit")}
        for name, r in peaks.items():
            print(f"  {name:<12} {r['peak_rss_bytes'] / 2**30:6.2f} GiB  (XLA temporaries "
                  f"{r['xla_temp_bytes'] / 2**20:8.1f} MiB)")
        ratio = peaks["adamw_8bit"]["peak_rss_bytes"] / peaks["adamw"]["peak_rss_bytes"]
        print(f"  adamw_8bit / adamw: {ratio:.2f}")

    times = step_times(args.reps)
    print(f"step time at {n / 1e6:.1f} M parameters (median of {args.reps}, interleaved):")
    for name, t in times.items():
        print(f"  {name:<12} {t * 1e3:8.1f} ms")
    for name in LOW_BIT:
        slow = times[name] / times["adamw"]
        print(f"  {name} / adamw: {slow:.2f}x" + (
            f" (target <= 1.5x: {'met' if slow <= 1.5 else 'NOT met'})"
            if name == "adamw_8bit" else ""))
    if args.torchao:
        t = torchao_step_time(args.reps)
        print(f"  torchao AdamW8bit (torch.compile, CPU): {t * 1e3:8.1f} ms "
              f"({t / times['adamw_8bit']:.2f}x optx's)")


if __name__ == "__main__":
    main()
