"""torch's ``optimizer.state``: a mapping from each parameter to a dict of its state.

``opt.state[p]`` takes a parameter array by identity, as torch keys its state by tensor: a leaf
of the current :attr:`~optx.optim.Optimizer.params`, or an array the user gave the optimizer
(optx copies the params, so those stay valid keys). Its value is a live view of that parameter's
state with torch's keys (``step``, ``exp_avg``, ``momentum_buffer``, ...), read from the
functional state (:attr:`~optx.optim.Optimizer.opt_state`); a parameter that has taken no step
has an empty one, as torch creates state lazily. ``len``, iteration (the parameters that have
state, then the user's keys), ``.values()``, ``.items()`` and ``in`` behave as torch's.

Writes take effect at the next step:

* a key of torch's state (``opt.state[p]["exp_avg"] = x``) replaces that array or number in the
  functional state, validated as ``load_state_dict`` validates (shape, dtype, a non-negative
  integer ``step``); an invalid value raises ``ValueError`` and changes nothing;
* ``del opt.state[p]`` or ``opt.state[p].clear()`` gives ``p`` a fresh state (its next step is
  its first, as in torch);
* any other key (``opt.state[p]["note"] = 1``, ``opt.state["custom"] = {...}``) is the user's:
  kept as given and carried through ``state_dict()`` and ``load_state_dict()`` as torch does.
"""

from __future__ import annotations

import collections.abc
from typing import Any, Iterator

import jax

from optx.optim.state_dict import group_entries, reimport, torch_keys


def _index(opt: Any) -> dict[int, tuple[Any, int, int]]:
    """``id(array) -> (array, group, torch position)`` for the current params and the arrays
    the user gave (still alive)."""
    index = {}
    for i, meta in enumerate(opt._slots):
        params = meta.params
        position = {j: k for k, j in enumerate(meta.order)}
        for key, (ref, j) in meta.given.items():
            leaf = ref()
            if leaf is not None:
                index[key] = (leaf, i, position[j])
        for j, leaf in enumerate(jax.tree_util.tree_leaves(params)):
            index[id(leaf)] = (leaf, i, position[j])
    return index


class ParamState(collections.abc.MutableMapping):  # type: ignore[type-arg]
    """One parameter's state (torch's ``opt.state[p]``): see the module docstring."""

    def __init__(self, opt: Any, group: int, position: int) -> None:
        self._opt, self._i, self._k = opt, group, position

    def _entry(self) -> dict[str, Any]:
        return group_entries(self._opt, self._i).get(self._k, {})

    def __getitem__(self, key: str) -> Any:
        return self._entry()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entry())

    def __len__(self) -> int:
        return len(self._entry())

    def __repr__(self) -> str:
        return repr(self._entry())

    def __eq__(self, other: object) -> bool:
        return self._entry() == other

    def _ours(self, key: str) -> bool:
        keys = torch_keys(self._opt, self._i, self._k)
        return keys is None or key in keys

    def _write(self, entry: dict[str, Any] | None) -> None:
        """Installs ``entry`` as this parameter's torch state (None: a fresh one)."""
        opt, i = self._opt, self._i
        entries = group_entries(opt, i)
        if entry:
            entries[self._k] = entry
        else:
            entries.pop(self._k, None)
        state, user = reimport(opt, i, entries)
        slots = list(opt._slots)
        slots[i] = slots[i].replace(state=opt._place_state(state), user=user)
        opt._commit(slots)

    def __setitem__(self, key: str, value: Any) -> None:
        if self._ours(key):
            self._write({**self._entry(), key: value})
        else:
            self._opt._slots[self._i].user.setdefault(self._k, {})[key] = value

    def __delitem__(self, key: str) -> None:
        entry = self._entry()
        if key not in entry:
            raise KeyError(key)
        if self._ours(key):
            del entry[key]
            self._write(entry)
        else:
            user = self._opt._slots[self._i].user
            del user[self._k][key]
            if not user[self._k]:
                del user[self._k]

    def clear(self) -> None:
        """A fresh state for this parameter: its next step is its first."""
        self._write(None)
        self._opt._slots[self._i].user.pop(self._k, None)


class StateMapping(collections.abc.MutableMapping):  # type: ignore[type-arg]
    """torch's ``optimizer.state``: see the module docstring."""

    def __init__(self, opt: Any) -> None:
        self._opt = opt

    def _locate(self, key: Any) -> tuple[int, int] | None:
        found = _index(self._opt).get(id(key))
        if found is None or found[0] is not key:
            return None
        return found[1], found[2]

    def __getitem__(self, key: Any) -> Any:
        loc = self._locate(key)
        if loc is not None:
            return ParamState(self._opt, *loc)
        if isinstance(key, jax.Array) or hasattr(key, "__array__"):
            why = ("an array of opt.params replaced by a step since (JAX arrays are immutable: "
                   "each step makes new ones)" if getattr(key, "is_deleted", bool)() else
                   "not a parameter of the optimizer")
            raise KeyError(
                f"this array is {why}: use a leaf of the current opt.params, or an array given "
                "to the optimizer"
            )
        # torch's state is a defaultdict(dict): reading a new key creates it.
        return self._opt._extra_state.setdefault(key, {})

    def __setitem__(self, key: Any, value: Any) -> None:
        loc = self._locate(key)
        if loc is None:
            self._opt._extra_state[key] = value
            return
        param = ParamState(self._opt, *loc)
        if not isinstance(value, collections.abc.Mapping):
            raise TypeError(f"a parameter's state must be a dict, got {type(value).__name__}")
        ours = {k: v for k, v in value.items() if param._ours(k)}
        param._write(ours)
        user = {k: v for k, v in value.items() if not param._ours(k)}
        meta = self._opt._slots[loc[0]]
        if user:
            meta.user[loc[1]] = user
        else:
            meta.user.pop(loc[1], None)

    def __delitem__(self, key: Any) -> None:
        loc = self._locate(key)
        if loc is None:
            del self._opt._extra_state[key]
        else:
            ParamState(self._opt, *loc).clear()

    def _params_with_state(self) -> Iterator[Any]:
        opt = self._opt
        for i, group in enumerate(opt.param_groups):
            entries = group_entries(opt, i)
            for k, leaf in enumerate(group["params"]):
                if entries.get(k):
                    yield leaf

    def __iter__(self) -> Iterator[Any]:
        yield from self._params_with_state()
        yield from list(self._opt._extra_state)

    def __len__(self) -> int:
        return sum(1 for _ in self._params_with_state()) + len(self._opt._extra_state)

    def __contains__(self, key: object) -> bool:
        loc = self._locate(key)
        if loc is None:
            try:
                return key in self._opt._extra_state
            except TypeError:  # an unhashable key (an array that is not a parameter)
                return False
        return bool(ParamState(self._opt, *loc)._entry())

    def __repr__(self) -> str:
        items = [f"{type(k).__name__}{getattr(k, 'shape', '')}: {dict(v)!r}" if k is not None
                 else "" for k, v in self.items()]
        return "{" + ", ".join(items) + "}"
