"""Time one LBFGS step (one ``step(closure)`` / one jitted ``update``) for optx vs torch.

Problem: L2-regularized logistic regression with 1e5 parameters (float32, 256 samples), so the
cost is the optimizer's vector work (two-loop recursion over the history, line search) plus the
closure's matrix-vector products, the same in both. Both run the same configuration
(strong-Wolfe line search, max_iter=20, history_size=10) from the same point; the timed steps
start from a warmed-up state so every step does its full iterations.

    python benchmarks/bench_lbfgs.py [--n 100000] [--reps 10] [--line-search none]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

import optx


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--line-search", default="strong_wolfe", choices=["strong_wolfe", "none"])
    args = ap.parse_args()
    ls = None if args.line_search == "none" else "strong_wolfe"
    kwargs = dict(
        lr=1.0,
        max_iter=20,
        history_size=10,
        line_search_fn=ls,
        tolerance_grad=0.0,
        tolerance_change=0.0,
    )

    rng = np.random.default_rng(0)
    a = (rng.normal(size=(args.samples, args.n)) / np.sqrt(args.n)).astype(np.float32)
    y = (rng.random(args.samples) < 0.5).astype(np.float32)
    w0 = np.zeros(args.n, np.float32)
    lam = 1e-3

    # torch
    ta, ty = torch.from_numpy(a), torch.from_numpy(y)
    tw = torch.tensor(w0.copy(), requires_grad=True)
    opt = torch.optim.LBFGS([tw], **kwargs)

    def closure():
        opt.zero_grad()
        z = ta @ tw
        loss = torch.nn.functional.softplus(z).mean() - (ty * z).mean() + lam * (tw * tw).sum()
        loss.backward()
        return loss

    opt.step(closure)  # warm-up (fills the history)
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        opt.step(closure)
        times.append(time.perf_counter() - t0)
    t_torch = float(np.median(times))

    # optx
    ja, jy = jnp.asarray(a), jnp.asarray(y)

    def loss_fn(w):
        z = ja @ w
        return jax.nn.softplus(z).mean() - (jy * z).mean() + lam * (w * w).sum()

    tx = optx.lbfgs(**kwargs)

    @jax.jit
    def step(w, state):
        value, grads = jax.value_and_grad(loss_fn)(w)
        updates, state = tx.update(grads, state, w, value=value, value_fn=loss_fn)
        return optx.apply_updates(w, updates), state

    w, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
    t0 = time.perf_counter()
    w, state = jax.block_until_ready(step(w, state))  # compile + warm-up
    t_compile = time.perf_counter() - t0
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        w, state = jax.block_until_ready(step(w, state))
        times.append(time.perf_counter() - t0)
    t_optx = float(np.median(times))

    print(f"LBFGS step, n={args.n}, line_search={ls}, max_iter=20, history_size=10, float32")
    print(f"  torch: {t_torch * 1e3:9.2f} ms/step ({opt.state[tw]['func_evals']} evals total)")
    print(
        f"  optx : {t_optx * 1e3:9.2f} ms/step ({int(state.func_evals)} evals total; "
        f"compile {t_compile:.1f} s)"
    )
    print(f"  ratio optx/torch: {t_optx / t_torch:.2f}")


if __name__ == "__main__":
    main()
