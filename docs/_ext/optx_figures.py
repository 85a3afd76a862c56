"""Build-time figures and tables: the schedule gallery and the benchmark page.

At ``builder-inited`` this writes PNGs into ``generated/figures/`` and Markdown fragments into
``generated/fragments/`` (included by ``gallery.md`` and ``performance.md``):

- every optx schedule evaluated in this process (float64) next to the values of the torch
  scheduler it reproduces, read from ``docs/_data/torch_schedules.json`` (``schedule_gallery``:
  the entries, and the script that recomputes the file with torch), with the largest relative
  difference printed; the build needs no torch;
- the benchmark tables and ratio plots, read from ``benchmarks/results/*.json``;
- copies of ``notebooks/*.ipynb`` into ``docs/notebooks/``, rendered without execution.

A schedule in ``optx.schedules.__all__`` without a gallery entry, or an entry whose torch values
are missing or stale in the JSON file, fails the build.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from schedule_gallery import (
    GALLERY,
    LR,
    NOT_SCHEDULES,
    PLATEAU_EPOCHS,
    PLATEAU_OPTX,
    PLATEAU_TORCH,
    load,
    metric,
)
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _plateau_curve(epochs: int) -> list[float]:
    """optx's side of the plateau entry: the lr the scale gives, epoch by epoch."""
    import jax.numpy as jnp

    import optx

    tx = eval(PLATEAU_OPTX, {"optx": optx})
    params = jnp.zeros(1)
    state = tx.init(params)
    ours = []
    for m in metric(epochs):
        _, state = tx.update(jnp.zeros(1), state, params, value=jnp.asarray(m))
        ours.append(LR * float(state.scale))
    return ours


def _show(code: str) -> str:
    """The gallery's code as a user writes it, with full module paths."""
    return (code.replace("S.", "optx.schedules.").replace("L.", "torch.optim.lr_scheduler.")
            .replace("swa_utils.", "torch.optim.swa_utils."))


def _rel_err(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(y), 1e-300) for x, y in zip(a, b))


def _plot(path: Path, title: str, ours: list[float], theirs: list[float], ylabel: str,
          xlabel: str = "scheduler.step() calls") -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 2.6), dpi=100)
    ax.plot(theirs, color="#ee4c2c", linewidth=4, alpha=0.45, label="torch 2.13")
    ax.plot(ours, color="#1f4e99", linewidth=1.2, marker=".", markersize=3, label="optx")
    ax.set_title(title, fontsize=10, family="monospace")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def gallery(figures: Path) -> str:
    import jax

    jax.config.update("jax_enable_x64", True)  # parity to rounding, as the tests check it
    from optx import schedules as S

    text = []
    covered = {e.name for e in GALLERY}
    for name in sorted(set(S.__all__) - NOT_SCHEDULES - covered):
        logger.warning("optx.schedules.%s has no entry in the schedule gallery "
                       "(docs/_ext/schedule_gallery.py GALLERY)", name)
    try:
        torch_values = load()
    except (OSError, ValueError, KeyError) as e:
        logger.warning("schedule gallery: %s", e)
        return ""
    for e in GALLERY:
        schedule = eval(e.optx_code, {"S": S})
        ours = [float(schedule(t)) for t in range(e.steps)]
        theirs = torch_values[e.name]
        err = _rel_err(ours, theirs)
        _plot(figures / f"schedule_{e.name}.png", e.name, ours, theirs, e.read)
        text.append(
            f"(gallery-{e.name.replace('_', '-')})=\n## `{e.name}`\n\n"
            f"{e.note + chr(10) + chr(10) if e.note else ''}"
            f"```python\n{_show(e.optx_code)}\n{_show(e.torch_code)}\n```\n\n"
            f"![{e.name}: optx against torch](/generated/figures/schedule_{e.name}.png)\n\n"
            f"Largest relative difference over {e.steps} values: {err:.1e}. "
            f"See {{func}}`optx.schedules.{e.name}`.\n"
        )
    ours, theirs = _plateau_curve(PLATEAU_EPOCHS), torch_values["reduce_lr_on_plateau"]
    err = _rel_err(ours, theirs)
    _plot(figures / "schedule_reduce_lr_on_plateau.png", "reduce_lr_on_plateau", ours, theirs,
          "lr", xlabel="epochs (one metric value each)")
    text.append(
        "(gallery-reduce-lr-on-plateau)=\n## `reduce_lr_on_plateau`\n\n"
        "A transformation, not a schedule: it scales the updates by a factor that falls when a "
        "metric stops improving. Both sides see the same noisy, flattening metric.\n\n"
        f"```python\n{PLATEAU_OPTX}   # lr * state.scale\n"
        f"{_show(PLATEAU_TORCH)}\n```\n\n"
        "![reduce_lr_on_plateau: optx against torch]"
        "(/generated/figures/schedule_reduce_lr_on_plateau.png)\n\n"
        f"Largest relative difference over {PLATEAU_EPOCHS} epochs: {err:.1e}. "
        "See {func}`optx.reduce_lr_on_plateau`.\n"
    )
    return "\n".join(text)


# ---------------------------------------------------------------------------- benchmarks
IMPL_LABEL = {"optx": "optx", "optx_optim": "optx.optim", "optax": "optax",
              "torch_single": "torch (single)", "torch_foreach": "torch (foreach)",
              "torch_fused": "torch (fused)"}


def _cells(results: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, dict[str, Any]]]:
    cells: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in results:
        cells.setdefault((r["optimizer"], r["leaves"]), {})[r["impl"]] = r
    return cells


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:g} M"


def benchmarks(root: Path, figures: Path) -> str:
    import matplotlib.pyplot as plt

    path = root / "benchmarks" / "results" / "latest.json"
    run = json.loads(path.read_text())
    meta, cells = run.get("meta", {}), _cells(run["results"])
    keys = sorted(cells, key=lambda k: (k[0], k[1]))

    def ratio(cell: dict[str, dict[str, Any]], a: str, b: str, field: str = "step_s") -> float:
        if a in cell and b in cell and cell[a].get(field) and cell[b].get(field):
            return cell[a][field] / cell[b][field]
        return math.nan

    # Ratio plot: step time against optax and torch fused, compile time against optax.
    labels = [f"{o} {n}" for o, n in keys]
    series = {
        "step: optx / optax": [ratio(cells[k], "optx", "optax") for k in keys],
        "step: optx / torch fused": [ratio(cells[k], "optx", "torch_fused") for k in keys],
        "step: optx.optim / optx": [ratio(cells[k], "optx_optim", "optx") for k in keys],
        "compile: optx / optax": [ratio(cells[k], "optx", "optax", "compile_s") for k in keys],
    }
    fig, axes = plt.subplots(2, 1, figsize=(11, 7.5), dpi=100, sharex=True)
    width = 0.27
    for ax, names in ((axes[0], list(series)[:3]), (axes[1], list(series)[3:])):
        for i, s in enumerate(names):
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(keys))]
            ax.bar(xs, series[s], width=width, label=s)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(keys)), labels, fontsize=7, rotation=45, ha="right")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_ylabel("ratio (lower is faster for optx)", fontsize=8)
        ax.legend(fontsize=7, frameon=False)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title("step time", fontsize=10)
    axes[1].set_title("compile time", fontsize=10)
    axes[1].set_xlabel("optimizer, leaves", fontsize=8)
    fig.tight_layout()
    fig.savefig(figures / "bench_ratios.png")
    plt.close(fig)

    load_avg = meta.get("load_avg_start")
    load = f", load average {load_avg[0]:.1f} at the start" if load_avg else ""

    def fmt(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.2f}x"

    lines = [
        f"Run {meta.get('time_utc', '?')}, {meta.get('cpus', '?')} CPUs{load}, "
        f"median of {meta.get('reps', '?')} steps, float32, params and state donated "
        f"(`benchmarks/results/latest.json`).\n",
        "![Step-time and compile-time ratios of optx against optax and torch]"
        "(/generated/figures/bench_ratios.png)\n",
        "### Ratios\n",
        "| optimizer | leaves | params | optx / optax | optx / torch fused | optx.optim / optx "
        "| compile optx / optax |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in keys:
        c = cells[k]
        anyr = next(iter(c.values()))
        lines.append(
            f"| {k[0]} | {k[1]} | {_fmt_params(anyr['params'])} "
            f"| {fmt(ratio(c, 'optx', 'optax'))} | {fmt(ratio(c, 'optx', 'torch_fused'))} "
            f"| {fmt(ratio(c, 'optx_optim', 'optx'))} "
            f"| {fmt(ratio(c, 'optx', 'optax', 'compile_s'))} |")
    lines += ["", "### Every measurement\n",
              "| optimizer | leaves | impl | step ms | compile s | peak / (p+g+state) |",
              "|---|---|---|---|---|---|"]
    failed: list[str] = []
    for k in keys:
        for impl in IMPL_LABEL:
            r = cells[k].get(impl)
            if r is None:
                continue
            if r.get("step_s") is None:  # a cell that failed: the JSON keeps its error
                failed.append(f"{k[0]}, {k[1]} leaves, {IMPL_LABEL[impl]}: "
                              f"`{r.get('error', 'no result').split(' | ')[-1]}`")
                continue
            comp = f"{r['compile_s']:.2f}" if r.get("compile_s") is not None else "-"
            peak = (f"{r['peak_bytes'] / r['theory_bytes']:.2f} ({r.get('peak_method', '?')})"
                    if r.get("peak_bytes") and r.get("theory_bytes") else "-")
            lines.append(f"| {k[0]} | {k[1]} | {IMPL_LABEL[impl]} | {1e3 * r['step_s']:.1f} "
                         f"| {comp} | {peak} |")
    if failed:
        lines += ["", "Cells without a measurement (the error the run recorded):", ""]
        lines += [f"- {f}" for f in failed]
    floor_path = root / "benchmarks" / "results" / "compile_floor.json"
    if floor_path.exists():
        floor = json.loads(floor_path.read_text())
        leaves = sorted({r["leaves"] for r in floor})
        programs = list(dict.fromkeys(r["program"] for r in floor))
        by = {(r["program"], r["leaves"]): r["compile_s"] for r in floor}
        lines += ["", "(compile-floor)=", "### The compiler's floor\n",
                  "Tracing, lowering and compiling, a fresh process per program "
                  "(`benchmarks/results/compile_floor.json`):\n",
                  "| program | " + " | ".join(f"{n} leaves" for n in leaves) + " |",
                  "|---|" + "---|" * len(leaves)]
        for p in programs:
            lines.append(f"| `{p}` | " + " | ".join(
                f"{by[(p, n)]:.2f} s" if (p, n) in by else "-" for n in leaves) + " |")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(app: Sphinx) -> None:
    import matplotlib

    matplotlib.use("Agg")
    src = Path(app.srcdir)
    figures = src / "generated" / "figures"
    fragments = src / "generated" / "fragments"
    figures.mkdir(parents=True, exist_ok=True)
    fragments.mkdir(parents=True, exist_ok=True)
    _write(fragments / "gallery.md", gallery(figures))
    # The notebooks are rendered from their committed outputs (nb_execution_mode = "off").
    notebooks = src / "notebooks"
    notebooks.mkdir(exist_ok=True)
    for nb in sorted((src.parent / "notebooks").glob("*.ipynb")):
        _write(notebooks / nb.name, nb.read_text())
    _write(fragments / "benchmarks.md", benchmarks(src.parent, figures))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
