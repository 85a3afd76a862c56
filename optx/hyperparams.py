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

from optx import validation
from optx.state import Hyperparams, float_dtype, is_optimizer_state  # noqa: F401  (float_dtype: re-exported)
from optx.validation import is_schedule  # re-exported: schedules are told apart here

Schedule = Callable[[Any], Any]
"""A callable ``count -> value``; ``count`` is a Python int or a traced integer array."""

Hyperparam = Union[float, int, Schedule, jax.Array]


def is_constant(value: Any) -> bool:
    """Whether ``value`` is known when the update is built: not a schedule, not traced."""
    return not (value is None or is_schedule(value) or isinstance(value, jax.core.Tracer))


def is_zero(value: Any) -> bool:
    """Whether ``value`` is a constant equal to 0 (a Python number or a concrete one-element
    array). A constant 0 given to an optimizer's constructor for a hyperparameter whose zero is
    a torch branch (``if weight_decay != 0``) leaves that branch out of the compiled update."""
    return is_constant(value) and bool(
        np.size(value) == 1 and float(np.reshape(np.asarray(value), ())) == 0.0
    )


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


def advance(spec: Mapping[str, Any], current: Mapping[str, Any], count: Any) -> Any:
    """The stored hyperparameters for the next update: scheduled ones re-evaluated at ``count``,
    constants carried over (so values set with :func:`set_hyperparams` persist).

    ``current`` a :class:`~optx.state.Hyperparams` gives one back, its packed vector passed
    through untouched when nothing is scheduled (the common case: no work in the update)."""
    dtype = float_dtype()
    count = _schedule_count(count)
    scheduled = [k for k, x in spec.items() if any(
        is_schedule(leaf) for leaf in jax.tree_util.tree_leaves(x, is_leaf=_is_spec_leaf))]

    def value(x, cur):
        if is_schedule(x):
            return jnp.asarray(x(count), dtype=dtype)
        return cur

    if isinstance(current, Hyperparams):
        if not scheduled:
            return current
        return current.replaced({
            k: jax.tree_util.tree_map(value, spec[k], current[k], is_leaf=_is_spec_leaf)
            for k in scheduled})
    return jax.tree_util.tree_map(value, dict(spec), dict(current), is_leaf=_is_spec_leaf)


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


def _check_side(name: str, value: Any, stored: Any, nonzero: bool) -> None:
    """Raises when ``value`` (``stored`` as the state would store it) is on the side of zero
    the compiled update leaves out."""
    if isinstance(stored, jax.core.Tracer):
        if nonzero:
            # A traced value (jax.grad through set_hyperparams) on the compiled branch: its
            # value is unknown while tracing, and the nonzero branch computes with it
            # (hypergradients w.r.t. SGD's momentum). A traced 0 would run the nonzero code.
            return
        raise ValueError(
            f"set_hyperparams: {name!r} must be a concrete number, not a traced value: the "
            f"compiled update holds it at 0 (it was given to the constructor as the constant "
            f"0). Construct the optimizer with a nonzero {name} or {name} as a schedule "
            f"`count -> value` to change it freely"
        )
    if (float(stored) != 0.0) == nonzero:
        return
    if nonzero:
        raise ValueError(
            f"set_hyperparams: {name}=0 needs torch's code for a zero {name}, which this "
            f"optimizer's compiled update leaves out ({name} was given to its constructor as a "
            f"nonzero constant). To set it to 0 at run time, construct the optimizer with "
            f"{name} as a schedule `count -> value`"
        )
    raise ValueError(
        f"set_hyperparams: {name}={value!r} needs torch's `if {name} != 0` branch, which this "
        f"optimizer's compiled update leaves out ({name} was given to its constructor as the "
        f"constant 0). To change {name} at run time, construct the optimizer with a nonzero "
        f"{name} or a schedule `count -> value`"
    )


def set_hyperparams(state: Any, **values: Any) -> Any:
    """A copy of ``state`` with the named hyperparameters replaced.

    Values keep the stored dtype and shape, so a jitted update does not recompile. A scheduled
    hyperparameter takes the new value for the next update only; its schedule then resumes.

    Where torch branches on a hyperparameter being zero (``if weight_decay != 0``, SGD's
    ``if momentum != 0`` and ``dampening``), a constant 0 given to the constructor leaves the
    branch out of the compiled update, as torch skips it; setting it to a nonzero value then
    raises ``ValueError`` (setting 0 is fine), also for a traced value (inside ``jit`` or
    ``jax.grad``), whose side of zero is unknown. SGD's and RMSprop's ``momentum`` given as a
    nonzero constant likewise leave out torch's code for a zero momentum, and refuse 0; a
    traced value for them is accepted and taken to be nonzero (a hypergradient w.r.t. the
    momentum, see the Hypergradients guide). Every
    other change (``momentum`` 0.9 to 0.95, ``weight_decay`` 0.1 to 0.2 or to 0) is data and
    never recompiles. To move a hyperparameter across zero at run time, construct with a
    nonzero value or, for ``momentum``, a schedule ``count -> value`` (a schedule keeps both
    branches).

    Args:
        state: an optimizer state, or a pytree holding exactly one.
        **values: the new values by name (``lr=3e-4``, ``betas=(0.9, 0.99)``), each with the
            structure of the stored value.

    Returns:
        The state with those values replaced; ``state`` itself is unchanged.

    Raises:
        ValueError: an unknown name, a value of the wrong structure or not a number (naming
            it), a value the optimizer's constructor refuses (with its message, torch's:
            ``Invalid learning rate: -0.1``; values traced under ``jit`` are not checked), a
            value on the side of zero the compiled update leaves out, or a state holding zero
            or several optx states. ``state`` is never changed.
    """
    found = _find_states(state)
    if len(found) != 1:
        raise ValueError(
            f"set_hyperparams expects a state holding exactly one optx optimizer state, "
            f"found {len(found)}"
        )
    stored = found[0].hyperparams
    fixed = getattr(stored, "fixed", {})
    hp: dict[str, Any] = dict(stored)
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
        try:
            new_arrays = [jnp.asarray(n, dtype=o.dtype).reshape(o.shape)
                          for o, n in zip(old_leaves, new_leaves)]
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"hyperparameter {name!r} must be a number (or numbers like {old!r}), got "
                f"{new!r}") from e
        hp[name] = jax.tree_util.tree_unflatten(treedef, new_arrays)

    # The constructor's checks and messages (torch's: "Invalid learning rate: -0.1"), then the
    # branches the compiled update holds.

    validation.check_hyperparams(getattr(stored, "who", None), {**stored, **values})
    for name, new in values.items():
        if name in fixed:
            _check_side(name, new, hp[name], fixed[name])
    new_hp = stored.replaced({name: hp[name] for name in values}) \
        if isinstance(stored, Hyperparams) else hp

    def replace(x):
        return x._replace(hyperparams=new_hp) if is_optimizer_state(x) else x

    return jax.tree_util.tree_map(replace, state, is_leaf=is_optimizer_state)
