"""The optimizer state types: a leaf module, so the builder and :mod:`optx.hyperparams` both
import it without importing each other.

:class:`OptimizerState` is the state of every optimizer built by
:func:`optx.torch_optimizer.torch_optimizer`; LBFGS's :class:`optx.LbfgsState` is another
NamedTuple with the same ``count`` and ``hyperparams`` fields. :func:`is_optimizer_state` is what
:func:`optx.get_hyperparams` and :func:`optx.set_hyperparams` look for in a state pytree.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

Array = jax.Array


class OptimizerState(NamedTuple):
    """State of an optx optimizer.

    Attributes:
      count: number of updates applied so far (int32 scalar). torch's per-parameter ``step``.
      hyperparams: the hyperparameters the next update uses, as arrays, keyed by torch's
        param-group keys (``betas`` is a pair). Read with :func:`optx.get_hyperparams`, replace
        with :func:`optx.set_hyperparams`.
      slots: per-parameter buffers keyed by torch's state names; each is a tree like the params.
      scalars: torch state that is a scalar per parameter and equal for all of them
        (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``, SGD's buffer-initialized flag).
    """

    count: Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, Any]
    slots: dict[str, Any]
    scalars: dict[str, Array]


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
