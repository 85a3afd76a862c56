"""A whole training step (forward + backward + update): optx vs optax vs torch.

Run from the repository root::

    python benchmarks/bench_train_step.py            # both models, both layouts, Adam
    python benchmarks/bench_train_step.py --quick    # fewer repeats
    python benchmarks/bench_train_step.py --models mlp --layouts loop --reps 11

What a user waits for is the whole step, not the update alone. Two float32 models, each in two
layouts of the same parameters:

* ``transformer``: a small pre-LayerNorm transformer (10 layers, width 64, 4 heads, vocabulary
  256, sequence 32, batch 8), next-token cross-entropy; 16 parameters per layer, 166 leaves
  when every layer has its own arrays;
* ``mlp``: a 250-layer residual MLP (width 64, batch 32), ``h + tanh(h @ W + b)`` per layer,
  squared error; 500 leaves.

Layouts: ``loop`` (a Python loop over layers, one leaf per layer parameter: the leaf count
above) and ``scan`` (each layer parameter stacked over layers and the layers run by
``lax.scan``: 22 and 2 leaves).

Implementations, per (model, layout):

* ``optx`` / ``optax``: Adam (``lr=1e-3``), one ``jax.jit`` of value-and-grad + update +
  ``apply_updates``, params and optimizer state donated;
* ``nop``: the same jitted step with ``p - lr * g`` as the update (no optimizer state): what
  forward + backward cost, so ``optx - nop`` is the optimizer's share of the step and of the
  compile time;
* ``torch_fused`` / ``torch_foreach``: torch's eager loop, ``zero_grad(set_to_none=True)``,
  forward, backward and ``torch.optim.Adam(fused=True | foreach=True).step()``, with the same
  parameters (stacked ones are indexed per layer); ``torch_nop`` is that loop without the
  optimizer step.

Step is the median of ``--reps`` steps after warm-up; compile is tracing + lowering + XLA
compilation of the step. Each cell runs in a fresh subprocess. Results go to
``benchmarks/results/train_step.json``.
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
MODELS = ("transformer", "mlp")
LAYOUTS = ("loop", "scan")
IMPLS = ("nop", "optx", "optax", "torch_nop", "torch_fused", "torch_foreach")
LR = 1e-3

# Model sizes.
TF = dict(layers=10, width=64, heads=4, vocab=256, seq=32, batch=8)
MLP = dict(layers=250, width=64, batch=32)
TF_LAYER = ("ln1_g", "ln1_b", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo",
            "ln2_g", "ln2_b", "w1", "b1", "w2", "b2")  # fmt: skip


def _shapes(model: str) -> tuple[dict, dict]:
    """(global parameter shapes, per-layer parameter shapes)."""
    if model == "mlp":
        d = MLP["width"]
        return {}, {"w": (d, d), "b": (d,)}
    d, v, t = TF["width"], TF["vocab"], TF["seq"]
    layer = {}
    for name in TF_LAYER:
        if name in ("w1",):
            layer[name] = (d, 4 * d)
        elif name in ("b1",):
            layer[name] = (4 * d,)
        elif name in ("w2",):
            layer[name] = (4 * d, d)
        elif name.startswith("w"):
            layer[name] = (d, d)
        else:
            layer[name] = (d,)
    return {"embed": (v, d), "pos": (t, d), "lnf_g": (d,), "lnf_b": (d,),
            "head_w": (d, v), "head_b": (v,)}, layer  # fmt: skip


def _layers(model: str) -> int:
    return MLP["layers"] if model == "mlp" else TF["layers"]


def make_params(model: str, layout: str):
    """numpy parameters: {"globals": {...}, "layers": [per-layer dicts] | {stacked arrays}}."""
    import numpy as np

    rng = np.random.default_rng(0)
    glob, layer = _shapes(model)
    n = _layers(model)

    def init(name, shape, lead=()):
        if name.endswith("_g"):
            return np.ones(lead + shape, np.float32)
        if name.startswith("b") or name.endswith("_b"):
            return np.zeros(lead + shape, np.float32)
        scale = 0.02 if model == "transformer" else 0.5 / np.sqrt(shape[0])
        return (rng.standard_normal(lead + shape) * scale).astype(np.float32)

    params = {"globals": {k: init(k, s) for k, s in glob.items()}}
    if layout == "scan":
        params["layers"] = {k: init(k, s, (n,)) for k, s in layer.items()}
    else:
        params["layers"] = [{k: init(k, s) for k, s in layer.items()} for _ in range(n)]
    return params


def make_batch(model: str):
    import numpy as np

    rng = np.random.default_rng(1)
    if model == "mlp":
        x = rng.standard_normal((MLP["batch"], MLP["width"])).astype(np.float32)
        return x, np.tanh(x[:, ::-1]).copy()
    toks = rng.integers(0, TF["vocab"], (TF["batch"], TF["seq"] + 1))
    return toks[:, :-1].astype(np.int32), toks[:, 1:].astype(np.int32)


# --------------------------------------------------------------------------------------------
# The forward pass, written once against an array namespace (jax.numpy or torch).
# --------------------------------------------------------------------------------------------


def _layer_norm(xp, x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / xp.sqrt(var + 1e-5) * g + b


def _tf_layer(xp, softmax, h, p):
    bsz, t, d = h.shape
    nh = TF["heads"]
    x = _layer_norm(xp, h, p["ln1_g"], p["ln1_b"])

    def heads(w, b):
        return (x @ w + b).reshape(bsz, t, nh, d // nh).transpose(0, 2, 1, 3)

    q, k, v = heads(p["wq"], p["bq"]), heads(p["wk"], p["bk"]), heads(p["wv"], p["bv"])
    att = (q @ k.transpose(0, 1, 3, 2)) / float(d // nh) ** 0.5
    mask = xp.tril(xp.ones((t, t))) > 0
    att = softmax(xp.where(mask, att, -1e9))
    o = (att @ v).transpose(0, 2, 1, 3).reshape(bsz, t, d)
    h = h + o @ p["wo"] + p["bo"]
    x = _layer_norm(xp, h, p["ln2_g"], p["ln2_b"])
    return h + xp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def _mlp_layer(xp, h, p):
    return h + xp.tanh(h @ p["w"] + p["b"])


def _jax_loss(model, layout, params, batch):
    import jax
    import jax.numpy as jnp

    x, y = batch
    g = params["globals"]
    if model == "mlp":
        def layer(h, p):
            return _mlp_layer(jnp, h, p)

        h = x
    else:
        def layer(h, p):
            return _tf_layer(jnp, lambda a: jax.nn.softmax(a, axis=-1), h, p)

        h = g["embed"][x] + g["pos"]
    if layout == "scan":
        h, _ = jax.lax.scan(lambda h, p: (layer(h, p), None), h, params["layers"])
    else:
        for p in params["layers"]:
            h = layer(h, p)
    if model == "mlp":
        return jnp.mean((h - y) ** 2)
    logits = _layer_norm(jnp, h, g["lnf_g"], g["lnf_b"]) @ g["head_w"] + g["head_b"]
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[..., None], axis=-1))


def _torch_loss(model, layout, params, batch):
    import torch

    x, y = batch
    g = params["globals"]
    n = _layers(model)
    layers = (
        [{k: v[i] for k, v in params["layers"].items()} for i in range(n)]
        if layout == "scan" else params["layers"]
    )  # fmt: skip
    if model == "mlp":
        h = x
        for p in layers:
            h = _mlp_layer(torch, h, p)
        return torch.mean((h - y) ** 2)

    h = g["embed"][x] + g["pos"]
    for p in layers:
        h = _torch_tf_layer(h, p)
    logits = _torch_layer_norm(h, g["lnf_g"], g["lnf_b"]) @ g["head_w"] + g["head_b"]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _torch_layer_norm(x, g, b):
    import torch

    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * g + b


def _torch_tf_layer(h, p):
    import torch

    bsz, t, d = h.shape
    nh = TF["heads"]
    x = _torch_layer_norm(h, p["ln1_g"], p["ln1_b"])

    def heads(w, b):
        return (x @ w + b).reshape(bsz, t, nh, d // nh).permute(0, 2, 1, 3)

    q, k, v = heads(p["wq"], p["bq"]), heads(p["wk"], p["bk"]), heads(p["wv"], p["bv"])
    att = (q @ k.transpose(-1, -2)) / float(d // nh) ** 0.5
    mask = torch.tril(torch.ones(t, t)) > 0
    att = torch.softmax(torch.where(mask, att, torch.tensor(-1e9)), dim=-1)
    o = (att @ v).permute(0, 2, 1, 3).reshape(bsz, t, d)
    h = h + o @ p["wo"] + p["bo"]
    x = _torch_layer_norm(h, p["ln2_g"], p["ln2_b"])
    return h + torch.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


# --------------------------------------------------------------------------------------------
# Workers.
# --------------------------------------------------------------------------------------------


def _worker_jax(impl: str, model: str, layout: str, reps: int) -> dict:
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(ROOT))
    params = jax.tree_util.tree_map(jnp.asarray, make_params(model, layout))
    batch = tuple(jnp.asarray(b) for b in make_batch(model))
    leaves = len(jax.tree_util.tree_leaves(params))

    if impl == "nop":
        def step(p, s, b):
            loss, g = jax.value_and_grad(_jax_loss, argnums=2)(model, layout, p, b)
            return jax.tree_util.tree_map(lambda x, y: x - LR * y, p, g), s, loss

        state = ()
    else:
        if impl == "optx":
            import optx

            tx, apply_updates = optx.adam(LR), optx.apply_updates
        else:
            import optax

            tx, apply_updates = optax.adam(LR), optax.apply_updates

        def step(p, s, b):
            loss, g = jax.value_and_grad(_jax_loss, argnums=2)(model, layout, p, b)
            updates, s = tx.update(g, s, p)
            return apply_updates(p, updates), s, loss

        state = tx.init(params)

    def wrapped(p, s, b):
        return step(p, s, b)

    c0 = time.process_time()  # CPU time: far less sensitive to other load than wall time
    t0 = time.perf_counter()
    compiled = jax.jit(wrapped, donate_argnums=(0, 1)).lower(params, state, batch).compile()
    compile_s = time.perf_counter() - t0
    compile_cpu_s = time.process_time() - c0
    for _ in range(3):
        params, state, loss = compiled(params, state, batch)
    jax.block_until_ready(params)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        params, state, loss = compiled(params, state, batch)
        jax.block_until_ready((params, loss))
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times), "compile_s": compile_s,
            "compile_cpu_s": compile_cpu_s, "leaves": leaves,
            "loss": float(loss)}  # fmt: skip


def _worker_torch(impl: str, model: str, layout: str, reps: int) -> dict:
    import torch

    if os.environ.get("OPTX_BENCH_TORCH_THREADS"):
        torch.set_num_threads(int(os.environ["OPTX_BENCH_TORCH_THREADS"]))
    params = make_params(model, layout)
    tparams = {
        "globals": {k: torch.tensor(v, requires_grad=True) for k, v in params["globals"].items()},
        "layers": (
            {k: torch.tensor(v, requires_grad=True) for k, v in params["layers"].items()}
            if layout == "scan"
            else [{k: torch.tensor(v, requires_grad=True) for k, v in d.items()}
                  for d in params["layers"]]  # fmt: skip
        ),
    }
    flat = list(tparams["globals"].values())
    layers = tparams["layers"]
    flat += list(layers.values()) if layout == "scan" else [t for d in layers for t in d.values()]
    x, y = make_batch(model)
    batch = (torch.tensor(x), torch.tensor(y).long() if model == "transformer" else torch.tensor(y))
    opt = None
    if impl != "torch_nop":
        flags = {"fused": True} if impl == "torch_fused" else {"foreach": True}
        opt = torch.optim.Adam(flat, lr=LR, **flags)

    def one():
        for p in flat:
            p.grad = None
        loss = _torch_loss(model, layout, tparams, batch)
        loss.backward()
        if opt is not None:
            opt.step()
        else:
            with torch.no_grad():
                for p in flat:
                    p.sub_(p.grad, alpha=LR)
        return loss

    for _ in range(3):
        one()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        loss = one()
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times), "compile_s": None, "leaves": len(flat),
            "loss": float(loss), "threads": torch.get_num_threads()}  # fmt: skip


def _run_cell(impl, model, layout, reps, timeout) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, model, layout, "--reps", str(reps)]
    return run_worker(cmd, timeout)


def _table(results: list[dict]) -> str:
    lines = [
        "| model | layout | leaves | impl | step ms | vs optax | vs torch fused | "
        "optimizer share of step | compile s (wall / CPU) | CPU vs optax | "
        "optimizer share of compile CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells = {(r["model"], r["layout"], r["impl"]): r for r in results}

    def ratio(a, b):
        return f"{a / b:.2f}x" if a is not None and b else "-"

    def share(a, base):
        return f"{(a - base) / a:.0%}" if a is not None and base is not None and a else "-"

    for r in results:
        key = (r["model"], r["layout"])
        if "error" in r:
            lines.append(f"| {key[0]} | {key[1]} | - | {r['impl']} | error: {r['error'][:60]} "
                         "| | | | | | |")  # fmt: skip
            continue
        torch_side = r["impl"].startswith("torch")
        nop = cells.get(key + ("torch_nop" if torch_side else "nop",), {})
        oax = cells.get(key + ("optax",), {})
        fused = cells.get(key + ("torch_fused",), {})
        is_opt = r["impl"] not in ("nop", "torch_nop")
        comp = r.get("compile_cpu_s")
        wall_cpu = "-" if comp is None else f"{r['compile_s']:.2f} / {comp:.2f}"
        lines.append(
            f"| {key[0]} | {key[1]} | {r['leaves']} | {r['impl']} | {r['step_s'] * 1e3:.1f} | "
            f"{ratio(r['step_s'], oax.get('step_s')) if not torch_side else '-'} | "
            f"{ratio(r['step_s'], fused.get('step_s'))} | "
            f"{share(r['step_s'], nop.get('step_s')) if is_opt else '-'} | "
            f"{wall_cpu} | "
            f"{ratio(comp, oax.get('compile_cpu_s')) if comp is not None else '-'} | "
            f"{share(comp, nop.get('compile_cpu_s')) if is_opt and comp is not None else '-'} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for the torch cells (on a loaded machine "
                             "torch's OpenMP threads spin and its times turn to noise)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_step.json"))
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    reps = args.reps or (5 if args.quick else 15)
    if args.worker:
        impl, model, layout = args.worker
        fn = _worker_torch if impl.startswith("torch") else _worker_jax
        print("RESULT " + json.dumps(fn(impl, model, layout, reps)), flush=True)
        return

    if args.torch_threads:
        os.environ["OPTX_BENCH_TORCH_THREADS"] = str(args.torch_threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch_threads": args.torch_threads,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
        "reps": reps,
        "optimizer": f"Adam(lr={LR})",
        "transformer": TF,
        "mlp": MLP,
    }
    results: list[dict] = []
    for model in args.models.split(","):
        for layout in args.layouts.split(","):
            for impl in args.impls.split(","):
                r = _run_cell(impl, model, layout, reps, args.timeout)
                r.update(impl=impl, model=model, layout=layout)
                results.append(r)
                msg = (f"{r['step_s'] * 1e3:8.1f} ms  compile {r.get('compile_s') or 0:6.2f} s"
                       if "step_s" in r else r["error"])  # fmt: skip
                print(f"  {model:11s} {layout:4s} {impl:13s} {msg}", flush=True)
                meta["load_avg_now"] = os.getloadavg()
                out.write_text(json.dumps(
                    {"meta": meta, "results": results, "table": _table(results)}, indent=1))
    print()
    print(_table(results))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
