"""Param groups: the group dict torch users edit, and what optx keeps beside it.

``opt.param_groups[i]`` is a :class:`Group`, torch's dict: ``params`` (the group's arrays, a list
in torch's order), every hyperparameter, ``param_names`` for named groups and whatever keys the
user adds. Assigning a hyperparameter takes effect at the next step without recompiling;
assigning ``params`` replaces the group's parameters (same arrays keep their state, new ones start
fresh, as torch keys state by tensor). The optimizer learns of every assignment (the group marks
itself changed), so a step with no edits does no per-group Python work.

:class:`Meta` is the rest of a group's bookkeeping: names, torch's order of its leaves, the
caller's arrays (by identity), the arguments its transformation was built with and the user's
per-parameter state entries.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import jax


@dataclasses.dataclass
class Meta:
    """What the optimizer keeps per group besides its params, state and transformation.

    Attributes:
      names: each leaf's name (``jax.tree_util`` order), or None for an unnamed group.
      kind: ``"pairs"`` for ``(name, array)`` pairs, ``"tree"`` for a pytree named by its key
        paths, None for unnamed.
      order: the leaves' indices in torch's order (:func:`optx.optim.param_names.torch_order`).
      given: the caller's arrays, ``id -> (weakref, leaf index)``: the params are copied, so only
        these tell that an array given again is already optimized, and ``opt.state[p]`` finds the
        parameter of an array the user still holds.
      built: the transformation's structure key (see ``Optimizer._structure``).
      tx_args: the arguments the transformation was built with (a copy rebuilds it).
      user: the user's entries of each parameter's state, by torch position.
    """

    names: list[str] | None
    kind: str | None
    order: list[int]
    given: dict[int, tuple[Any, int]]
    built: tuple[Any, ...] = ()
    tx_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    user: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)


def given_arrays(params: Any) -> dict[int, tuple[Any, int]]:
    """The caller's arrays of ``params`` by id, with their leaf index (Python scalars, which
    have no identity to keep, are left out)."""
    given = {}
    for j, leaf in enumerate(jax.tree_util.tree_leaves(params)):
        try:
            given[id(leaf)] = (weakref.ref(leaf), j)
        except TypeError:
            continue
    return given


def leaves_in_order(params: Any, order: list[int]) -> list[Any]:
    """The group's arrays as torch lists them: ``group['params']``."""
    leaves = jax.tree_util.tree_leaves(params)
    return [leaves[j] for j in order]


class Group(dict):
    """A param group dict (torch's); edits reach the optimizer, which holds it weakly (no
    reference cycle: a discarded optimizer is freed at once, as torch's)."""

    def __init__(self, owner: Any, index: int, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._owner = weakref.ref(owner)
        self._index = index

    def _opt(self) -> Any:
        owner = self._owner()
        if owner is None:
            raise RuntimeError("this param group's optimizer no longer exists")
        return owner

    def __setitem__(self, key: str, value: Any) -> None:
        opt = self._opt()
        if key == "params":
            opt._replace_params(self._index, value)
            return
        if key in opt.defaults:  # a 1-element array as a scalar, a list as a tuple
            value = opt._clean_hyperparams({key: value})[key]
        super().__setitem__(key, value)
        opt._changed.add(self._index)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._opt()._changed.add(self._index)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str, *default: Any) -> Any:
        value = super().pop(key, *default)
        self._opt()._changed.add(self._index)
        return value

    def __reduce__(self) -> Any:
        # A copy of a group on its own is a plain dict, as torch's.
        return (dict, (dict(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        return {k: copy.deepcopy(v, memo) for k, v in self.items()}
