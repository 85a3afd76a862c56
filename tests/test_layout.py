"""Each optimizer's declared :class:`optx.layout.TorchLayout`: carried by its transformation,
true to torch, read by the adapter instead of optimizer names."""

from __future__ import annotations

import ast
import copy
import pkgutil
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
import pytest
import schedulefree
import torch

import optx
import optx.optimizers
from optx.layout import TorchLayout, TorchTransformation, layout_of

ROOT = Path(optx.__file__).resolve().parent
NAMES = sorted(
    m.name for m in pkgutil.iter_modules(optx.optimizers.__path__) if hasattr(optx, m.name)
)


@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_carries_its_layout(name):
    tx = getattr(optx, name)()
    layout = layout_of(tx)
    assert isinstance(tx, TorchTransformation) and isinstance(layout, TorchLayout)
    assert getattr(optx.optim, layout.torch_name)._constructor is getattr(optx, name)
    # the reference class: torch's, or schedulefree's for the schedule-free optimizers
    assert any(isinstance(getattr(m, layout.torch_name, None), type)
               for m in (torch.optim, schedulefree))


def test_transformation_is_still_optaxs_pair():
    params = {"w": jnp.ones(3)}
    tx = optx.sgd(lr=0.1, momentum=0.9)
    init, update = tx
    assert len(tx) == 2 and init is tx.init and update is tx.update
    chained = optax.chain(optax.clip_by_global_norm(1.0), tx)
    updates, _ = chained.update(params, chained.init(params), params)
    assert jnp.allclose(updates["w"], -0.1 * jnp.ones(3) / jnp.sqrt(3.0))
    # The layout survives the ways a NamedTuple gets rebuilt.
    leaves, treedef = jax.tree_util.tree_flatten(tx)
    for copied in (tx._replace(init=init), copy.copy(tx), copy.deepcopy(tx),
                   jax.tree_util.tree_unflatten(treedef, leaves)):
        assert copied.layout == tx.layout and tuple(copied) == tuple(tx)
    with pytest.raises(ValueError, match="unexpected field"):
        tx._replace(value=1)


def test_layout_of_other_transformations_is_none():
    assert layout_of(optax.adam(1e-3)) is None
    assert layout_of(optx.chain(optx.adam())) is None


def _optimizer_names_compared_outside_their_module() -> list[str]:
    """``x == "sgd"``, ``x in ("adam", ...)`` or a set literal of optimizer names, anywhere in
    optx except the named optimizer's own modules (``optx/optimizers/<name>*.py``)."""
    names = set(NAMES)
    names |= {f"optx.{n}" for n in NAMES}
    names |= {layout_of(getattr(optx, n)()).torch_name for n in NAMES}
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        own = {n for n in NAMES if path.parent.name == "optimizers"
               and (path.stem == n or path.stem.startswith(n + "_"))}
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
            elif isinstance(node, (ast.Set, ast.Dict)) or (
                isinstance(node, ast.Call) and getattr(node.func, "id", "") == "frozenset"
            ):
                operands = [node]
            else:
                continue
            for operand in operands:
                for const in ast.walk(operand):
                    value = getattr(const, "value", None)
                    if isinstance(const, ast.Constant) and value in names:
                        bare = str(value).removeprefix("optx.").lower()
                        if not any(bare == n.replace("_", "") or bare == n for n in own):
                            where = path.relative_to(ROOT.parent)
                            found.append(f"{where}:{const.lineno}: {value!r}")
    return found


def test_no_optimizer_name_is_compared_outside_its_module():
    found = _optimizer_names_compared_outside_their_module()
    assert not found, "optimizer names tested outside their modules:\n" + "\n".join(found)


def _schedule_names_compared_outside_their_module() -> list[str]:
    """The same check for schedules (issue 19: ``s.name == "cyclic_lr"`` was in composite.py):
    an ``optx.schedules`` function's or an ``optx.optim.lr_scheduler`` class's name, as a
    string in a comparison, a set or a dict, anywhere but the module defining it."""
    import inspect

    import optx.optim.lr_scheduler as lr_scheduler
    import optx.schedules as schedules

    own: dict[str, set[Path]] = {}
    for module in (schedules, lr_scheduler):
        for name in module.__all__:
            where = Path(inspect.getfile(getattr(module, name))).resolve()
            for key in (name, f"{module.__name__}.{name}"):
                own.setdefault(key, set()).add(where)
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
            elif isinstance(node, (ast.Set, ast.Dict)):
                operands = [node]
            else:
                continue
            for const in (c for o in operands for c in ast.walk(o)):
                value = getattr(const, "value", None)
                if isinstance(value, str) and value in own and path.resolve() not in own[value]:
                    found.append(f"{path.relative_to(ROOT.parent)}:{const.lineno}: {value!r}")
    return found


def test_no_schedule_name_is_compared_outside_its_module():
    found = _schedule_names_compared_outside_their_module()
    assert not found, "schedule names tested outside their modules:\n" + "\n".join(found)
