"""Real PyTorch training code ports to optx by renaming (issues 15 and 27).

``tests/porting/`` holds two shrunk official PyTorch examples and their optx ports: the MNIST CNN
(Adadelta + StepLR, generated 8x8 digits) and the time-sequence LSTM (LBFGS with a closure, sine
waves); and a Hugging Face-style fine-tuning script: AdamW with no-decay param groups declared
by name, warmup ``LambdaLR``, gradient accumulation, ``clip_grad_norm_``, a resume from a torch
checkpoint saved without names, and an unfreeze by ``add_param_group``. Each port starts from
the torch model's initial weights; in float64 the two runs' logged
values (losses, test losses, learning rates) agree to 1e-10 relative, and outside the model block
each port is its torch script with the line rewrites of ``porting.renames.RENAMES``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from porting import renames

PORTING = Path(__file__).resolve().parent / "porting"
SCRIPTS = ("mnist", "sequence", "finetune")


def _source(name: str, side: str) -> str:
    return (PORTING / f"{name}_{side}.py").read_text()


@pytest.fixture
def torch_float64():
    """float64 for torch (the scripts' float64 mode), one thread, both restored afterwards."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)  # tiny ops: threads only add contention
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def _run(module_name: str, argv: list[str]) -> np.ndarray:
    module = importlib.import_module(f"porting.{module_name}")
    with contextlib.redirect_stdout(io.StringIO()):
        return np.asarray(module.main(argv), dtype=np.float64)


def _finetune_checkpoint(tmp_path: Path) -> tuple[list[str], list[str]]:
    """An earlier torch run's checkpoint, its param groups built without names (as most
    scripts build them): a ``.pt`` for the torch script, the same as optx's file for the port."""
    from porting import finetune_torch as ft

    import optx.optim

    model = ft.Classifier()
    ft.freeze(model, "embed.")
    groups = [{**g, "params": [p for _, p in g["params"]]}
              for g in ft.param_groups(model, 0.1, "embed.")]
    opt = torch.optim.AdamW(groups, lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 3))
    x, y = ft.data(8, seed=0)
    for xb, yb in ft.batches(x, y, 4):
        opt.zero_grad()
        model.loss(xb, yb, 1.0).backward()
        opt.step()
        sched.step()
    checkpoint = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                  "scheduler": sched.state_dict()}
    assert "param_names" not in checkpoint["optimizer"]["param_groups"][0]
    torch.save(checkpoint, tmp_path / "ckpt.pt")

    def numpy(v):
        if isinstance(v, dict):
            return {k: numpy(x) for k, x in v.items()}
        if isinstance(v, list):
            return [numpy(x) for x in v]
        return v.numpy() if torch.is_tensor(v) else v

    optx.optim.save(numpy(checkpoint), tmp_path / "ckpt.optx")
    return ["--resume", str(tmp_path / "ckpt.pt")], ["--resume", str(tmp_path / "ckpt.optx")]


@pytest.mark.parametrize("name", SCRIPTS)
def test_port_matches_torch_float64(name, torch_float64, tmp_path):
    argv_torch, argv_optx = _finetune_checkpoint(tmp_path) if name == "finetune" else ([], [])
    expected = _run(f"{name}_torch", argv_torch)
    got = _run(f"{name}_optx", argv_optx)
    assert got.shape == expected.shape
    rel = np.abs(got - expected) / np.abs(expected)
    assert rel.max() <= 1e-10, (name, rel)
    # Training happened: the last training loss is below the first.
    last = {"mnist": -3, "sequence": -2, "finetune": -2}[name]
    assert expected[last] < expected[0]


@pytest.mark.parametrize("name", SCRIPTS)
def test_port_differs_only_by_renames(name):
    assert renames.unexplained(_source(name, "torch"), _source(name, "optx")) == []


def test_rename_check_catches_other_changes():
    torch_src, port_src = _source("sequence", "torch"), _source("sequence", "optx")
    changed = port_src.replace("lr=0.8", "lr=0.9")
    assert changed != port_src
    [problem] = renames.unexplained(torch_src, changed)
    assert "lr=0.9" in problem
    # The model block is free: a change there is not a porting difference.
    assert renames.unexplained(torch_src, port_src.replace("HIDDEN))", "HIDDEN)) ")) == []


def test_every_rename_is_used():
    """The list stays short and honest: each rule is needed by one of the scripts."""
    used = set().union(*(renames.used(_source(n, "torch"), _source(n, "optx")) for n in SCRIPTS))
    assert used == set(range(len(renames.RENAMES)))
    assert renames.markdown().count("\n") == len(renames.RENAMES) + 1


def test_readme_lists_the_renames():
    """README.md's porting table is ``renames.markdown()`` verbatim, so the renames the test
    allows are exactly the ones the README lists."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    begin = readme.index("<!-- renames:")
    start = readme.index("\n", begin) + 1
    end = readme.index("<!-- end renames -->", start)
    assert readme[start:end].strip() == renames.markdown()
