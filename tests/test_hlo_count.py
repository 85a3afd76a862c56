"""Regression guard on the compiled size of each optimizer's update (not a timing test).

XLA:CPU's compile time grows with the instructions each parameter leaf adds to the optimized
program, so the per-leaf count (``benchmarks/hlo_count.py``, issue 16's definition) is pinned
here, and compared with optax's peer measured in the same test: ``optax.inject_hyperparams``
(runtime hyperparameters, as optx's). torch's defaults (``weight_decay=0``) leave its
``if weight_decay != 0`` branch out, as torch does (issue 29), so ``optx`` meets plain
``optax_inject``; with a runtime weight decay (``optx_wd``) the peer adds optax's
``add_decayed_weights`` (``optax_inject_wd``).
"""

import functools
import importlib.util
import re
from pathlib import Path

import pytest


def _benchmark(name: str):
    """A script of ``benchmarks/``, imported as a module."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hlo_count = _benchmark("hlo_count")

# (optimizer, column) -> (pinned optx per-leaf count, optax peer it must not exceed or None)
PINNED = {
    # Adam's +5 since issue 34: its moment kernels read their coefficients as one vector
    # (optx.torch_ops.Packed), so XLA:CPU runs both kernels of a leaf back to back (below).
    ("adam", "optx"): (47, "optax_inject"),  # 68 before issue 16, 52 before 29, 42 (inject: 54)
    ("adamw", "optx"): (52, "optax_inject"),  # 64, 47, 47 (58)
    ("sgd_momentum", "optx"): (17, "optax_inject"),  # 57, 34 (19)
    ("sgd_nesterov", "optx"): (22, "optax_inject"),  # 49, 37 (24)
    ("rmsprop", "optx"): (27, "optax_inject"),  # 48, 36 (30)
    ("adagrad", "optx"): (21, "optax_inject"),  # 41, 30 (27)
    ("adam", "optx_wd"): (57, "optax_inject_wd"),  # 52 before 34 (64)
    ("sgd_momentum", "optx_wd"): (22, "optax_inject_wd"),  # (24)
    # Nesterov with weight decay recomputes the decayed gradient in both of its kernels rather
    # than writing it out (a params-sized temporary, as optax's chain does): 34 vs optax's 31.
    ("sgd_nesterov", "optx_wd"): (34, None),
    ("rmsprop", "optx_wd"): (36, "optax_inject_wd"),  # (37)
    ("adagrad", "optx_wd"): (30, "optax_inject_wd"),  # (34)
}


@pytest.mark.parametrize("name,column", list(PINNED), ids=[f"{n}-{c}" for n, c in PINNED])
def test_per_leaf_instructions(name, column):
    pinned, peer = PINNED[name, column]
    factories = hlo_count._optimizers()[name]
    count = hlo_count.per_leaf(factories[hlo_count.PEERS.index(column)])
    assert count <= pinned, f"{name} {column}: {count} instructions per leaf, pinned at {pinned}"
    if peer is not None:
        theirs = hlo_count.per_leaf(factories[hlo_count.PEERS.index(peer)])
        assert count <= theirs, f"{name} {column}: optx {count} per leaf > {peer} {theirs}"


def _kernels_by_leaf(init, step) -> tuple[list[int], list[int]]:
    """The leaf of each moment kernel and of each parameter kernel of ``step`` over
    ``N_LEAVES`` leaves, in the compiled schedule's order (XLA:CPU runs the kernels in that
    order). A leaf is told by its size (1000 + its index); a parameter kernel from a moment
    kernel by reading another kernel's output."""
    import jax
    import jax.numpy as jnp

    params = [jnp.ones((1000 + i,), jnp.float32) for i in range(N_LEAVES)]
    text = jax.jit(step).lower(params, init(params), params).compile().as_text()
    entry = text[text.index("\nENTRY"):]
    moments: list[int] = []
    updates: list[int] = []
    for m in re.finditer(r"= f32\[(\d+)\]\S* fusion\(([^)]*)\)", entry):
        if int(m.group(1)) >= 1000:
            (updates if "fusion" in m.group(2) else moments).append(int(m.group(1)) - 1000)
    assert sorted(moments) == sorted(2 * list(range(N_LEAVES))), moments
    assert sorted(updates) == list(range(N_LEAVES)), updates
    return moments, updates


def _with_apply(tx):
    """``(init, step)``: ``tx``'s update followed by ``apply_updates``."""
    import optax

    def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    return tx.init, step


def _adjacent(leaves: list[int]) -> int:
    return sum(a == b for a, b in zip(leaves, leaves[1:]))


N_LEAVES = 12


@pytest.mark.parametrize("name", ["adam", "adamw", "nadam", "radam"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_moment_kernels_of_a_leaf_run_back_to_back(name, weight_decay):
    """optax's two moment kernels of a leaf are next to each other in the schedule, so the
    gradient they both read comes from cache the second time; optx's are too
    (``optx.torch_ops.Packed``), or else every first-moment kernel runs before every
    second-moment one (2-3 % of the step at 1000 leaves)."""
    import optx

    leaves, _ = _kernels_by_leaf(
        *_with_apply(getattr(optx, name)(lr=1e-3, weight_decay=weight_decay))
    )
    theirs = _optax_adjacent()  # 12 with this XLA: m0 v0 m1 v1 ...
    assert _adjacent(leaves) >= theirs - 2, f"moment kernels by leaf, in order: {leaves}"


@functools.cache
def _optax_adjacent() -> int:
    import optax

    return _adjacent(_kernels_by_leaf(*_with_apply(optax.adam(1e-3)))[0])


def test_moment_kernels_without_packed_run_grouped():
    """The check above can fail: with the moment coefficients as separate outputs of the
    conditional (``benchmarks/leaf_order.py``'s ``optx unpacked``, optx before the change)
    all first moments run, then all second moments."""
    leaves, _ = _kernels_by_leaf(*_benchmark("leaf_order").library("optx unpacked"))
    assert _adjacent(leaves) <= 2, f"moment kernels by leaf, in order: {leaves}"


def _by_last_moment(moments: list[int]) -> list[int]:
    """The leaves in the order their second moment kernel ran."""
    return sorted(range(N_LEAVES), key=lambda leaf: len(moments) - moments[::-1].index(leaf))


def test_parameter_kernels_follow_the_moments_order():
    """Why optx's parameter kernels run in the order the leaves' moments finished (each waits
    last for its second moment), and how a third conditional reverses that order
    (``benchmarks/leaf_order.py``'s ``hand+late``, optax's pattern mirrored): the experiment
    behind benchmarks/README.md's fourth issue-34 session, which measured no gain from it."""
    import optx

    moments, updates = _kernels_by_leaf(*_with_apply(optx.adam(lr=1e-3)))
    assert updates == _by_last_moment(moments), (moments, updates)
    moments, updates = _kernels_by_leaf(*_benchmark("leaf_order").hand(late=True))
    assert updates == _by_last_moment(moments)[::-1], (moments, updates)
