"""schedulefree's classes (PyPI ``schedulefree`` 1.4.1) over optx's schedule-free updates.

``SGDScheduleFree``, ``AdamWScheduleFree`` and ``RAdamScheduleFree`` hold the params at ``y``
while training; ``.eval()`` moves them to the average ``x`` and ``.train()`` back, exactly as
schedulefree moves a module's parameters (``p.lerp_(z, 1 - 1/beta)`` and ``p.lerp_(z, 1 -
beta)``), and ``step`` in eval mode raises schedulefree's exception. The ``...Closure`` classes
hold ``x`` and take ``step(closure)``: the params move to ``y`` for the closure and come back
as the new ``x``. (:mod:`optx.optim.schedule_free_wrapper` has ``ScheduleFreeWrapper``.)

The param groups carry schedulefree's bookkeeping keys: ``k`` (steps taken), ``weight_sum``,
``lr_max``, ``scheduled_lr`` (and ``train_mode``). The update computes them in the functional
state (:mod:`optx.schedule_free`); the group keys are kept in step on the host with
schedulefree's own Python-float arithmetic (no device read per step), and a group whose keys
were edited or loaded writes them back into the state before the next step. ``state_dict()``
has schedulefree's layout: ``z`` (and ``exp_avg_sq``) per parameter, no ``step``.
"""

from __future__ import annotations

import textwrap
from typing import Any, Callable

import jax
import jax.numpy as jnp

from optx import schedule_free as sf
from optx.optim.optimizer import Optimizer
from optx.optim.signature import PARAMS_DOC, _args_section
from optx.optim.state_dict import group_entries

__all__: list[str] = []  # the classes are declared in optx.optim

# Keys that tell one schedulefree class's groups from another's.
_DISTINCT = frozenset({"momentum", "betas", "eps", "warmup_steps", "silent_sgd_phase",
                       "train_mode"})
# The group keys the functional state also holds (count, scalars): an edit is written back.
_BOOKKEEPING = ("k", "weight_sum", "lr_max")


def _at(value: Any, k: int) -> Any:
    """A group value for the update after ``k`` steps: a schedule given to the constructor
    (``count -> value``) is evaluated at ``k``, as the state evaluates it."""
    if isinstance(value, tuple):
        return tuple(_at(v, k) for v in value)
    return float(value(k)) if callable(value) else value


def _beta(group: dict[str, Any]) -> float:
    beta = group["momentum"] if "momentum" in group else group["betas"][0]
    return _at(beta, group["k"])  # the value the state holds, as schedule_free_eval_params


def _warmup(group: dict[str, Any], k: int) -> float:
    warmup_steps = _at(group["warmup_steps"], k)
    return (k + 1) / warmup_steps if k < warmup_steps else 1.0


def _rectification(group: dict[str, Any], k: int) -> float:
    step = k + 1
    beta2 = _at(group["betas"], k)[1]
    beta2_t = beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * beta2_t / (1 - beta2_t)
    if rho_t > 4.0:
        return float(((rho_t - 4) * (rho_t - 2) * rho_inf
                      / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5)
    return float(not group["silent_sgd_phase"])


def _advance(group: dict[str, Any], factor: float) -> None:
    """schedulefree's per-step group bookkeeping, in its Python floats (the update computes the
    same numbers in the state)."""
    k = group["k"]
    lr = _at(group["lr"], k) * factor
    lr_max = max(lr, group["lr_max"])
    weight = ((k + 1) ** _at(group["r"], k)) * (lr_max ** _at(group["weight_lr_power"], k))
    values = {"scheduled_lr": lr, "lr_max": lr_max,
              "weight_sum": group.get("weight_sum", 0.0) + weight, "k": k + 1}
    for key, v in values.items():
        dict.__setitem__(group, key, v)


def _class_doc(cls: type, reference: str, extra: str, example: str) -> str:
    constructor = cls._constructor  # type: ignore[attr-defined]
    args = _args_section(constructor.__doc__ or "Args:\n")
    name = constructor.__name__
    update = (f":func:`optx.{name}`" if not name.endswith("_closure")
              else f"``{constructor.__module__}.{name}``")
    return (
        f"``schedulefree.{reference}`` (1.4.1): {update} with schedulefree's object model.\n\n"
        f"{extra}\n\n"
        "Args:\n" + textwrap.indent(PARAMS_DOC, "  ") + "\n" + textwrap.indent(args, "  ")
        + "\n\nExample:\n" + textwrap.indent(example, "  ") + "\n"
    )


_TRAIN_EVAL = (
    "Call ``.train()`` before training and ``.eval()`` before evaluating or saving, as with "
    "schedulefree: they move :attr:`params` between ``y`` (where gradients are taken) and the "
    "average ``x``; ``step`` in eval mode raises schedulefree's exception. The groups carry "
    "``train_mode``, ``k``, ``weight_sum``, ``lr_max`` and ``scheduled_lr``; ``state_dict()`` "
    "has schedulefree's layout (``z``, ``exp_avg_sq``). See :class:`Optimizer` for the rest.")

_EXAMPLE = '''\
>>> import jax
>>> import jax.numpy as jnp
>>> import optx
>>> params = {{"w": jnp.array([0.0, 2.0])}}
>>> def loss_fn(p):
...     return jnp.sum((p["w"] - 1.0) ** 2)
>>> opt = optx.optim.{name}(params, lr=0.1)
>>> opt.train()
>>> for _ in range(8):
...     opt.step(jax.grad(loss_fn)(opt.params))
>>> opt.eval()
>>> bool(loss_fn(opt.params) < loss_fn(params))
True'''

_CLOSURE_EXAMPLE = '''\
>>> import jax.numpy as jnp
>>> import optx
>>> params = {{"w": jnp.array([0.0, 2.0])}}
>>> def loss_fn(p):
...     return jnp.sum((p["w"] - 1.0) ** 2)
>>> opt = optx.optim.{name}(params, lr=0.1)
>>> for _ in range(8):
...     loss = opt.step(loss_fn)
>>> bool(loss_fn(opt.params) < loss_fn(params))
True'''


class _ScheduleFree(Optimizer):
    """What the six schedulefree classes share: the group keys and their bookkeeping."""

    _group_init: dict[str, Any] = {}
    _sf_extra = ""
    _sf_example = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_constructor" in cls.__dict__:  # a schedulefree class: its docstring
            cls.__doc__ = _class_doc(cls, cls.__name__, cls._sf_extra,
                                     cls._sf_example.format(name=cls.__name__))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a param group, with schedulefree's bookkeeping keys (``k`` 0, ...).

        Args:
          param_group: a dict with ``params`` and any hyperparameters to override the
            defaults (see :meth:`Optimizer.add_param_group`)."""
        super().add_param_group({**self._group_init, **param_group})

    def _write_bookkeeping(self) -> None:
        """Groups whose bookkeeping keys differ from those last written (edited, loaded, or a
        fresh group): their values into the state, in one commit, before the step reads it."""
        written = self.__dict__.setdefault("_sf_written", {})
        slots = None
        for i, g in enumerate(self.param_groups):
            now = tuple(g[k] for k in _BOOKKEEPING)
            if written.get(i) == now:
                continue
            slots = slots or list(self._slots)
            st = slots[i].state
            count = jnp.asarray(int(g["k"]), st.count.dtype)
            shape = st.scalars["weight_sum"].shape  # (n,) once a gradient was None
            scalars = {**st.scalars, **{k: jnp.full(shape, float(g[k]), st.scalars[k].dtype)
                                        for k in ("weight_sum", "lr_max")}}
            steps = None if st.steps is None else jnp.full(st.steps.shape, count)
            slots[i] = slots[i].replace(
                state=st._replace(count=count, scalars=scalars, steps=steps))
            written[i] = now
        if slots is not None:
            self._commit(slots)

    def _after_step(self) -> None:
        written = self.__dict__.setdefault("_sf_written", {})
        for i, g in enumerate(self.param_groups):
            factor = _warmup if "warmup_steps" in g else _rectification  # RAdam's: no warmup
            _advance(g, factor(g, g["k"]))
            written[i] = tuple(g[k] for k in _BOOKKEEPING)  # what the state now holds

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads schedulefree's (or this class's) state_dict; one of another class (its groups
        lack this class's keys or have another's) is refused and nothing changes.

        Args:
          state_dict: ``{'state': ..., 'param_groups': ...}`` as :meth:`state_dict` or
            schedulefree's ``optimizer.state_dict()`` gives it (tensors as numpy arrays)."""
        ours = set(self.defaults) | set(self._group_init)
        for gi, saved in enumerate(state_dict.get("param_groups", ()) if isinstance(
                state_dict, dict) else ()):
            if not isinstance(saved, dict):
                continue
            missing = sorted((ours - {"foreach", "silent_sgd_phase"}) - set(saved))
            foreign = sorted((_DISTINCT & set(saved)) - ours)
            if missing or foreign:
                raise ValueError(
                    f"loaded param group {gi} is not a {type(self).__name__} group: "
                    + (f"it lacks {missing}" if missing else f"it has {foreign}")
                    + "; was it saved by another optimizer?")
        super().load_state_dict(state_dict)

    def _has_z(self, i: int) -> bool:
        return int(self._slots[i].state.count) > 0

    def _moved(self, to_train: bool, groups: list[int]) -> None:
        """Moves group ``groups``' params between ``x`` and ``y`` (through the ``params``
        setter)."""
        new: dict[int, Any] = {}
        for i in groups:
            g = self.param_groups[i]
            if not self._has_z(i):
                continue
            entries = group_entries(self, i)
            move = sf.to_train if to_train else sf.to_eval
            for pos, p in enumerate(g["params"]):
                z = entries.get(pos, {}).get("z")
                if z is not None:
                    new[id(p)] = move(p, z, _beta(g))
        if new:
            self.params = jax.tree_util.tree_map(lambda p: new.get(id(p), p), self.params)


class _TrainEval(_ScheduleFree):
    """schedulefree's train/eval classes (``SGDScheduleFree``, ...)."""

    _sf_extra = _TRAIN_EVAL
    _sf_example = _EXAMPLE
    _group_init = {"k": 0, "train_mode": False, "weight_sum": 0.0, "lr_max": -1.0,
                   "scheduled_lr": 0.0}

    def eval(self) -> None:
        """schedulefree's ``eval()``: the params of each group in train mode move to ``x``."""
        groups = [i for i, g in enumerate(self.param_groups) if g["train_mode"]]
        self._moved(False, groups)
        for i in groups:
            dict.__setitem__(self.param_groups[i], "train_mode", False)

    def train(self) -> None:
        """schedulefree's ``train()``: the params of each group in eval mode move to ``y``."""
        groups = [i for i, g in enumerate(self.param_groups) if not g["train_mode"]]
        self._moved(True, groups)
        for i in groups:
            dict.__setitem__(self.param_groups[i], "train_mode", True)

    def step(self, grads: Any = None, closure: Callable[[Any], Any] | None = None) -> Any:
        """One schedule-free step (see :meth:`Optimizer.step`); raises schedulefree's
        exception when the optimizer is not in train mode (call ``.train()`` first).

        Args:
          grads: the gradients at :attr:`params` (``y``), or the closure as torch passes it.
          closure: ``closure(params) -> loss``; its gradients are taken at :attr:`params`.

        Returns:
          The closure's loss, or ``None``."""
        if not self.param_groups[0]["train_mode"]:
            raise Exception(sf.NOT_TRAIN_MODE)
        self._write_bookkeeping()
        loss = super().step(grads, closure)
        self._after_step()
        return loss


class _Closure(_ScheduleFree):
    """schedulefree's closure classes (``SGDScheduleFreeClosure``, ...)."""

    _sf_extra = ("The params are the average ``x``; ``step(closure)`` takes the gradient at "
                  "``y``, as schedulefree's closure classes. See :class:`Optimizer` for the "
                  "rest.")
    _sf_example = _CLOSURE_EXAMPLE
    _group_init = {"k": 0, "weight_sum": 0.0, "lr_max": 0.0, "scheduled_lr": 0.0}

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One step, as schedulefree's closure classes: the params move from ``x`` to ``y``,
        ``closure(params)`` gives the loss and its gradients there, and the params become the
        new ``x``.

        Args:
          closure: ``closure(params) -> loss``, a pure function of the params (required).

        Returns:
          The closure's loss at ``y``."""
        if not callable(closure):
            raise TypeError(f"{type(self).__name__}.step needs a closure: opt.step(closure)")
        self._write_bookkeeping()
        self._moved(True, list(range(len(self.param_groups))))
        loss = super().step(closure=closure)
        self._after_step()
        return loss
