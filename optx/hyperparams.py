"""Hyperparameters that live in the optimizer state as arrays.

Every float hyperparameter of an optx optimizer is either a constant or a *schedule*, a callable
``count -> value`` where ``count`` is the number of updates already applied. Its current value is
stored in the state, so it can be read (to log the learning rate), replaced (to change it between
steps) and checkpointed, and a new value never triggers a recompilation: it is data, not code.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Union

import jax
import jax.numpy as jnp
import numpy as np

from optx.state import is_optimizer_state

Schedule = Callable[[Any], Any]
"""A callable ``count -> value``; ``count`` is a Python int or a traced integer array."""

Hyperparam = Union[float, int, Schedule, jax.Array]


def is_schedule(value: Any) -> bool:
    return callable(value)


def float_dtype() -> Any:
    """The dtype hyperparameters and scalar coefficients are computed in.

    float64 when ``jax_enable_x64`` is on, so scalar math (bias corrections, step sizes) is done
    in doubles exactly as torch does it with Python floats; float32 otherwise.
    """
    return jnp.zeros((), dtype=float).dtype


def _is_spec_leaf(x: Any) -> bool:
    return x is None or is_schedule(x) or not isinstance(x, (tuple, list, dict))


def evaluate(spec: Mapping[str, Any], count: Any) -> dict[str, Any]:
    """Values of a hyperparameter spec (constants and schedules) at ``count``, as arrays."""
    dtype = float_dtype()
    count = _schedule_count(count)

    def value(x):
        if x is None:
            return None
        if is_schedule(x):
            x = x(count)
        return jnp.asarray(x, dtype=dtype)

    return jax.tree_util.tree_map(value, dict(spec), is_leaf=_is_spec_leaf)


def _schedule_count(count: Any) -> Any:
    """``count`` as a schedule receives it: a Python int as it is, an integer array in the
    default integer dtype.

    The state stores its count as int32, and JAX computes ``int32 / 30`` or ``0.9 ** int32`` in
    float32 even under x64, where torch's Python arithmetic is double: a schedule like
    ``lambda c: 0.05 * 0.9 ** (c / 10)`` would be off by float32 rounding. An int64 count (under
    x64; int32 otherwise) makes such arithmetic run in the default float dtype.
    """
    if isinstance(count, (int, np.integer)) or not jnp.issubdtype(
        jnp.result_type(count), jnp.integer
    ):
        return count
    return jnp.asarray(count).astype(jnp.zeros((), dtype=int).dtype)


def advance(spec: Mapping[str, Any], current: dict[str, Any], count: Any) -> dict[str, Any]:
    """The stored hyperparameters for the next update: scheduled ones re-evaluated at ``count``,
    constants carried over (so values set with :func:`set_hyperparams` persist)."""
    dtype = float_dtype()
    count = _schedule_count(count)

    def value(x, cur):
        if is_schedule(x):
            return jnp.asarray(x(count), dtype=dtype)
        return cur

    return jax.tree_util.tree_map(value, dict(spec), current, is_leaf=_is_spec_leaf)


def _find_states(state: Any) -> list[Any]:
    found: list[Any] = []

    def visit(x):
        if is_optimizer_state(x):
            found.append(x)
        return x

    jax.tree_util.tree_map(visit, state, is_leaf=is_optimizer_state)
    return found


def get_hyperparams(state: Any) -> dict[str, Any]:
    """The hyperparameters the next update will use, read from an optimizer state.

    ``state`` may be an optx optimizer's state or any pytree holding exactly one (a chain's
    tuple of states, a flax ``TrainState.opt_state``). Keys are torch's param-group keys
    (``lr``, ``betas``, ``momentum``, ...).

    Args:
        state: an optimizer state, or a pytree holding exactly one.

    Returns:
        ``{name: value}``, each value an array (a tuple of arrays for ``betas``).

    Raises:
        ValueError: ``state`` holds no optx optimizer state, or more than one.
    """
    found = _find_states(state)
    if len(found) != 1:
        raise ValueError(
            f"get_hyperparams expects a state holding exactly one optx optimizer state, "
            f"found {len(found)}"
        )
    return dict(found[0].hyperparams)


def set_hyperparams(state: Any, **values: Any) -> Any:
    """A copy of ``state`` with the named hyperparameters replaced.

    Values keep the stored dtype and shape, so a jitted update does not recompile. A scheduled
    hyperparameter takes the new value for the next update only; its schedule then resumes.

    Args:
        state: an optimizer state, or a pytree holding exactly one.
        **values: the new values by name (``lr=3e-4``, ``betas=(0.9, 0.99)``), each with the
            structure of the stored value.

    Returns:
        The state with those values replaced; ``state`` itself is unchanged.

    Raises:
        ValueError: ``state`` does not hold exactly one optx optimizer state, a name is not one
            of its hyperparameters, or a value's structure differs from the stored one.
    """
    found = _find_states(state)
    if len(found) != 1:
        raise ValueError(
            f"set_hyperparams expects a state holding exactly one optx optimizer state, "
            f"found {len(found)}"
        )
    hp = dict(found[0].hyperparams)
    for name, new in values.items():
        if name not in hp:
            raise ValueError(
                f"unknown hyperparameter {name!r}; this optimizer has {sorted(hp)}"
            )
        old = hp[name]
        old_leaves, treedef = jax.tree_util.tree_flatten(old)
        try:
            new_leaves = treedef.flatten_up_to(new)  # type: ignore[attr-defined]
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"hyperparameter {name!r} must have the structure of {old!r}, got {new!r}"
            ) from e
        hp[name] = jax.tree_util.tree_unflatten(
            treedef,
            [
                jnp.asarray(n, dtype=o.dtype).reshape(o.shape)
                for o, n in zip(old_leaves, new_leaves)
            ],
        )

    def replace(x):
        return x._replace(hyperparams=hp) if is_optimizer_state(x) else x

    return jax.tree_util.tree_map(replace, state, is_leaf=is_optimizer_state)
