"""The schedule gallery's entries and torch's side of it, without Sphinx.

The gallery (``docs/gallery.md``, drawn by ``optx_figures``) shows every optx schedule over the
values torch's scheduler gives. torch's values are committed in ``docs/_data/torch_schedules.json``
so that building the site needs no torch; ``python docs/regenerate_torch_curves.py`` (with torch
installed) rewrites the file after a change to :data:`GALLERY`, and
``tests/test_gallery_data.py`` checks that the file still equals what torch computes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "_data" / "torch_schedules.json"
LR = 0.1


@dataclass
class Entry:
    name: str  # the optx.schedules name
    steps: int
    optx_code: str  # evaluated with optx, jnp in scope
    torch_code: str  # evaluated with torch, opt (an SGD over one tensor, lr=LR) in scope
    read: str = "lr"  # the param-group key the torch curve reads
    note: str = ""


GALLERY = [
    Entry("step_lr", 60, "S.step_lr(0.1, step_size=10, gamma=0.5)",
          "L.StepLR(opt, step_size=10, gamma=0.5)"),
    Entry("multi_step_lr", 60, "S.multi_step_lr(0.1, milestones=[15, 30, 45], gamma=0.5)",
          "L.MultiStepLR(opt, milestones=[15, 30, 45], gamma=0.5)"),
    Entry("constant_lr", 40, "S.constant_lr(0.1, factor=1/3, total_iters=20)",
          "L.ConstantLR(opt, factor=1/3, total_iters=20)"),
    Entry("linear_lr", 40, "S.linear_lr(0.1, start_factor=0.1, end_factor=1.0, total_iters=30)",
          "L.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=30)"),
    Entry("exponential_lr", 60, "S.exponential_lr(0.1, gamma=0.95)",
          "L.ExponentialLR(opt, gamma=0.95)"),
    Entry("polynomial_lr", 50, "S.polynomial_lr(0.1, total_iters=40, power=2.0)",
          "L.PolynomialLR(opt, total_iters=40, power=2.0)"),
    Entry("cosine_annealing_lr", 90, "S.cosine_annealing_lr(0.1, T_max=30, eta_min=0.01)",
          "L.CosineAnnealingLR(opt, T_max=30, eta_min=0.01)",
          note="As in torch, the lr rises again after `T_max` (period `2 T_max`)."),
    Entry("cosine_annealing_warm_restarts", 70,
          "S.cosine_annealing_warm_restarts(0.1, T_0=10, T_mult=2, eta_min=0.001)",
          "L.CosineAnnealingWarmRestarts(opt, T_0=10, T_mult=2, eta_min=0.001)"),
    Entry("cyclic_lr", 80, "S.cyclic_lr(0.01, 0.1, step_size_up=10, mode='triangular2')",
          "L.CyclicLR(opt, 0.01, 0.1, step_size_up=10, mode='triangular2')"),
    Entry("cyclic_momentum", 80,
          "S.cyclic_momentum(0.01, 0.1, step_size_up=10, mode='triangular2',"
          " base_momentum=0.8, max_momentum=0.9)",
          "L.CyclicLR(opt, 0.01, 0.1, step_size_up=10, mode='triangular2',"
          " base_momentum=0.8, max_momentum=0.9)", read="momentum"),
    Entry("one_cycle_lr", 100, "S.one_cycle_lr(0.1, total_steps=100)",
          "L.OneCycleLR(opt, max_lr=0.1, total_steps=100)"),
    Entry("one_cycle_momentum", 100, "S.one_cycle_momentum(0.1, total_steps=100)",
          "L.OneCycleLR(opt, max_lr=0.1, total_steps=100)", read="momentum"),
    Entry("lambda_lr", 60, "S.lambda_lr(0.1, lambda e: 1.0 / (1.0 + 0.1 * e))",
          "L.LambdaLR(opt, lambda e: 1.0 / (1.0 + 0.1 * e))"),
    Entry("multiplicative_lr", 60, "S.multiplicative_lr(0.1, lambda e: 0.95)",
          "L.MultiplicativeLR(opt, lambda e: 0.95)"),
    Entry("sequential_lr", 60,
          "S.sequential_lr([S.linear_lr(0.1, start_factor=0.1, total_iters=10),"
          " S.cosine_annealing_lr(0.1, T_max=50)], milestones=[10])",
          "L.SequentialLR(opt, [L.LinearLR(opt, start_factor=0.1, total_iters=10),"
          " L.CosineAnnealingLR(opt, T_max=50)], milestones=[10])",
          note="Warm-up then cosine: the usual transformer schedule."),
    Entry("chained_scheduler", 60,
          "S.chained_scheduler([S.constant_lr(0.1, factor=0.5, total_iters=10),"
          " S.exponential_lr(0.1, gamma=0.97)])",
          "L.ChainedScheduler([L.ConstantLR(opt, factor=0.5, total_iters=10),"
          " L.ExponentialLR(opt, gamma=0.97)])"),
    Entry("swalr", 40, "S.swalr(0.1, swa_lr=0.02, anneal_epochs=15)",
          "swa_utils.SWALR(opt, swa_lr=0.02, anneal_epochs=15)"),
]

NOT_SCHEDULES = {"TorchSchedule"}  # public names of optx.schedules that are not schedules

# The plateau scheduler depends on a metric; the gallery feeds both the same made-up metric.
PLATEAU_OPTX = "optx.reduce_lr_on_plateau(factor=0.5, patience=3)"
PLATEAU_TORCH = "L.ReduceLROnPlateau(opt, factor=0.5, patience=3)"
PLATEAU_EPOCHS = 40


def metric(epochs: int) -> list[float]:
    import numpy as np

    rng = np.random.default_rng(0)
    e = np.arange(epochs)
    return [float(m) for m in 1.0 / (1.0 + e / 4.0) + 0.02 * rng.standard_normal(epochs)]


def _torch_curve(code: str, steps: int, read: str) -> list[float]:
    import torch
    from torch.optim import lr_scheduler as L
    from torch.optim import swa_utils

    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=LR, momentum=0.9)
    sched = eval(code, {"L": L, "swa_utils": swa_utils, "opt": opt})
    values = [opt.param_groups[0][read]]
    for _ in range(steps - 1):
        opt.step()
        sched.step()
        values.append(opt.param_groups[0][read])
    return [float(v) for v in values]


def _torch_plateau(epochs: int) -> list[float]:
    import torch
    from torch.optim import lr_scheduler as L

    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=LR)
    sched = eval(PLATEAU_TORCH, {"L": L, "opt": opt})
    values = []
    for m in metric(epochs):
        opt.step()
        sched.step(m)
        values.append(float(opt.param_groups[0]["lr"]))
    return values


def _key(entry: Entry) -> dict[str, Any]:
    """What an entry's torch values depend on: a change to any of it needs new values."""
    return {k: v for k, v in asdict(entry).items() if k in ("torch_code", "steps", "read")}


def torch_curves() -> dict[str, Any]:
    """torch's side of every gallery entry, computed now (needs torch)."""
    import torch

    out: dict[str, Any] = {"torch": torch.__version__.split("+")[0], "lr": LR, "schedules": {}}
    for e in GALLERY:
        out["schedules"][e.name] = {**_key(e), "values": _torch_curve(e.torch_code, e.steps,
                                                                        e.read)}
    out["schedules"]["reduce_lr_on_plateau"] = {
        "torch_code": PLATEAU_TORCH, "steps": PLATEAU_EPOCHS, "read": "lr",
        "values": _torch_plateau(PLATEAU_EPOCHS)}
    return out


def dump(data: dict[str, Any]) -> str:
    """The file's text: one line per schedule, so a regenerated file diffs by schedule."""
    head = {k: v for k, v in data.items() if k != "schedules"}
    lines = [json.dumps(head)[:-1] + ', "schedules": {']
    items = list(data["schedules"].items())
    for i, (name, entry) in enumerate(items):
        lines.append(f" {json.dumps(name)}: {json.dumps(entry)}" + ("," if i < len(items) - 1
                                                                   else ""))
    return "\n".join(lines) + "\n}}\n"


def load() -> dict[str, Any]:
    """The committed values, checked against :data:`GALLERY`: ``{name: [values]}``.

    Raises ``ValueError`` naming the entries whose torch code or length changed since the file
    was written (regenerate it).
    """
    data = json.loads(DATA.read_text())
    stored = data["schedules"]
    wanted = {e.name: _key(e) for e in GALLERY}
    wanted["reduce_lr_on_plateau"] = {"torch_code": PLATEAU_TORCH, "steps": PLATEAU_EPOCHS,
                                      "read": "lr"}
    stale = sorted(n for n, key in wanted.items()
                   if n not in stored or {k: stored[n][k] for k in key} != key)
    if stale:
        raise ValueError(f"{DATA.name} is out of date for {', '.join(stale)}: run "
                         "python docs/regenerate_torch_curves.py (needs torch)")
    return {n: stored[n]["values"] for n in wanted}
