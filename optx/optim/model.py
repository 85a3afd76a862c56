"""What torch's ``nn.Module`` bundles, in JAX: a function and the variables it is applied to.

:mod:`optx.optim.swa_utils` takes a model in any of the forms JAX code holds one in (see
:func:`as_model`). flax is never imported here: a flax linen ``Module`` is recognised only when
the caller's program has imported flax itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

PyTree = Any


class Model(NamedTuple):
    """A model as :func:`as_model` reads it."""

    variables: PyTree  # the averaged state: params, flax variables, or the equinox module
    apply_fn: Callable[..., Any] | None  # apply_fn(variables, *inputs); None: parameters only
    linen_module: Any = None  # the flax linen Module, when the model is one
    holder: bool = False  # an object holding its params (read once: they may go stale)


def is_array(leaf: Any) -> bool:
    """Arrays are what a model averages; other leaves (an equinox module's activation
    functions, Python numbers) are kept as given, as torch keeps non-tensor attributes."""
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic))


def _is_function(obj: Any) -> bool:
    # Callable and not a pytree of arrays: an equinox module is callable too, but has leaves.
    return callable(obj) and jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(obj))


def linen_module(fn: Any) -> Any:
    """The flax linen ``Module`` that ``fn`` is (or whose bound ``apply`` it is), else ``None``."""
    linen = sys.modules.get("flax.linen")
    if linen is None:  # flax not imported: fn cannot be one of its modules
        return None
    if isinstance(fn, linen.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, linen.Module) and getattr(fn, "__name__", None) == "apply":
        return owner
    return None


def _call_module(module: Any, *args: Any, **kwargs: Any) -> Any:
    return module(*args, **kwargs)


def as_model(model: Any) -> Model:
    """Reads a model given in one of these forms:

    * a pytree of parameters alone (no function: nothing to evaluate);
    * ``(apply_fn, variables)``: ``apply_fn(variables, *inputs)`` evaluates it;
    * ``(module, variables)`` with a flax linen ``Module``: ``module.apply(variables, *inputs)``;
    * an object with its parameters in ``.params``, called as ``model(params, *inputs)`` (the
      porting guide's model classes);
    * a callable pytree (an equinox ``Module``): ``model(*inputs)``, its arrays the parameters.
    """
    if isinstance(model, tuple) and len(model) == 2 and _is_function(model[0]):
        fn, variables = model
        module = linen_module(fn)
        return Model(variables, fn if module is None else module.apply, module)
    if _is_function(model):
        if linen_module(model) is None and hasattr(model, "params"):
            return Model(model.params, model, holder=True)
        raise TypeError(
            f"{type(model).__name__} is a function without its variables: pass the model as "
            "(apply_fn, variables), e.g. (module, variables) for a flax linen module"
        )
    if callable(model):
        return Model(model, _call_module)
    return Model(model, None)


def buffer_mask(model: Model) -> list[bool]:
    """For each leaf of ``model.variables``, whether it is a buffer (torch's running statistics).

    Variables in flax's layout, a mapping with a ``"params"`` entry applied by a function, keep
    their parameters there and buffers (``batch_stats``, ...) in their other collections. A bare
    pytree is all parameters.
    """
    leaves = jax.tree_util.tree_flatten_with_path(model.variables)[0]
    v = model.variables
    if model.apply_fn is None or not isinstance(v, Mapping) or "params" not in v:
        return [False] * len(leaves)
    return [getattr(path[0], "key", None) != "params" for path, _ in leaves]
