"""Checks shared by every optimizer: torch's hyperparameter errors and matching pytrees."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Collection, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np


def _is_array(value: Any) -> bool:
    return (hasattr(value, "shape") and not is_schedule(value)
            and not isinstance(value, (bool, int, float, complex)))


def is_schedule(value: Any) -> bool:
    """Whether a hyperparameter is a schedule ``count -> value`` (any callable)."""
    return callable(value)


def scalar_hyperparams(values: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameter values with each 1-element array (``jnp.asarray(1e-3)``,
    ``np.float32(0.9)``, shape ``()`` or ``(1,)``) as a Python scalar, as torch's ``_to_scalar``
    squeezes a 1-element tensor. A multi-element array raises torch's ``ValueError("Tensor lr
    must be 1-element")``, named as torch names it (``betas[0]`` inside a tuple)."""

    def scalar(name: str, v: Any) -> Any:
        if isinstance(v, (tuple, list)) and not hasattr(v, "_fields"):
            return type(v)(scalar(f"{name}[{i}]", x) for i, x in enumerate(v))
        if not _is_array(v):
            return v
        if jnp.size(v) != 1:
            raise ValueError(f"Tensor {name} must be 1-element")
        if isinstance(v, jax.core.Tracer):
            return jnp.reshape(v, ())
        return np.asarray(v).reshape(()).item()

    return {k: scalar(k, v) for k, v in values.items()}


_INIT_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("init_checks", default=True)


@contextlib.contextmanager
def group_edit() -> Iterator[None]:
    """Within: :func:`init_checks` is False. The ``optx.optim`` adapter builds a param group's
    transformation anew when an edit of the group crosses a branch (a momentum set to 0), and
    torch checks hyperparameters in ``__init__`` only, never the values a step reads (SGD with
    ``nesterov`` steps with a momentum lowered to 0)."""
    token = _INIT_CHECKS.set(False)
    try:
        yield
    finally:
        _INIT_CHECKS.reset(token)


def init_checks() -> bool:
    """Whether torch's constructor checks apply (False within :func:`group_edit`)."""
    return _INIT_CHECKS.get()


def check(value: Any, ok: Callable[[Any], bool], message: str, *,
          allow_none: bool = False) -> None:
    """Raises ``ValueError(message)`` when a constant hyperparameter fails ``ok``.

    Schedules cannot be checked before they run, so they pass; torch has no schedules here.
    A multi-element array passes too: :func:`scalar_hyperparams` refuses it with its name.
    ``None`` (unless ``allow_none``) and non-numbers reach ``ok`` as they are, so they raise
    the ``TypeError`` torch's own comparison raises (``'<=' not supported between instances
    of 'float' and 'NoneType'``). Within :func:`group_edit` nothing is checked, as torch
    checks in ``__init__`` only.
    """
    if is_schedule(value) or (value is None and allow_none) or not init_checks():
        return
    if _is_array(value):
        if jnp.size(value) != 1:
            return
        value = float(jnp.reshape(value, ()))
    if not ok(value):
        raise ValueError(message)


def check_numbers(values: Mapping[str, Any], *, who: str, optional: frozenset[str] = frozenset(),
                  ) -> None:
    """Refuses a hyperparameter that is neither a number, a 1-element array nor a schedule
    (``None``, a string, a dict), naming it: torch checks only some of them at construction,
    and the others would fail inside the traced update. ``optional`` names (as ``eps[0]``)
    may be None."""

    def visit(name: str, v: Any) -> None:
        if isinstance(v, (tuple, list)) and not hasattr(v, "_fields"):
            for i, x in enumerate(v):
                visit(f"{name}[{i}]", x)
        elif v is None:
            if name not in optional:
                raise TypeError(f"{who}: {name} must be a number or a schedule, got None")
        elif not (is_schedule(v) or _is_array(v) or isinstance(v, (int, float, np.number))):
            raise TypeError(
                f"{who}: {name} must be a number or a schedule, got {type(v).__name__} {v!r}")

    for k, v in values.items():
        visit(k, v)


def check_lr(lr: Any) -> None:
    # torch checks the tensor lr's size before its value.
    scalar_hyperparams({"lr": lr})
    check(lr, lambda v: 0.0 <= v, f"Invalid learning rate: {lr}")


def check_eps(eps: Any) -> None:
    check(eps, lambda v: 0.0 <= v, f"Invalid epsilon value: {eps}")


def check_weight_decay(weight_decay: Any) -> None:
    check(weight_decay, lambda v: 0.0 <= v, f"Invalid weight_decay value: {weight_decay}")


def check_betas(betas: Any) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for i, b in enumerate(betas):
        check(b, lambda v: 0.0 <= v < 1.0, f"Invalid beta parameter at index {i}: {b}")


def _path(path: Any) -> str:
    s = jax.tree_util.keystr(path)
    return s if s else "<root>"


def check_params(params: Any, *, who: str) -> None:
    """Rejects parameter trees that torch would refuse: integer or boolean leaves, and Python
    scalars (torch takes tensors only; a Python float leaf has no dtype for its update)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise TypeError(
                f"{who}: the parameter at {_path(path)} is a {type(leaf).__name__} ({leaf!r}), "
                f"not an array; parameters must be arrays, e.g. jnp.asarray({leaf!r})"
            )
        dtype = jnp.result_type(leaf)
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
            raise TypeError(
                f"{who} can only optimize floating-point or complex parameters, but the "
                f"parameter at {_path(path)} has dtype {dtype}"
            )


def check_matching(updates: Any, params: Any, *, who: str, what: str = "gradient",
                   dtypes: bool = True) -> None:
    """Raises an error naming the first leaf where ``updates`` and ``params`` disagree (in
    structure, shape, and dtype unless ``dtypes=False``).

    A ``None`` leaf in ``updates`` stands for a parameter without a gradient (torch's
    ``p.grad is None``) and matches any parameter. Runs at trace time, so it costs nothing
    inside jit.
    """
    p_leaves, p_def = jax.tree_util.tree_flatten_with_path(params)
    try:
        matched = p_def.flatten_up_to(updates)  # type: ignore[attr-defined]
    except (ValueError, TypeError):
        matched = None
    u_leaves, u_def = jax.tree_util.tree_flatten_with_path(updates, is_leaf=lambda x: x is None)
    if matched is None or any(u is not None and not hasattr(u, "shape") and not isinstance(
            u, (int, float, complex)) for u in matched):
        u_paths = [_path(k) for k, _ in u_leaves]
        p_paths = [_path(k) for k, _ in p_leaves]
        missing = [k for k in p_paths if k not in set(u_paths)]
        extra = [k for k in u_paths if k not in set(p_paths)]
        detail = []
        if missing:
            detail.append(f"missing leaves {missing}")
        if extra:
            detail.append(f"unexpected leaves {extra}")
        if not detail:
            detail.append(f"structure {u_def} differs from {p_def}")
        raise ValueError(f"{who}: the {what} tree does not match the params: " + "; ".join(detail))
    for u, (path, p) in zip(matched, p_leaves):
        if u is None:
            continue
        if jnp.shape(u) != jnp.shape(p):
            raise ValueError(
                f"{who}: the {what} at {_path(path)} has shape {jnp.shape(u)}, "
                f"but the parameter has shape {jnp.shape(p)}"
            )
        if dtypes and jnp.result_type(u) != jnp.result_type(p):
            raise TypeError(
                f"{who}: the {what} at {_path(path)} has dtype {jnp.result_type(u)}, "
                f"but the parameter has dtype {jnp.result_type(p)}"
            )


def _describe(leaf: Any) -> str:
    if leaf is None:
        return "no slot"
    if not hasattr(leaf, "shape"):
        return f"a {type(leaf).__name__}"
    return f"shape {jnp.shape(leaf)}, dtype {jnp.result_type(leaf)}"


def check_slots(
    slots: Mapping[str, Any],
    params: Any,
    expected: Callable[[list[jax.ShapeDtypeStruct]], list[Mapping[str, Any]]],
    *,
    who: str,
    optional: Collection[str] = (),
) -> None:
    """Raises an error naming the first slot that does not fit ``params``: a state initialized
    for other parameters (another shape, float32 instead of float64) or another optimizer.

    ``expected(structs)`` maps abstract parameters to the abstract slots ``init`` gives them
    (``jax.eval_shape`` of the optimizer's ``init_slots``), so slots whose shape legitimately
    differs from their parameter's (Adafactor's factored moments, complex slots, slots only
    some leaves have) are checked against what ``init`` makes, not against the parameter.
    Only shapes and dtypes are compared, at trace time: it costs nothing inside jit. Slots named
    in ``optional`` may be in the state besides those (a buffer torch keeps but no longer uses).
    """
    p_leaves, p_def = jax.tree_util.tree_flatten_with_path(params)
    if not p_leaves:
        return
    # One abstract init per distinct (shape, dtype): a model's leaves share a few shapes.
    keys = [(tuple(jnp.shape(p)), jnp.result_type(p)) for _, p in p_leaves]
    unique = list(dict.fromkeys(keys))
    per_key = dict(zip(unique, expected([jax.ShapeDtypeStruct(*k) for k in unique])))
    wanted = [per_key[k] for k in keys]
    names = list(dict.fromkeys(n for w in wanted for n in w))
    if not set(names) <= set(slots) <= set(names) | set(optional):
        raise ValueError(
            f"{who}: the state holds the slots {sorted(slots)}, but these params need "
            f"{sorted(names)}: was the state initialized with other params, or by another "
            f"optimizer?"
        )
    for name in names:
        try:
            s_leaves = p_def.flatten_up_to(slots[name])  # type: ignore[attr-defined]
        except (ValueError, TypeError):
            def paths(tree):
                flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)
                return {_path(k) for k, _ in flat[0]}

            s_paths, p_paths = paths(slots[name]), paths(params)
            missing, extra = sorted(p_paths - s_paths), sorted(s_paths - p_paths)
            detail = "; ".join(
                [f"missing leaves {missing}"] * bool(missing)
                + [f"unexpected leaves {extra}"] * bool(extra)
            ) or "the containers differ"
            raise ValueError(
                f"{who}: the state's {name!r} tree does not match the params ({detail}); "
                f"was the state initialized with other params?"
            ) from None
        for (path, p), s, w in zip(p_leaves, s_leaves, wanted):
            want = w.get(name)
            if want is None and s is None:
                continue
            if want is None or not hasattr(s, "shape") or jnp.shape(s) != want.shape:
                raise ValueError(
                    f"{who}: the state's {name!r} at {_path(path)} has {_describe(s)}, but the "
                    f"parameter (shape {jnp.shape(p)}) needs {_describe(want)}; was the state "
                    f"initialized with other params?"
                )
            if jnp.result_type(s) != want.dtype:
                raise TypeError(
                    f"{who}: the state's {name!r} at {_path(path)} has dtype "
                    f"{jnp.result_type(s)}, but the parameter (dtype {jnp.result_type(p)}) needs "
                    f"{want.dtype}; was the state initialized with params of another dtype?"
                )


def check_hyperparams(who: str | None, values: Mapping[str, Any]) -> None:
    """Runs the checks of the constructor named ``who`` (``"optx.adam"``, recorded in the
    state's ``Hyperparams``) on ``values``, a state's hyperparameters with some replaced: the
    constructor's own checks and messages (torch's), each written once, in its module.
    Schedules and traced values are not checked (as the constructor passes schedules)."""
    if who is None or any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(
            dict(values))):
        return
    import inspect
    import sys

    # The package is loaded (the state came from one of its constructors): found by name in
    # sys.modules, so this leaf module imports no higher layer.
    constructor = getattr(sys.modules.get("optx"), who.rpartition(".")[2], None)
    if constructor is None:
        return
    accepted = inspect.signature(constructor).parameters
    constructor(**{k: v for k, v in scalar_hyperparams(values).items() if k in accepted})
