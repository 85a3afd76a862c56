"""Where optx's Adam step loses to optax's at many leaves: hand-written variants of the same
update, timed interleaved with both.

Run from the repository root::

    python benchmarks/leaf_order.py            # 20 M params in 1000 leaves, 16 rounds
    python benchmarks/leaf_order.py --leaves 10 --rounds 24
    python benchmarks/leaf_order.py --variants optax,optx,hand+vec,hand+late

Every variant is one jitted, donated step ``(params, state, grads) -> (params, state)``:

* ``optax``, ``optx``: ``optax.adam(1e-3)`` and ``optx.adam(lr=1e-3)`` with ``apply_updates``;
* ``optx unpacked``: ``optx.adam`` with its moment coefficients each a separate output of the
  once-per-step conditional instead of one ``optx.torch_ops.Packed`` vector, as before issue
  34's third session;
* ``hand``: optx's arithmetic (torch's lerp for the first moment, ``sqrt(v) / sqrt(bc2) + eps``,
  ``(-lr / bc1) * m / denom``) written out, its hyperparameters runtime values in a state array
  as optx keeps them; no conditional;
* ``hand+cond``: the same with the step's coefficients passed through a ``lax.cond`` as
  ``optx.torch_optimizer._once_per_step`` passes them on CPU (so each leaf's kernel gets them as
  scalars instead of recomputing them);
* ``hand+split``: only the step-dependent coefficients (the bias corrections) pass through the
  conditional; the others are recomputed in each leaf's kernels;
* ``hand+vec``: ``hand+cond`` with the moment kernels' coefficients in one vector output of
  the conditional, as ``optx.torch_ops.Packed`` passes them since issue 34 (both kernels of a
  leaf then wait for the same output and run back to back);
* ``hand+late``: ``hand+vec`` with the parameter kernels' coefficients through a second
  conditional that waits for the vector's: XLA then queues every parameter kernel after every
  moment kernel, in the opposite order, so the last leaves' moments are still in cache when
  their parameters are updated (optax's pattern, mirrored);
* ``hand+vec+lerp``: ``hand+vec`` with the first moment by torch's lerp, as optx computes it
  (a select of the base on ``|1 - beta1| < 0.5``, which LLVM hoists out of the loop);
* ``hand+vec+two``: ``hand+vec`` with the vector through a second conditional that waits for
  the first, as optx passes it;
* ``hand+chain``: ``hand`` with each leaf's gradient tied (bitwise OR of a runtime +0.0) to the
  previous leaf's new parameter, so that XLA must finish a leaf before it starts the next.

Each round times 4 consecutive steps of every variant in a fresh random order; the table gives
the median over rounds and the ratio to optax. On this 2-core machine the variant built first
runs fastest, by 4-15 % at 1000 leaves (a second ``optax.adam`` built after five others measured
1.06x the first; copying every array anew, leaf by leaf across the variants, did not remove it):
compare a run with ``--reverse`` before reading a ratio under 1.1. What it showed is in
benchmarks/README.md (issue 34).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optx import torch_ops  # noqa: E402


def hand(cond: bool = False, split: bool = False, chain: bool = False, vec: bool = False,
         late: bool = False, lerp: bool = False, two: bool = False):
    """``(init, step)`` of Adam written out as optx computes it (``lerp``: the first moment by
    torch's lerp, as ``optx.torch_ops.lerp``; ``two``: with ``vec``, the vector through a second
    conditional that waits for the first, as optx passes it)."""

    def init(params):
        hp = jnp.array([0.9, 0.999, 1e-3, 1e-8], jnp.float32)  # betas, lr, eps
        return (jnp.zeros([], jnp.int32), [jnp.zeros_like(p) for p in params],
                [jnp.zeros_like(p) for p in params], hp)

    def step(params, state, grads):
        count, ms, vs, hp = state
        count = count + 1
        t = count.astype(jnp.float32)
        b1, b2, lr, eps = hp[0], hp[1], hp[2], hp[3]
        w = torch_ops.prepare_lerp(1 - b1)
        c = [w.coef if lerp else 1 - b1, b2, 1 - b2, -(lr / (1 - b1**t)), jnp.sqrt(1 - b2**t),
             eps, w.small]
        if vec or late:
            c = [jnp.stack(c[:3])] + c[3:]
        if late:  # the vector first; the parameter kernels' coefficients after it
            c[0], t_after = _through_cond(t, [c[0], t])
            c[1:] = _through_cond(t_after + c[0][0], c[1:])
        elif two:  # the rest first; the vector after it
            *c[1:], t_after = _through_cond(t, [*c[1:], t])
            c[0] = _through_cond(t_after, c[:1])[0]
        elif cond or vec:
            c = _through_cond(t, c)
        if vec or late:
            c = [c[0][0], c[0][1], c[0][2]] + c[1:]
        if split:  # only the step-dependent coefficients (bias corrections) pass the conditional
            c[3:5] = _through_cond(t, c[3:5])
        one_minus_b1, b2, one_minus_b2, neg_step, bc2_sqrt, eps, small = c
        new_p, new_m, new_v, zero = [], [], [], None
        for p, m, v, g in zip(params, ms, vs, grads):
            if chain and zero is not None:
                bits = lax.bitcast_convert_type(g, jnp.uint32) | lax.bitcast_convert_type(
                    zero, jnp.uint32)
                g = lax.bitcast_convert_type(bits, jnp.float32)
            if lerp:
                m = torch_ops.lerp(m, g, torch_ops.PreparedLerp(small, one_minus_b1))
            else:
                m = m + (g - m) * one_minus_b1
            v = v * b2 + g * g * one_minus_b2
            p = p + (neg_step * m) / (jnp.sqrt(v) / bc2_sqrt + eps)
            new_p.append(p)
            new_m.append(m)
            new_v.append(v)
            if chain:
                x = jnp.abs(p[0])
                zero = jnp.where(jnp.isfinite(x), x, 0.0) * 0.0
        return new_p, (count, new_m, new_v, hp)

    return init, step


def _through_cond(t, xs):
    """``xs`` through a conditional on ``t > 0``, always true (as optx's on CPU)."""
    return lax.cond(t > 0, lambda: list(xs), lambda: [jnp.zeros_like(x) for x in xs])


def library(name: str):
    import optax

    import optx
    from optx import torch_ops

    tx = optax.adam(1e-3) if name == "optax" else optx.adam(lr=1e-3)

    def step(params, state, grads):
        if name != "optx unpacked":
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state
        # The moment coefficients as a plain dict, not a Packed: each its own output of the
        # conditional, as before issue 34's third session (patched while the step is traced).
        packed = torch_ops.adam_moment_coefficients
        torch_ops.adam_moment_coefficients = lambda b1, b2: dict(packed(b1, b2))
        try:
            updates, state = tx.update(grads, state, params)
        finally:
            torch_ops.adam_moment_coefficients = packed
        return optax.apply_updates(params, updates), state

    return tx.init, step


VARIANTS = {
    "optax": lambda: library("optax"),
    "optx": lambda: library("optx"),
    "optx unpacked": lambda: library("optx unpacked"),
    "hand": lambda: hand(),
    "hand+cond": lambda: hand(cond=True),
    "hand+split": lambda: hand(split=True),
    "hand+vec": lambda: hand(vec=True),
    "hand+chain": lambda: hand(chain=True),
    "hand+late": lambda: hand(late=True),
    "hand+vec+lerp": lambda: hand(vec=True, lerp=True),
    "hand+vec+two": lambda: hand(vec=True, two=True),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--leaves", type=int, default=1000)
    ap.add_argument("--total", type=int, default=20_000_000)
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--reverse", action="store_true",
                    help="build the variants in the reverse order (see the module docstring)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated names, in build order (optax is always timed); a "
                         "name may repeat (ABBA: optx,optax,optax,optx), each copy built anew "
                         "and its time the geometric mean of the copies' medians")
    args = ap.parse_args(argv)
    chosen = args.variants.split(",")
    chosen += [] if "optax" in chosen else ["optax"]  # the ratios' denominator
    if set(chosen) - set(VARIANTS):
        ap.error(f"unknown variants {sorted(set(chosen) - set(VARIANTS))}")
    rng = np.random.default_rng(0)
    size = args.total // args.leaves
    host_p = [rng.standard_normal(size).astype(np.float32) for _ in range(args.leaves)]
    host_g = [(rng.standard_normal(size) * 1e-2).astype(np.float32) for _ in range(args.leaves)]
    steps = {}
    for i, name in enumerate(reversed(chosen) if args.reverse else chosen):
        init, step = VARIANTS[name]()
        fn = jax.jit(step, donate_argnums=(0, 1))
        params = [jnp.asarray(x) for x in host_p]
        box = [params, init(params), [jnp.asarray(x) for x in host_g]]

        def run(fn=fn, box=box):
            box[0], box[1] = fn(box[0], box[1], box[2])
            jax.block_until_ready(box[0])

        run()
        run()
        steps[f"{name}#{i}"] = run
    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for r in range(args.rounds):
        random.Random(r).shuffle(names)
        for k in names:
            t0 = time.perf_counter()
            for _ in range(4):
                steps[k]()
            times[k].append((time.perf_counter() - t0) / 4)
    med = {name: statistics.geometric_mean(
        [statistics.median(v) for k, v in times.items() if k.split("#")[0] == name])
        for name in dict.fromkeys(chosen)}
    print(f"{args.leaves} leaves, {args.total:,} params, median of {args.rounds} rounds")
    print("| variant | step ms | / optax |\n|---|---|---|")
    for k, m in med.items():
        print(f"| {k} | {m * 1e3:.2f} | {m / med['optax']:.3f} |")


if __name__ == "__main__":
    main()
