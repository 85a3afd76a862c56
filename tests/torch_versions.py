"""Which torch the tests run against, and what optx follows from newer torch releases.

``make test`` runs against torch 2.13.0 (the ``test`` extra); ``make test-torch-latest`` against
2.14.1 (see the Makefile). optx follows 2.14.1 where it added behaviour (LBFGS ``maximize``, an
LBFGS group without parameters, Muon ``adjust_lr_fn="spectral_unclamped"``) and 2.15 where it
added checks (ASGD ``lambd``/``alpha``) or changed a result (Muon's bfloat16 buffer with
``nesterov=False``); docs/porting.md's "Which torch" table lists them.

A test of such a behaviour compares against the real torch when the installed one has it, and
otherwise against a reference written from the newer torch's equations, itself checked against
the real torch in ``make test-torch-latest`` (tests/test_torch_2_14.py). A test comparing a
whole signature or param group with torch's leaves out, under an older torch, only the
arguments :data:`ADDED` lists for it.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

TORCH: tuple[int, int] = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])  # type: ignore[assignment]
HAS_2_14 = TORCH >= (2, 14)
HAS_2_15 = TORCH >= (2, 15)

# Constructor arguments (and param-group keys) that optx's classes take and an older torch's
# lack: {class name: {argument: (the torch version that added it, its default)}}.
ADDED: dict[str, dict[str, tuple[tuple[int, int], Any]]] = {"LBFGS": {"maximize": ((2, 14), False)}}


def newer(name: str) -> set[str]:
    """The arguments of torch class ``name`` that optx has and the installed torch lacks."""
    return {arg for arg, (v, _) in ADDED.get(name, {}).items() if TORCH < v}


def with_newer_defaults(name: str, group: dict[str, Any]) -> dict[str, Any]:
    """A param group of the installed torch's class ``name`` as the newer torch optx follows
    stores it: each key :func:`newer` lists, missing here, with its default (an optimizer built
    under the older torch cannot have set it)."""
    extra = {k: ADDED[name][k][1] for k in newer(name) if k not in group}
    return {**group, **extra} if extra else group


def without_newer(name: str, keys: Iterable[Any]) -> list[Any]:
    """``keys`` (names, or tuples starting with a name) less those :func:`newer` lists."""
    drop = newer(name)
    return [k for k in keys if (k[0] if isinstance(k, tuple) else k) not in drop]


def as_installed(name: str, obj: Any) -> Any:
    """optx's param groups, ``defaults``, state_dict or ``repr`` of torch class ``name`` as the
    installed torch shows them: without the keys (``repr`` lines) that :func:`newer` lists."""
    drop = newer(name)
    if not drop:
        return obj
    if isinstance(obj, str):
        return "\n".join(line for line in obj.split("\n")
                         if line.strip().split(":")[0] not in drop)
    if isinstance(obj, dict) and "param_groups" in obj:
        return {**obj, "param_groups": as_installed(name, obj["param_groups"])}
    if isinstance(obj, dict):
        return {k: v for k, v in obj.items() if k not in drop}
    if isinstance(obj, list):
        return [as_installed(name, g) for g in obj]
    raise TypeError(f"as_installed: {type(obj).__name__}")
