"""The gradient-transformation protocol, shared with optax.

An optx transformation is a pair of pure functions ``(init, update)``. The field names, their
order and the ``update(updates, state, params=None, **extra_args)`` signature are optax's, so an
optx transformation can sit inside ``optax.chain`` (and flax/orbax code that expects optax) and an
optax transformation can sit inside :func:`optx.chain`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp

PyTree = Any
Params = PyTree
Updates = PyTree
OptState = PyTree


class TransformInitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


class GradientTransformation(NamedTuple):
    """A pure ``(init, update)`` pair, laid out exactly like ``optax.GradientTransformation``.

    ``init(params) -> state`` builds the state. ``update(updates, state, params=None,
    **extra_args) -> (updates, new_state)`` turns gradients into deltas to add to the params
    (see :func:`apply_updates`). Extra keyword arguments (``value``, ``value_fn``, ...) are passed
    to every transformation; those that do not use them ignore them.

    Args:
        init: ``init(params) -> state``: the initial state for a params pytree.
        update: ``update(updates, state, params=None, **extra_args) -> (updates, new_state)``:
            the gradients turned into updates, and the next state.
    """

    init: TransformInitFn
    update: TransformUpdateFn


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


def identity() -> GradientTransformation:
    """A transformation that returns its updates unchanged."""

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, state

    return GradientTransformation(init, update)


def _accepts_extra_args(update: Callable[..., Any]) -> bool:
    import inspect

    try:
        sig = inspect.signature(update)
    except (TypeError, ValueError):  # builtins, C callables: assume the protocol
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def chain(*transformations: Any) -> GradientTransformation:
    """Applies transformations in sequence; the state is the tuple of their states.

    Accepts optx and optax transformations alike. Extra keyword arguments of ``update`` reach
    every member that accepts ``**extra_args``; plain ``update(updates, state, params)`` members
    (older optax transformations) are called without them.

    Args:
        *transformations: the transformations, applied first to last (clipping first, the
            optimizer after it, as torch users call ``clip_grad_norm_`` before ``step``).

    Returns:
        One :class:`GradientTransformation` whose state is the tuple of the members' states.

    Example:
        >>> import jax.numpy as jnp, optx
        >>> tx = optx.chain(optx.clip_grad_norm(1.0), optx.sgd(lr=0.1))
        >>> params = jnp.zeros(2)
        >>> state = tx.init(params)
        >>> updates, state = tx.update(jnp.array([3.0, 4.0]), state, params)
        >>> [round(float(u), 6) for u in updates]  # the gradient clipped to norm 1, times -lr
        [-0.06, -0.08]
    """
    txs = tuple(transformations)
    takes_extra = tuple(_accepts_extra_args(tx.update) for tx in txs)

    def init(params: Params) -> tuple[OptState, ...]:
        return tuple(tx.init(params) for tx in txs)

    def update(updates, state, params=None, **extra_args):
        if len(state) != len(txs):
            raise ValueError(
                f"optx.chain of {len(txs)} transformations got a state of length {len(state)}; "
                "was the state built by this chain's init?"
            )
        new_state = []
        for tx, s, extra in zip(txs, state, takes_extra):
            kwargs = extra_args if extra else {}
            updates, s = tx.update(updates, s, params, **kwargs)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Adds ``updates`` to ``params`` leaf by leaf, keeping each parameter's dtype.

    ``None`` update leaves (masked parameters) leave the parameter unchanged.

    Args:
        params: the parameter pytree.
        updates: a pytree of the same structure, as ``update`` returned it.

    Returns:
        The new parameters: ``params + updates``, each leaf cast back to its parameter's dtype.
    """

    def add(p, u):
        if u is None:
            return p
        p = jnp.asarray(p)
        return (p + u).astype(p.dtype)

    return jax.tree_util.tree_map(add, params, updates, is_leaf=lambda x: x is None)
