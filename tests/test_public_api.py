"""The public surface: every name in the contract (API.md) exists with its fixed signature,
``optx.__all__`` is stable, and every public name is documented.

API.md is read from ``../shared/API.md`` beside the repository (where CI has it), else from the
copy in ``tests/data/API.md``.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch.optim.lr_scheduler as torch_lr_scheduler

import optx

REPO = Path(__file__).resolve().parent.parent


def _api_md() -> str:
    for path in (REPO.parent / "shared" / "API.md", REPO / "tests" / "data" / "API.md"):
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError("API.md: neither ../shared/API.md nor tests/data/API.md")


API = _api_md()


def _section(number: int) -> str:
    start = API.index(f"## {number}.")
    end = API.find("\n## ", start + 1)
    return API[start:] if end < 0 else API[start:end]


# Section 2's table: `name(args)` | TorchClass
OPTIMIZERS: dict[str, tuple[str, str]] = {
    m.group(1): (m.group(2), m.group(3))
    for m in re.finditer(r"^\| `(\w+)\((.*)\)` \| (\w+)", _section(2), re.MULTILINE)
}

# Section 3: `name(args)` in the prose; `optx.name(...)` is top level, the rest optx.schedules.
_NOT_NAMES = {"schedule", "get_last_lr", "update"}
SCHEDULES: dict[str, str] = {}
TOP_LEVEL: dict[str, str] = {}
for _m in re.finditer(r"`(optx\.)?(\w+)\(([^`]*)\)`", _section(3)):
    if _m.group(2) not in _NOT_NAMES:
        (TOP_LEVEL if _m.group(1) else SCHEDULES)[_m.group(2)] = _m.group(3)

# Section 4: optx.optim mirrors torch.optim; lr_scheduler has "all 15 torch schedulers".
OPTIM_CLASSES = sorted(cls for _, cls in OPTIMIZERS.values())
LR_SCHEDULER_CLASSES = sorted(
    name
    for name, obj in vars(torch_lr_scheduler).items()
    if isinstance(obj, type)
    and issubclass(obj, (torch_lr_scheduler.LRScheduler, torch_lr_scheduler.ReduceLROnPlateau))
    and not name.startswith("_")
    and name != "LRScheduler"
)
SWA_UTILS = ["AveragedModel", "SWALR", "update_bn"]

ALL_SNAPSHOT = sorted([
    "adamw_schedule_free",
    "radam_schedule_free",
    "schedule_free_eval_params",
    "sgd_schedule_free",
    "EmptyState",
    "GradientTransformation",
    "LbfgsState",
    "OptimizerState",
    "ReduceLROnPlateauState",
    "Schedule",
    "accumulate_gradients",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adam_4bit",
    "adam_8bit",
    "adam_fp8",
    "adamax",
    "adamw",
    "adamw_4bit",
    "adamw_8bit",
    "adamw_fp8",
    "apply_if_finite",
    "apply_updates",
    "asgd",
    "chain",
    "clip_by_total_norm",
    "clip_grad_norm",
    "clip_grad_value",
    "get_hyperparams",
    "identity",
    "lbfgs",
    "muon",
    "nadam",
    "quantized",
    "radam",
    "reduce_lr_on_plateau",
    "rmsprop",
    "rprop",
    "schedules",
    "set_hyperparams",
    "sgd",
    "sparse_adam",
    "total_norm",
])


def test_api_md_parsed_completely():
    # Guards the parser: a reworded API.md must not silently shrink what is checked.
    assert len(OPTIMIZERS) == 15
    assert len(SCHEDULES) == 17  # 15 lr schedules + one_cycle_momentum + cyclic_momentum
    assert set(TOP_LEVEL) == {"reduce_lr_on_plateau"}
    assert len(LR_SCHEDULER_CLASSES) == 15


def _expected_params(args: str) -> list[inspect.Parameter]:
    """API.md's argument list as inspect.Parameters (defaults evaluated: ``1/3`` is a float)."""
    fn = ast.parse(f"def f({args}): pass").body[0]
    assert isinstance(fn, ast.FunctionDef)
    a = fn.args

    def default(node: ast.expr | None) -> Any:
        if node is None:
            return inspect.Parameter.empty
        return eval(compile(ast.Expression(node), "API.md", "eval"), {})

    positional = [None] * (len(a.args) - len(a.defaults)) + list(a.defaults)
    params = [
        inspect.Parameter(arg.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default(d))
        for arg, d in zip(a.args, positional, strict=True)
    ]
    params += [
        inspect.Parameter(arg.arg, inspect.Parameter.KEYWORD_ONLY, default=default(d))
        for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)
    ]
    return params


def _check_signature(fn: Any, args: str) -> None:
    """Same names, same order, same defaults, same positional/keyword-only split as API.md.

    Extra parameters (torch's ignored ``foreach``, ``fused``, ... switches) need defaults.
    """
    want = _expected_params(args)
    have = inspect.signature(fn).parameters
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    want_positional = [p.name for p in want if p.kind is positional]
    # In torch's order; torch's own switches may sit in between (ASGD's foreach before maximize).
    have_positional = [n for n, p in have.items() if p.kind is positional and n in want_positional]
    assert have_positional == want_positional
    for p in want:
        assert p.name in have, f"missing argument {p.name!r}"
        got = have[p.name]
        assert got.kind is p.kind, f"{p.name!r} is {got.kind}, API.md has {p.kind}"
        assert got.default == p.default, f"{p.name!r} defaults to {got.default!r}, not {p.default}"
    for name, p in have.items():
        if name not in {q.name for q in want}:
            assert p.default is not inspect.Parameter.empty, f"extra required argument {name!r}"


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_signature(name):
    assert hasattr(optx, name), f"optx.{name} is missing"
    _check_signature(getattr(optx, name), OPTIMIZERS[name][0])


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_signature(name):
    assert hasattr(optx.schedules, name), f"optx.schedules.{name} is missing"
    if SCHEDULES[name].strip() != "...":
        _check_signature(getattr(optx.schedules, name), SCHEDULES[name])


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_top_level_signature(name):
    assert hasattr(optx, name), f"optx.{name} is missing"
    _check_signature(getattr(optx, name), TOP_LEVEL[name])


@pytest.mark.parametrize("name", OPTIM_CLASSES)
def test_optim_class(name):
    import optx.optim

    cls = getattr(optx.optim, name, None)
    assert isinstance(cls, type), f"optx.optim.{name} is missing"
    for method in ("step", "zero_grad", "state_dict", "load_state_dict", "add_param_group"):
        assert callable(getattr(cls, method, None)), f"optx.optim.{name}.{method} is missing"


@pytest.mark.parametrize("name", LR_SCHEDULER_CLASSES)
def test_lr_scheduler_class(name):
    import optx.optim.lr_scheduler

    cls = getattr(optx.optim.lr_scheduler, name, None)
    assert isinstance(cls, type), f"optx.optim.lr_scheduler.{name} is missing"
    for method in ("step", "get_last_lr", "state_dict", "load_state_dict"):
        assert callable(getattr(cls, method, None)), f"{name}.{method} is missing"


@pytest.mark.parametrize("name", SWA_UTILS)
def test_swa_utils(name):
    import optx.optim.swa_utils

    obj = getattr(optx.optim.swa_utils, name, None)
    assert isinstance(obj, type) or inspect.isfunction(obj), f"swa_utils.{name} is missing"


def test_optim_reachable_after_import_optx():
    # API.md's example uses optx.optim.AdamW right after `import optx`; a fresh interpreter,
    # since other tests here import optx.optim themselves.
    code = "import optx; optx.optim.AdamW; optx.optim.lr_scheduler.StepLR; optx.schedules.step_lr"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert isinstance(optx.schedules, types.ModuleType)


def test_sharding_reachable_after_import_optx():
    # LBFGS's docstring tells users to write optx.sharding.mean_across after `import optx`.
    code = "import optx; optx.sharding.mean_across"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_all_is_stable():
    assert len(optx.__all__) == len(set(optx.__all__))
    assert sorted(optx.__all__) == ALL_SNAPSHOT
    for name in optx.__all__:
        assert hasattr(optx, name), name


def _public_objects():
    import optx.optim
    import optx.optim.lr_scheduler
    import optx.optim.swa_utils

    out = [(f"optx.{n}", getattr(optx, n)) for n in optx.__all__ if hasattr(optx, n)]
    out += [(f"optx.schedules.{n}", getattr(optx.schedules, n))
            for n in SCHEDULES if hasattr(optx.schedules, n)]
    out += [(f"optx.optim.{n}", getattr(optx.optim, n))
            for n in OPTIM_CLASSES if hasattr(optx.optim, n)]
    out += [(f"optx.optim.lr_scheduler.{n}", getattr(optx.optim.lr_scheduler, n))
            for n in LR_SCHEDULER_CLASSES if hasattr(optx.optim.lr_scheduler, n)]
    out += [(f"optx.optim.swa_utils.{n}", getattr(optx.optim.swa_utils, n))
            for n in SWA_UTILS if hasattr(optx.optim.swa_utils, n)]
    out += [("optx", optx), ("optx.schedules", optx.schedules), ("optx.optim", optx.optim),
            ("optx.optim.lr_scheduler", optx.optim.lr_scheduler),
            ("optx.optim.swa_utils", optx.optim.swa_utils)]
    return out


def test_every_public_name_has_a_docstring():
    missing = []
    for qualname, obj in _public_objects():
        if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismodule(obj)):
            continue  # type aliases (Schedule) are documented in their module
        doc = obj.__doc__ or ""
        short = qualname.rsplit(".", 1)[-1]
        # A NamedTuple without a docstring gets an automatic one: "Name(field, ...)".
        if not doc.strip() or doc.startswith(f"{short}("):
            missing.append(qualname)
    assert not missing, f"public names without a docstring: {missing}"
