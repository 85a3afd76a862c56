"""Docstring text shared by several public functions, written once and filled in at import.

Sphinx (autodoc with napoleon) and ``help()`` read ``__doc__`` at run time, so they show the
filled-in text.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# torch's implementation switches (foreach/fused kernels, CUDA-graph capture, autograd through
# the step): optx has one implementation, with torch's results.
TORCH_SWITCHES = ("foreach", "capturable", "differentiable", "fused")
IGNORED = "a torch implementation switch (it picks a kernel, not the result): accepted and ignored."
# torch's ``differentiable=True`` records the update in autograd; optx's updates always are
# differentiable, so it changes nothing, but users ask what it means: it gets its own line.
DIFFERENTIABLE = (
    "torch's switch that records the update in autograd (hypergradients): accepted and "
    "ignored, as every optx update is differentiable with ``jax.grad``, with respect to the "
    "params, the state and, through :func:`optx.set_hyperparams` or a schedule's arguments, "
    "the hyperparameters (see the Hypergradients guide)."
)
MARKER = "{torch_switches}"


def torch_switches(fn: F) -> F:
    """Replaces the ``{torch_switches}`` line of ``fn``'s ``Args:`` section with one entry,
    :data:`IGNORED` (:data:`DIFFERENTIABLE` for ``differentiable``), per torch implementation
    switch in ``fn``'s signature."""
    if fn.__doc__ is None:  # python -OO strips docstrings
        return fn
    if MARKER not in fn.__doc__:
        raise ValueError(f"{fn.__qualname__}'s docstring lacks a {MARKER} line")
    names = [n for n in inspect.signature(fn).parameters if n in TORCH_SWITCHES]
    lines = []
    for line in fn.__doc__.split("\n"):
        if line.strip() == MARKER:
            indent = line[: len(line) - len(line.lstrip())]
            lines += [f"{indent}{name}: {DIFFERENTIABLE if name == 'differentiable' else IGNORED}"
                      for name in names]
        else:
            lines.append(line)
    fn.__doc__ = "\n".join(lines)
    return fn
