"""The optimizer state types: a leaf module, so the builder and :mod:`optx.hyperparams` both
import it without importing each other.

:class:`OptimizerState` is the state of every optimizer built by
:func:`optx.torch_optimizer.torch_optimizer`; LBFGS's :class:`optx.LbfgsState` is another
NamedTuple with the same ``count`` and ``hyperparams`` fields. :func:`is_optimizer_state` is what
:func:`optx.get_hyperparams` and :func:`optx.set_hyperparams` look for in a state pytree.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Hyperparams(Mapping[str, Any]):
    """``OptimizerState.hyperparams``: torch's param-group keys mapped to arrays, stored packed
    in one vector, which also records which hyperparameters the compiled update holds on one
    side of zero.

    A read-only mapping: ``hp["lr"]`` is a 0-d array, ``hp["betas"]`` a pair of them, and
    ``dict(hp)`` a plain dict. The values live in one array, ``packed`` (the dtype
    hyperparameters are computed in, see ``float_dtype()`` below), because every
    leaf of a state costs each jitted call about a microsecond to pass in and out: one leaf for
    all hyperparameters keeps a small model's step at optax's cost. The layout (which entries
    belong to which key) is pytree metadata, as are ``fixed`` and ``who``; the node is
    registered as a dataclass, so ``jit`` flattens it in C++.

    torch decides ``if weight_decay != 0`` (and SGD's ``if momentum != 0``, ...) in Python at
    each step. optx decides it when the optimizer is built: a constant 0 leaves the branch out
    of the update, a nonzero constant may leave out the code for 0 (SGD's and RMSprop's
    momentum), and a schedule keeps both. ``fixed`` maps each hyperparameter so decided to
    whether it is nonzero; :func:`optx.set_hyperparams` refuses a value on the other side.
    ``who`` is the constructor's name (``"optx.adam"``), whose checks
    :func:`optx.set_hyperparams` runs.

    Args:
        values: ``{name: value}``, each value a number, a 0-d array, ``None`` or a tuple of
            them; or another :class:`Hyperparams`, whose packed values are shared.
        fixed: ``{name: nonzero}`` for the hyperparameters the compiled update fixes.
        who: the constructor's name.
    """

    __slots__ = ("packed", "layout", "fixed_items", "who")

    def __init__(self, values: Any = (), fixed: Mapping[str, bool] | None = None,
                 who: str | None = None, *, packed: Any = None, layout: Any = None,
                 fixed_items: Any = None) -> None:
        if layout is not None:  # unflattening: the fields as they are
            self.packed, self.layout = packed, layout
            self.fixed_items, self.who = fixed_items, who
            return
        if isinstance(values, Hyperparams):
            self.packed, self.layout = values.packed, values.layout
        else:
            self.packed, self.layout = _pack(dict(values))
        self.fixed_items = tuple(sorted((fixed or {}).items()))
        self.who = who

    @property
    def fixed(self) -> dict[str, bool]:
        """``{name: nonzero}``: the hyperparameters whose side of zero the update fixes."""
        return dict(self.fixed_items)

    def __getitem__(self, key: str) -> Any:
        treedef, start, n = _index(self.layout)[key]
        packed = self.packed
        if not hasattr(packed, "ndim"):
            # Not an array: a tree_map's result (``lambda x: x.shape``, a sharding), which
            # stands for every entry alike.
            return treedef.unflatten([packed] * n)
        # ``...``: a state stacked along leading axes (vmap, pmap) reads each entry's column.
        return treedef.unflatten([packed[..., i] for i in range(start, start + n)])

    def __iter__(self) -> Any:
        return (entry[0] for entry in self.layout)

    def __len__(self) -> int:
        return len(self.layout)

    def __contains__(self, key: object) -> bool:
        return key in _index(self.layout)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Hyperparams):
            if (self.layout, self.fixed_items, self.who) != (
                    other.layout, other.fixed_items, other.who):
                return False
            if hasattr(self.packed, "ndim") and hasattr(other.packed, "ndim"):
                return bool(np.array_equal(self.packed, other.packed))
            return bool(self.packed == other.packed)
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # mutable-looking values: as a dict, unhashable

    def __repr__(self) -> str:
        return f"Hyperparams({dict(self.items())!r}, fixed={self.fixed!r}, who={self.who!r})"

    def __copy__(self) -> Hyperparams:
        return Hyperparams(packed=self.packed, layout=self.layout,
                           fixed_items=self.fixed_items, who=self.who)

    def __reduce__(self) -> Any:
        return (_unpickle, (self.packed, self.layout, self.fixed_items, self.who))

    def written(self, group: Mapping[str, Any]) -> Hyperparams:
        """A copy with the values a param group dict holds for the stored keys written in;
        keys it lacks and values holding a schedule (a callable: it advances itself in the
        update) keep the stored value. The adapter's edited group, in one call."""
        new = {}
        for key in self.layout:
            value = group.get(key[0], _MISSING)
            if value is not _MISSING and not any(
                    callable(x) for x in jax.tree_util.tree_leaves(value, is_leaf=callable)):
                new[key[0]] = value
        try:
            return self.replaced(new)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"param group hyperparameters must be shaped like {dict(self)!r}, got {new!r}"
            ) from e

    def replaced(self, values: Mapping[str, Any]) -> Hyperparams:
        """A copy with ``values`` (``{name: value shaped like the stored one}``) written into
        the packed vector: built on the host when every value is a Python or NumPy number and
        every entry is rewritten (the adapter's edited param group: nothing is read back from
        the device), as one update of the array otherwise (under ``jit``, for traced values)."""
        index = _index(self.layout)
        at: list[int] = []
        new: list[Any] = []
        for key, value in values.items():
            treedef, start, n = index[key]
            at.extend(range(start, start + n))
            new.extend(treedef.flatten_up_to(value))
        packed = self.packed
        if len(set(at)) == np.shape(packed)[-1] and all(map(_is_host_number, new)):
            host = np.empty(np.shape(packed), dtype=packed.dtype)
            host[..., at] = new
            packed = host
        elif at:
            packed = jnp.asarray(packed).at[..., np.asarray(at)].set(
                jnp.stack([jnp.asarray(x, packed.dtype) for x in new], axis=-1))
        return Hyperparams(packed=packed, layout=self.layout, fixed_items=self.fixed_items,
                           who=self.who)


_MISSING: Any = object()


def _is_host_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.ndarray, np.generic))


def _unpickle(packed: Any, layout: Any, fixed_items: Any, who: Any) -> Hyperparams:
    return Hyperparams(packed=packed, layout=layout, fixed_items=fixed_items, who=who)


def _pack(values: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    """``(packed, layout)`` for ``values``: keys in sorted order (as jax flattens a dict), each
    key's leaves (``None`` is structure, not a value) in a run of the packed vector."""
    layout: list[tuple[str, Any, int, int]] = []
    leaves: list[Any] = []
    for key in sorted(values):
        flat, treedef = jax.tree_util.tree_flatten(values[key])
        layout.append((key, treedef, len(leaves), len(flat)))
        leaves.extend(flat)
    dtype = float_dtype()
    if not leaves:
        return jnp.zeros((0,), dtype), tuple(layout)
    # Each value a scalar (a one-element array given for a float is one, as torch's).
    if all(_is_host_number(x) for x in leaves):
        packed: Any = jnp.asarray(np.array([np.asarray(x, dtype).reshape(()) for x in leaves]))
    else:
        packed = jnp.stack([jnp.asarray(x, dtype).reshape(()) for x in leaves])
    return packed, tuple(layout)


_INDEXES: dict[Any, dict[str, tuple[Any, int, int]]] = {}


def _index(layout: tuple[Any, ...]) -> dict[str, tuple[Any, int, int]]:
    """``{key: (treedef, start, n)}`` for a layout (cached: layouts are few)."""
    found = _INDEXES.get(layout)
    if found is None:
        found = _INDEXES[layout] = {k: (t, start, n) for k, t, start, n in layout}
    return found


jax.tree_util.register_dataclass(
    Hyperparams, data_fields=["packed"], meta_fields=["layout", "fixed_items", "who"])


class OptimizerState(NamedTuple):
    """State of an optx optimizer.

    Attributes:
      count: number of updates applied so far (int32 scalar, saturating at ``2**31 - 1``);
        torch's per-parameter ``step`` while ``steps`` is ``None``.
      hyperparams: the hyperparameters the next update uses, as arrays, keyed by torch's
        param-group keys (``betas`` is a pair): an ``optx.state.Hyperparams`` mapping, whose one
        array leaf holds them all, and which records the branches the constructor fixed. Read
        with :func:`optx.get_hyperparams`, replace with :func:`optx.set_hyperparams`.
      slots: per-parameter buffers keyed by torch's state names; each is a tree like the params.
      scalars: torch state that is a scalar per parameter and equal for all of them
        (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``, SGD's buffer-initialized flag);
        once ``steps`` is set, a vector with one entry per parameter leaf.
      steps: ``None`` while every parameter has taken ``count`` steps. After an update in
        which some gradient leaves were ``None`` (torch's ``p.grad is None``: the parameter is
        skipped), the per-parameter step counts, an int32 vector with one entry per leaf in
        ``jax.tree_util`` order: torch's per-parameter ``step``, which each parameter's bias
        corrections read. The state's structure changes once, at the first such update.
    """

    count: Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: Mapping[str, Any]
    slots: dict[str, Any]
    scalars: dict[str, Array]
    steps: Array | None = None


def is_optimizer_state(x: Any) -> bool:
    """Whether ``x`` is an optx optimizer's state: a NamedTuple of optx's with a ``hyperparams``
    field (:class:`OptimizerState`, :class:`optx.LbfgsState`).

    The field is what the hyperparameter helpers need, so any optx state that has one qualifies
    without being listed here. The class must be optx's: optax's ``inject_hyperparams`` state
    has a ``hyperparams`` field too, and counting it would make a chain holding both ambiguous.
    """
    cls = type(x)
    return (
        isinstance(x, tuple)
        and "hyperparams" in getattr(cls, "_fields", ())
        and cls.__module__.partition(".")[0] == "optx"
    )


def float_dtype() -> Any:
    """The dtype hyperparameters and scalar coefficients are computed in.

    float64 when ``jax_enable_x64`` is on, so scalar math (bias corrections, step sizes) is done
    in doubles exactly as torch does it with Python floats; float32 otherwise.
    """
    return jnp.zeros((), dtype=float).dtype


def increment(count: Array, by: Any = 1) -> Array:
    """``count + by`` saturating at the dtype's largest value, as optax's ``safe_increment``: a
    step count never wraps to a negative number (which would turn bias corrections into NaN).
    ``by`` may be a 0/1 mask for a vector of counts."""
    top = jnp.iinfo(count.dtype).max
    return jnp.where(count < top, count + jnp.asarray(by, count.dtype), count)


def with_per_leaf_steps(state: OptimizerState, n_leaves: int) -> OptimizerState:
    """``state`` with one step count per parameter leaf (``steps``), and its scalars one per
    leaf too: the form an update with a ``None`` gradient leaf produces. Equal to ``state``
    in what it computes; a no-op when it already has them."""
    if state.steps is not None:
        return state
    return state._replace(
        steps=jnp.full((n_leaves,), state.count, state.count.dtype),
        scalars={k: jnp.broadcast_to(v, (n_leaves,)).copy() for k, v in state.scalars.items()},
    )
