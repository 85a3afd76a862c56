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

Array = jax.Array


class Hyperparams(dict):  # type: ignore[type-arg]
    """``OptimizerState.hyperparams``: a dict of torch's param-group keys to arrays, which also
    records which hyperparameters the compiled update holds on one side of zero.

    torch decides ``if weight_decay != 0`` (and SGD's ``if momentum != 0``, ...) in Python at
    each step. optx decides it when the optimizer is built: a constant 0 leaves the branch out
    of the update, a nonzero constant may leave out the code for 0 (SGD's and RMSprop's
    momentum), and a schedule keeps both. ``fixed`` maps each hyperparameter so decided to
    whether it is nonzero; :func:`optx.set_hyperparams` refuses a value on the other side.
    It is pytree metadata, not data, so it survives ``jit``, ``scan``, ``tree_map`` and
    checkpoints restored into a freshly initialized state's structure (assign a new dict to
    change it: the metadata is cached, and an in-place edit of ``fixed`` would not be seen).
    """

    def __init__(self, values: Any = (), fixed: Mapping[str, bool] | None = None,
                 who: str | None = None) -> None:
        super().__init__(values)
        self.fixed: dict[str, bool] = dict(fixed or {})
        # The constructor's name (``"optx.adam"``): optx.set_hyperparams runs its checks.
        self.who = who

    def __repr__(self) -> str:
        return f"Hyperparams({dict.__repr__(self)}, fixed={self.fixed!r}, who={self.who!r})"

    # Flattening runs at every jitted call that takes or returns a state, in Python (a custom
    # node): its metadata ``(sorted keys, sorted fixed items, who)`` is kept on the instance,
    # and dropped by any change of the keys, of ``fixed`` or of ``who``.
    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__.pop("_aux", None)
        super().__setattr__(name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self:
            self.__dict__.pop("_aux", None)
        super().__setitem__(key, value)

    def _dropping_aux(name: str) -> Any:  # type: ignore[misc]  # a helper run in the class body
        method = getattr(dict, name)

        def changed(self: Hyperparams, *args: Any, **kwargs: Any) -> Any:
            self.__dict__.pop("_aux", None)
            return method(self, *args, **kwargs)

        changed.__name__ = name
        return changed

    __delitem__ = _dropping_aux("__delitem__")
    __ior__ = _dropping_aux("__ior__")
    pop = _dropping_aux("pop")
    popitem = _dropping_aux("popitem")
    clear = _dropping_aux("clear")
    update = _dropping_aux("update")
    setdefault = _dropping_aux("setdefault")
    del _dropping_aux


def _flatten(hp: Hyperparams) -> tuple[list[Any], Any]:
    aux = hp.__dict__.get("_aux")
    if aux is None:  # as jax flattens a dict: sorted keys
        aux = hp.__dict__["_aux"] = (tuple(sorted(hp)), tuple(sorted(hp.fixed.items())),
                                     hp.who)
    return list(map(hp.__getitem__, aux[0])), aux


def _flatten_with_keys(hp: Hyperparams) -> tuple[list[Any], Any]:
    children, aux = _flatten(hp)
    return [(jax.tree_util.DictKey(k), c) for k, c in zip(aux[0], children)], aux


def _unflatten(aux: Any, children: Any) -> Hyperparams:
    hp = dict.__new__(Hyperparams)
    dict.update(hp, zip(aux[0], children))
    hp.__dict__.update(fixed=dict(aux[1]), who=aux[2], _aux=aux)
    return hp


jax.tree_util.register_pytree_with_keys(Hyperparams, _flatten_with_keys, _unflatten, _flatten)


class OptimizerState(NamedTuple):
    """State of an optx optimizer.

    Attributes:
      count: number of updates applied so far (int32 scalar, saturating at ``2**31 - 1``);
        torch's per-parameter ``step`` while ``steps`` is ``None``.
      hyperparams: the hyperparameters the next update uses, as arrays, keyed by torch's
        param-group keys (``betas`` is a pair): an ``optx.state.Hyperparams`` dict, which also
        records the branches the constructor fixed. Read with :func:`optx.get_hyperparams`,
        replace with :func:`optx.set_hyperparams`.
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
    hyperparams: dict[str, Any]
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
