"""How long XLA takes to compile the smallest possible per-leaf programs, against optx and optax.

Run from the repository root::

    python benchmarks/bench_compile_floor.py                 # 1000 and 5000 leaves
    python benchmarks/bench_compile_floor.py --leaves 1000

Issue 8 asks for compile time flat in the leaf count (<= 1 s at 1000 leaves, <= 3 s at 5000).
This script measures what the compiler itself costs for programs that take and return one
buffer per leaf, which any optimizer update over a pytree must do (the params come in and go
out as separate arrays), so the optimizer-specific part of compile time can be told apart from
the part no library can remove:

* ``add``: ``p + g`` per leaf, one fusion per leaf, the least an update can compile to;
* ``adam_like``: three outputs per leaf (new p, m, v) with a handful of elementwise ops each,
  roughly an Adam update with every option stripped;
* ``stack_split``: the "flat state" route: all leaves concatenated into one buffer, updated by
  one fusion, and split back into leaves (XLA compiles each slice back out as its own kernel);
* ``optax_adam`` and ``optx_adam``: the real updates, ``update`` + ``apply_updates``.

Every program runs in a fresh subprocess; the time is JAX tracing + lowering + XLA compilation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ("add", "adam_like", "stack_split", "optax_adam", "optx_adam")
SIZE = 100  # elements per leaf: compile time does not depend on it


def _worker(program: str, leaves: int) -> float:
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(ROOT))
    ps = [jnp.zeros((SIZE,), jnp.float32) for _ in range(leaves)]

    if program == "add":
        def fn(p, g):
            return [a + b for a, b in zip(p, g)]

        args: tuple = (ps, ps)
    elif program == "adam_like":
        def fn(p, g, m, v):
            m2 = [a * 0.9 + b for a, b in zip(m, g)]
            v2 = [a * 0.99 + b * b for a, b in zip(v, g)]
            return [x + a / (jnp.sqrt(b) + 1e-8) for x, a, b in zip(p, m2, v2)], m2, v2

        args = (ps, ps, ps, ps)
    elif program == "stack_split":
        def fn(p, g):
            flat = jnp.concatenate(p) + jnp.concatenate(g)
            return jnp.split(flat, leaves)

        args = (ps, ps)
    else:
        mod = __import__(program.split("_")[0])
        tx = mod.adam(1e-3)

        def fn(p, s, g):
            updates, s = tx.update(g, s, p)
            return mod.apply_updates(p, updates), s

        args = (ps, tx.init(ps), ps)
    t0 = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", default="1000,5000")
    parser.add_argument("--programs", default=",".join(PROGRAMS))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/compile_floor.json"))
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT", _worker(args.worker[0], int(args.worker[1])), flush=True)
        return
    results = []
    print("| program | leaves | compile s |\n|---|---|---|")
    for leaves in [int(x) for x in args.leaves.split(",")]:
        for program in args.programs.split(","):
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", program, str(leaves)],
                capture_output=True, text=True,
            )  # fmt: skip
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
            seconds = float(line[0].split()[1]) if line else None
            results.append({"program": program, "leaves": leaves, "compile_s": seconds})
            shown = f"{seconds:.2f}" if seconds is not None else proc.stderr.strip()[-80:]
            print(f"| {program} | {leaves} | {shown} |", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
