"""The Markdown tables of ``bench_step.py``: every cell, and issue 16's targets (CPU and GPU)
marked met or not, each ratio from one run."""

from __future__ import annotations

# Bytes an update must move per float32 parameter: torch's fused Adam reads p, g, m, v and
# writes p, m, v.
FLOOR_BYTES_PER_PARAM = 7 * 4


def _fmt_ratio(a, b) -> str:
    return f"{a / b:5.2f}x" if a is not None and b else "   - "


def _table(results: list[dict], bandwidth: float | None = None) -> str:
    """The Markdown table; with ``bandwidth`` (bytes/s) also each step's share of it, taking
    :data:`FLOOR_BYTES_PER_PARAM` bytes per parameter as what the step must move."""
    bw_head, bw_rule = (" of copy bandwidth |", "---|") if bandwidth else ("", "")
    lines = [
        "| optimizer | leaves | params | impl | step ms | vs torch fused | vs optax | "
        "compile s (wall / CPU) | peak / (p+g+state) |" + bw_head,
        "|---|---|---|---|---|---|---|---|---|" + bw_rule,
    ]
    cells = {(r["optimizer"], r["leaves"], r["impl"]): r for r in results}
    for r in results:
        ref = cells.get((r["optimizer"], r["leaves"], "torch_fused"), {})
        oax = cells.get((r["optimizer"], r["leaves"], "optax"), {})
        if "error" in r:
            error = r["error"].split(" | ")[-1][:80]  # the exception's own line
            lines.append(
                f"| {r['optimizer']} | {r['leaves']} | {r['params'] / 1e6:g}M | {r['impl']} | "
                f"error: {error} |  |  |  |  |" + (" |" if bandwidth else "")
            )
            continue
        comp = f"{r['compile_s']:.2f}" if r.get("compile_s") is not None else "-"
        if r.get("compile_cpu_s") is not None:
            comp += f" / {r['compile_cpu_s']:.2f}"
        mem = r["peak_bytes"] / r["theory_bytes"]
        bw = ""
        if bandwidth:
            bw = f" {FLOOR_BYTES_PER_PARAM * r['params'] / r['step_s'] / bandwidth:.0%} |"
        lines.append(
            f"| {r['optimizer']} | {r['leaves']} | {r['params'] / 1e6:g}M | {r['impl']} | "
            f"{r['step_s'] * 1e3:.1f} | {_fmt_ratio(r['step_s'], ref.get('step_s'))} | "
            f"{_fmt_ratio(r['step_s'], oax.get('step_s'))} | {comp} | "
            f"{mem:.2f} ({r['peak_method']}) |" + bw
        )
    return "\n".join(lines)


# Issue 16's targets: compile (CPU time) <= 1.1x optax, step <= 1.0x optax, adapter <= 1.1x.
TARGETS = {"compile": 1.1, "step": 1.0, "adapter": 1.1}


def targets_table(results: list[dict]) -> str:
    """Issue 16's targets per (optimizer, leaves), each ratio from this run with met or not:
    optx's compile CPU time and step against optax's, the adapter's step against optx's, and
    optx's step against torch ``fused=True`` beside them."""
    cells = {(r["optimizer"], r["leaves"], r["impl"]): r for r in results if "error" not in r}
    lines = [
        "| optimizer | leaves | compile CPU optx / optax | met (≤1.1) | step optx / optax | "
        "met (≤1.0) | adapter / optx step | met (≤1.1) | optx step / torch fused |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = dict.fromkeys((r["optimizer"], r["leaves"]) for r in results)
    for opt, leaves in keys:
        def get(impl, field, opt=opt, leaves=leaves):
            return cells.get((opt, leaves, impl), {}).get(field)

        def cell(a, b, target=None):
            if a is None or not b:
                return ["-"] if target is None else ["-", "-"]
            ratio = f"{a / b:.2f}"
            return [ratio] if target is None else [ratio, "yes" if a / b <= target else "no"]

        row = [opt, str(leaves)]
        cx, cq = get("optx", "compile_cpu_s"), get("optax", "compile_cpu_s")
        row += cell(cx, cq, TARGETS["compile"])
        if cx is not None and cq:
            row[2] += f" ({cx:.2f} / {cq:.2f} s)"
        sx, sq = get("optx", "step_s"), get("optax", "step_s")
        row += cell(sx, sq, TARGETS["step"])
        if sx is not None and sq:
            row[4] += f" ({sx * 1e3:.1f} / {sq * 1e3:.1f} ms)"
        row += cell(get("optx_optim", "step_s"), sx, TARGETS["adapter"])
        row += cell(sx, get("torch_fused", "step_s"))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# Issue 16's bar on the GPU: at least 90 % of the measured copy bandwidth (moving
# FLOOR_BYTES_PER_PARAM bytes per parameter), and at most torch fused's step time.
GPU_TARGETS = {"bandwidth": 0.9, "torch_fused": 1.0}


def gpu_targets_table(results: list[dict], bandwidth: float) -> str:
    """Issue 16's GPU bar per (leaves, JAX implementation), met or not, from this run."""
    cells = {(r["optimizer"], r["leaves"], r["impl"]): r for r in results if "error" not in r}
    lines = [
        "| optimizer | leaves | impl | step ms | of copy bandwidth | met (≥90 %) | "
        "step / torch fused | met (≤1.0) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["impl"].startswith("torch") or "error" in r:
            continue
        share = FLOOR_BYTES_PER_PARAM * r["params"] / r["step_s"] / bandwidth
        fused = cells.get((r["optimizer"], r["leaves"], "torch_fused"), {}).get("step_s")
        ratio = r["step_s"] / fused if fused else None
        lines.append(
            f"| {r['optimizer']} | {r['leaves']} | {r['impl']} | {r['step_s'] * 1e3:.2f} | "
            f"{share:.0%} | {'yes' if share >= GPU_TARGETS['bandwidth'] else 'no'} | "
            + (f"{ratio:.2f} | {'yes' if ratio <= GPU_TARGETS['torch_fused'] else 'no'} |"
               if ratio is not None else "- | - |")
        )
    return "\n".join(lines)
