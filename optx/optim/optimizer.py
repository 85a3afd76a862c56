"""The one stateful, ``torch.optim``-style optimizer over any optx functional constructor.

Each CamelCase class (``Adam``, ``SGD``, ...) is a name plus a constructor; everything else lives
here. The group dicts in ``param_groups`` are the source of truth for hyperparameters: before each
step their float values are written into each group's ``state.hyperparams`` (as arrays of the
stored dtype, so editing ``group['lr']`` never recompiles). A structural flag (``amsgrad``, or a
``momentum`` raised from 0, which allocates a buffer) rebuilds that group's transformation.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from optx.layout import TorchLayout, layout_of
from optx.optim.state_dict import export_state_dict, import_state_dict
from optx.transformation import apply_updates

# Constructor arguments that are torch implementation switches; kept in the groups for torch's
# layout and ignored by the math.
_FLOAT_TYPES = (float, int, np.floating, np.integer)


def _is_group_list(params: Any) -> bool:
    return (
        isinstance(params, (list, tuple))
        and len(params) > 0
        and all(isinstance(g, dict) and "params" in g for g in params)
    )


def _signature_defaults(constructor: Callable[..., Any]) -> dict[str, Any]:
    sig = inspect.signature(constructor)
    return {
        name: p.default
        for name, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


class Optimizer:
    """torch.optim.Optimizer's surface over an optx functional constructor."""

    _constructor: Callable[..., Any]

    def __init__(self, params: Any, **kwargs: Any) -> None:
        defaults = _signature_defaults(type(self)._constructor)
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {sorted(unknown)}"
            )
        defaults.update(kwargs)
        self.defaults: dict[str, Any] = defaults
        self._single = not _is_group_list(params)
        self.param_groups: list[dict[str, Any]] = []
        self._txs: list[Any] = []
        self._states: list[Any] = []
        self._built: list[Any] = []
        self._params: list[Any] = []
        self._jitted: dict[Any, Callable[..., Any]] = {}
        self._step_called = False
        self.trace_count = 0
        groups = [{"params": params}] if self._single else list(params)
        self._value_and_grad: dict[Any, Callable[..., Any]] = {}
        for g in groups:
            self.add_param_group(g)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError("param_group must be a dict with a 'params' entry")
        group = {k: v for k, v in param_group.items() if k != "params"}
        unknown = set(group) - set(self.defaults)
        # torch keeps unknown keys (e.g. 'initial_lr', user tags); they are simply not passed on.
        del unknown
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        # Own copies: the step donates params and state, which must not delete the caller's
        # arrays, and no two donated leaves may share a buffer.
        params = _copy_tree(param_group["params"])
        tx = self._make_tx(group)
        layout = self._layout_of(tx)
        if self.param_groups and not layout.supports_param_groups:
            raise ValueError(
                f"{layout.torch_name} doesn't support per-parameter options (parameter groups)"
            )
        self._params.append(params)
        self._txs.append(tx)
        self._states.append(_copy_tree(tx.init(params)))
        self._built.append(self._structure(group, layout))
        full = {"params": params, **dict(sorted(group.items()))}
        self.param_groups.append(_Group(self, len(self.param_groups), full))
        self._jitted.clear()

    def _make_tx(self, group: dict[str, Any]) -> Any:
        args = {k: group[k] for k in self.defaults}
        return type(self)._constructor(**args)

    def _layout_of(self, tx: Any) -> TorchLayout:
        """The torch layout ``tx`` carries; a plain one for a constructor that is not optx's."""
        return layout_of(tx) or TorchLayout(type(self).__name__)

    def _structure(self, group: dict[str, Any], layout: TorchLayout) -> tuple[Any, ...]:
        """What, if changed, needs a new transformation: non-float arguments, and whether a
        hyperparameter of ``layout.structural_zeros`` is zero (torch allocates SGD's momentum
        buffer only for a nonzero momentum)."""
        items = []
        for k in self.defaults:
            v = group[k]
            if isinstance(v, bool) or not isinstance(v, (*_FLOAT_TYPES, tuple, list)):
                items.append((k, _freeze(v)))
            elif k in layout.structural_zeros:
                items.append((k, v != 0))
        return tuple(items)

    def _replace_group_state(self, i: int, group: dict[str, Any], tx: Any, state: Any) -> None:
        """Installs group ``i``'s loaded hyperparameters (``group``, without ``params``),
        transformation and state (``load_state_dict``'s commit)."""
        g = self.param_groups[i]
        params = g["params"]
        dict.clear(g)
        dict.update(g, {"params": params, **group})
        self._txs[i], self._states[i] = tx, state
        self._built[i] = self._structure(g, self._layout_of(tx))
        self._jitted.clear()

    def _rebuild_if_needed(self, i: int) -> None:
        group = self.param_groups[i]
        layout = self._layout_of(self._txs[i])
        structure = self._structure(group, layout)
        # A momentum lowered to 0 keeps its buffer (the math handles 0); only raising it from a
        # buffer-less 0 needs a new transformation.
        structure = tuple(
            (k, True) if k in layout.structural_zeros and dict(self._built[i]).get(k) else (k, v)
            for k, v in structure
        )
        if structure == self._built[i]:
            return
        tx = self._make_tx(group)
        new = tx.init(self._params[i])
        old = self._states[i]
        if hasattr(old, "slots") and hasattr(new, "slots"):
            slots = {k: old.slots.get(k, v) for k, v in new.slots.items()}
            scalars = {k: old.scalars.get(k, v) for k, v in new.scalars.items()}
            new = new._replace(count=old.count, slots=slots, scalars=scalars)
        self._txs[i], self._states[i], self._built[i] = tx, _copy_tree(new), structure
        self._jitted.clear()

    # ------------------------------------------------------------------ access
    @property
    def params(self) -> Any:
        return self._params[0] if self._single else list(self._params)

    @property
    def state(self) -> Any:
        """The functional states, one per group (the state itself for a single pytree)."""
        return self._states[0] if self._single else list(self._states)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """A no-op: gradients are passed to :meth:`step` explicitly."""
        del set_to_none

    def _hyperparam_args(self) -> list[Any]:
        out = []
        for group, state in zip(self.param_groups, self._states):
            stored = state.hyperparams
            hp = {}
            for k, old in stored.items():
                new = group[k]
                if jax.tree_util.tree_leaves(new, is_leaf=callable) and any(
                    callable(x) for x in jax.tree_util.tree_leaves(new, is_leaf=callable)
                ):
                    # A schedule given to the constructor: the state advances it itself.
                    hp[k] = old
                    continue
                leaves, treedef = jax.tree_util.tree_flatten(old)
                try:
                    new_leaves = treedef.flatten_up_to(new)  # type: ignore[attr-defined]  # PyTreeDef has no stubs
                except (ValueError, TypeError) as e:
                    raise ValueError(
                        f"param group hyperparameter {k!r} must be shaped like {old!r}, got {new!r}"
                    ) from e
                hp[k] = jax.tree_util.tree_unflatten(
                    treedef,
                    [np.asarray(n, dtype=o.dtype) for o, n in zip(leaves, new_leaves)]
                )
            out.append(hp)
        return out

    # ------------------------------------------------------------------ step
    def _compiled(self, value_fn: Callable[..., Any] | None) -> Callable[..., Any]:
        key = value_fn
        if key in self._jitted:
            return self._jitted[key]
        if len(self._jitted) >= 8:  # LBFGS with a fresh closure every step: bound the cache
            self._jitted.clear()
        txs = list(self._txs)
        single = self._single

        def run(params, states, grads, hps, value):
            self.trace_count += 1
            new_params, new_states = [], []
            for i, (tx, p, s, g, hp) in enumerate(zip(txs, params, states, grads, hps)):
                s = s._replace(hyperparams=hp)
                extra = {}
                if value_fn is not None:
                    def group_fn(q, i=i):
                        allp = list(params)
                        allp[i] = q
                        return value_fn(allp[0] if single else allp)

                    extra = {"value": value, "value_fn": group_fn}
                updates, s = tx.update(g, s, p, **extra)
                new_params.append(apply_updates(p, updates))
                new_states.append(s)
            return new_params, new_states

        fn = jax.jit(run, donate_argnums=(0, 1))
        self._jitted[key] = fn
        return fn

    def step(self, grads: Any = None, closure: Callable[[Any], Any] | None = None) -> Any:
        """One update. ``step(grads)`` with gradients shaped like :attr:`params`, or
        ``step(closure=fn)`` with ``fn(params) -> loss``: gradients are taken for you and the
        loss (at the params before the update) is returned."""
        if grads is None and closure is None:
            raise ValueError("step needs grads or closure=fn")
        for i in range(len(self.param_groups)):
            self._rebuild_if_needed(i)
        loss = None
        value = None
        value_fn = None
        if closure is not None:
            # Jitted once per closure object (a loop that reuses one function compiles once).
            if closure not in self._value_and_grad:
                if len(self._value_and_grad) >= 8:
                    self._value_and_grad.clear()
                self._value_and_grad[closure] = jax.jit(jax.value_and_grad(closure))
            loss, grads = self._value_and_grad[closure](self.params)
            value = loss
            if getattr(type(self), "_needs_value_fn", False):
                value_fn = closure
        grads_list = [grads] if self._single else list(grads)
        if len(grads_list) != len(self._params):
            raise ValueError(
                f"expected gradients for {len(self._params)} param groups, got {len(grads_list)}"
            )
        fn = self._compiled(value_fn)
        new_params, new_states = fn(
            list(self._params), list(self._states), grads_list, self._hyperparam_args(), value
        )
        self._params = list(new_params)
        self._states = list(new_states)
        for g, p in zip(self.param_groups, self._params):
            dict.__setitem__(g, "params", p)
        self._step_called = True
        return loss

    # ------------------------------------------------------------------ torch surface
    def state_dict(self) -> dict[str, Any]:
        return export_state_dict(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        import_state_dict(self, state_dict)

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            if i:
                lines.append("")
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _copy_tree(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)


def _freeze(v: Any) -> Any:
    try:
        hash(v)
        return v
    except TypeError:
        return id(v)


class _Group(dict):
    """A param group dict; assigning ``params`` replaces the group's parameters."""

    def __init__(self, owner: Optimizer, index: int, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._owner = owner
        self._index = index

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "params":
            value = _copy_tree(value)
            self._owner._params[self._index] = value
        super().__setitem__(key, value)
