"""The schedule-free math shared by ``sgd_schedule_free``, ``adamw_schedule_free`` and
``radam_schedule_free`` (Defazio et al., "The Road Less Scheduled", PyPI ``schedulefree``
1.4.1), written once.

Schedule-free keeps two sequences per parameter: ``z``, the base optimizer's iterate, and the
average ``x`` of the ``z``'s; gradients are taken at their interpolation ``y``::

    y_t = (1 - beta) z_t + beta x_t                    (the params while training)
    z_{t+1} = z_t - lr_t d_t                            (d_t: the base step at y_t)
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}
    c_{t+1} = w_{t+1} / sum_{i <= t+1} w_i,  w_t = t^r * (max_{i <= t} lr_i)^weight_lr_power

(``beta`` is ``momentum`` or ``betas[0]``). The parameters held between steps are ``y`` (the
"train mode" point, the default transformation) or, in schedulefree's ``*Closure`` classes,
``x``; :func:`schedule_free_eval_params` turns ``y`` into ``x`` (what ``optimizer.eval()``
gives). Each optimizer module supplies the base step ``d_t`` (the gradient, plus ``weight_decay
* y``; AdamW divides by Adam's denominator first) and the factor of its learning rate (the
warmup ``min(1, t / warmup_steps)``, RAdam's rectification).

The state is an :class:`optx.OptimizerState`: ``count`` is schedulefree's group ``k``, slots
``z`` (and ``exp_avg_sq``), private scalars ``weight_sum`` and ``lr_max`` (the group keys of the
same names), and the flag ``z_created``: schedulefree creates ``z`` as a copy of the parameter
at the parameter's first step (one with a gradient), and exports it from then on. The weights
and ``c`` are computed in :func:`optx.hyperparams.float_dtype` (float64 under x64,
schedulefree's Python floats).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from optx import hyperparams as hp_lib
from optx import torch_ops, validation
from optx.layout import TorchLayout, TorchTransformation
from optx.state import Hyperparams, OptimizerState, increment, is_optimizer_state

__all__ = ["schedule_free_eval_params"]

Array = jax.Array
# direction(g, y, slots, c) -> (d, new_slots): the base step at y (weight decay included).
Direction = Callable[[Array, Array, dict[str, Array], dict[str, Any]], tuple[Array, dict]]
# lr_factor(hp, t) -> (factor, extra coefficients): the learning rate is hp['lr'] * factor.
LrFactor = Callable[[dict[str, Any], Array], tuple[Array, dict[str, Any]]]

PRIVATE = frozenset({"weight_sum", "lr_max"})
CREATED = "z_created"  # the flag of the lazily created slots (optx.layout.TorchLayout.slot_flags)


def slot_flags(*slots: str) -> tuple[tuple[str, str], ...]:
    """The layout's ``slot_flags``: ``z`` and the other slots exist once the parameter stepped."""
    return tuple((s, CREATED) for s in ("z", *slots))
NOT_TRAIN_MODE = ("Optimizer was not in train mode when step is called. Please insert .train() "
                  "and .eval() calls on the optimizer. See documentation for details.")


def momentum_of(hp: Mapping[str, Any]) -> Any:
    """The interpolation ``beta``: ``momentum`` (SGD) or ``betas[0]``."""
    return hp["momentum"] if "momentum" in hp else hp["betas"][0]


def warmup(hp: dict[str, Any], t: Array) -> Array:
    """schedulefree's ``sched``: ``(k+1)/warmup_steps`` while ``k < warmup_steps``, else 1."""
    w = hp["warmup_steps"]
    k = t - 1
    return jnp.where(k < w, t / jnp.where(k < w, w, 1.0), jnp.ones_like(t))


def averaging(hp: dict[str, Any], t: Array, lr: Array,
              scalars: dict[str, Array]) -> tuple[Array, dict[str, Array]]:
    """``(ckp1, new scalars)``: the weight of the new ``z`` in the average ``x``.

    ``lr_max = max(lr, lr_max)``, ``weight = t**r * lr_max**weight_lr_power``, ``weight_sum +=
    weight``, ``ckp1 = weight / weight_sum`` (0 while ``weight_sum`` is 0, schedulefree's
    ``ZeroDivisionError`` branch)."""
    lr_max = jnp.maximum(lr, scalars["lr_max"])
    weight = t ** hp["r"] * lr_max ** hp["weight_lr_power"]
    weight_sum = scalars["weight_sum"] + weight
    nonzero = weight_sum != 0
    ckp1 = jnp.where(nonzero, weight / jnp.where(nonzero, weight_sum, 1.0), 0.0)
    return ckp1, {"weight_sum": weight_sum, "lr_max": lr_max}


def _lerp(start: Array, end: Array, weight: Any) -> Array:
    """``start.lerp_(end, weight)`` with a Python-float weight, in ``start``'s dtype."""
    return torch_ops.lerp(start, end, jnp.asarray(weight).astype(start.dtype))


def to_eval(y: Array, z: Array, beta: Any) -> Array:
    """``.eval()``: ``p.lerp_(z, 1 - 1/beta)``, from ``y`` to ``x``."""
    return _lerp(y, z, 1 - 1 / jnp.asarray(beta, hp_lib.float_dtype()))


def to_train(x: Array, z: Array, beta: Any) -> Array:
    """``.train()``: ``p.lerp_(z, 1 - beta)``, from ``x`` to ``y``."""
    return _lerp(x, z, 1 - jnp.asarray(beta, hp_lib.float_dtype()))


def schedule_free(
    name: str,
    spec: Mapping[str, Any],
    *,
    layout: TorchLayout,
    direction: Direction,
    lr_factor: LrFactor,
    extra_slots: tuple[str, ...] = (),
    closure_form: bool = False,
    lr_max0: float = -1.0,
) -> TorchTransformation:
    """A schedule-free transformation around the base step ``direction``.

    Args:
      name: the constructor's name, for messages.
      spec: the hyperparameters (constants or schedules), keyed as schedulefree's groups.
      layout: the adapter's record of the schedulefree class.
      direction: the base step at ``y`` (see the module docstring).
      lr_factor: the learning rate's factor at step ``t`` and extra coefficients.
      extra_slots: slots besides ``z``, zero-initialized (AdamW's ``exp_avg_sq``).
      closure_form: the params are ``y`` at the gradient and the update returns ``x`` (the
        ``*Closure`` classes' step after their closure); else ``y`` to ``y``.
      lr_max0: the initial ``lr_max`` (-1 in the train/eval classes, 0 in the closure ones).
    """
    spec = validation.scalar_hyperparams(spec)
    validation.check_numbers(spec, who=name)

    def init(params):
        validation.check_params(params, who=name)
        hp = hp_lib.evaluate(spec, 0)
        slots = {"z": jax.tree_util.tree_map(lambda p: jnp.array(p, copy=True), params)}
        for s in extra_slots:
            slots[s] = jax.tree_util.tree_map(jnp.zeros_like, params)
        dtype = hp_lib.float_dtype()
        scalars = {"weight_sum": jnp.zeros((), dtype), "lr_max": jnp.asarray(lr_max0, dtype),
                   CREATED: jnp.zeros((), bool)}
        # ``name`` lets optx.set_hyperparams run the constructor's checks.
        return OptimizerState(jnp.zeros((), jnp.int32), Hyperparams(hp, {}, name), slots,
                              scalars)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(f"{name} needs the current params: call update(grads, state, params)")
        if not isinstance(state, OptimizerState):
            raise TypeError(f"{name}: expected an OptimizerState, got {type(state).__name__}")
        validation.check_params(params, who=name)
        validation.check_matching(updates, params, who=name)
        p_leaves, treedef = jax.tree_util.tree_flatten(params)
        g_leaves = treedef.flatten_up_to(updates)
        n = len(p_leaves)
        active = np.asarray([g is not None for g in g_leaves], bool)
        # A None gradient (torch's ``p.grad is None``) skips its parameter: whether each
        # parameter has its z is then per parameter (the state takes per-parameter steps, as
        # the builder's optimizers), while the schedule-free bookkeeping stays the group's
        # (schedulefree's k advances for all).
        per_leaf = state.steps is not None or not active.all()
        created = jnp.broadcast_to(state.scalars[CREATED], (n,)) if per_leaf else (
            state.scalars[CREATED])
        state = state._replace(steps=None, scalars={
            k: jnp.reshape(v, (-1,))[0] for k, v in state.scalars.items() if k != CREATED})
        hp = state.hyperparams
        dtype = hp_lib.float_dtype()
        t = increment(state.count).astype(dtype)  # schedulefree's k + 1
        factor, extra = lr_factor(hp, t)
        lr = hp["lr"] * factor
        ckp1, scalars = averaging(hp, t, lr, state.scalars)
        beta = momentum_of(hp)
        c = {"lr": lr, "weight_decay": hp["weight_decay"], "ckp1": ckp1, **extra}
        if closure_form:
            c["x_weight"] = 1 - 1 / beta
        else:
            c["y_coef"] = lr * (beta * (1 - ckp1) - 1)
        slot_leaves = {k: treedef.flatten_up_to(v) for k, v in state.slots.items()}
        deltas, new_slots = [], {k: [] for k in state.slots}
        cast: dict[Any, dict[str, Array]] = {}  # the coefficients per dtype, converted once
        for i, (g, y) in enumerate(zip(g_leaves, p_leaves)):
            slots = {k: v[i] for k, v in slot_leaves.items()}
            if g is None:  # schedulefree skips `p.grad is None`; the group's k still advances
                deltas.append(None)
                for k in slots:
                    new_slots[k].append(slots[k])
                continue
            if y.dtype not in cast:
                cast[y.dtype] = {k: jnp.asarray(v).astype(y.dtype) for k, v in c.items()}
            cd = cast[y.dtype]
            # schedulefree's `if 'z' not in state: z = clone(p)` at the parameter's first step
            has_z = created[i] if per_leaf else created
            z = lax.select(jnp.broadcast_to(has_z, y.shape), slots["z"], y)
            d, new = direction(g, y, slots, cd)
            new_z = z - cd["lr"] * d
            if closure_form:
                x = _lerp(y, z, cd["x_weight"])
                new_y = _lerp(x, new_z, cd["ckp1"])
            else:
                new_y = _lerp(y, z, cd["ckp1"]) + cd["y_coef"] * d
            deltas.append((new_y - y).astype(y.dtype))
            new = {**new, "z": new_z}
            for k in slots:
                new_slots[k].append(new.get(k, slots[k]).astype(slots[k].dtype))
        new_state = OptimizerState(
            count=increment(state.count),
            hyperparams=Hyperparams(hp_lib.advance(spec, hp, increment(state.count)), {}, name),
            slots={k: treedef.unflatten(v) for k, v in new_slots.items()},
            scalars={**{k: v.astype(state.scalars[k].dtype) for k, v in scalars.items()},
                     CREATED: jnp.ones((), bool)},
        )
        if per_leaf:
            new_state = new_state._replace(
                steps=jnp.full((n,), new_state.count, new_state.count.dtype),
                scalars={**{k: jnp.full((n,), v, v.dtype) for k, v in new_state.scalars.items()},
                         CREATED: created | active})
        return treedef.unflatten(deltas), new_state

    return TorchTransformation(init, update, layout)


def _find(state: Any) -> OptimizerState:
    found: list[Any] = []

    def visit(x: Any) -> Any:
        if is_optimizer_state(x) and isinstance(x, OptimizerState) and "z" in x.slots:
            found.append(x)
        return x

    jax.tree_util.tree_map(visit, state, is_leaf=is_optimizer_state)
    if len(found) != 1:
        raise ValueError(
            "schedule_free_eval_params expects a state holding exactly one schedule-free "
            f"optimizer state (optx.sgd_schedule_free, ...), found {len(found)}")
    return found[0]


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    """The parameters schedulefree's ``optimizer.eval()`` gives: the average ``x``.

    The params a schedule-free transformation updates are ``y``, where the gradients are taken
    (schedulefree's train mode); evaluate the model at ``x = y + (1 - 1/beta) (z - y)``
    (``beta``: ``momentum`` or ``betas[0]``), computed with torch's ``lerp`` as
    ``p.lerp_(z, 1 - 1/beta)``. Before the first update there is no ``z`` yet and the params
    are returned as they are, as ``.eval()`` leaves them.

    Args:
      state: the state of :func:`optx.sgd_schedule_free`, :func:`optx.adamw_schedule_free` or
        :func:`optx.radam_schedule_free`, or a pytree holding exactly one (a chain's state).
      params: the current params (``y``), as passed to ``update``.

    Returns:
      The evaluation params ``x``, shaped like ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = jnp.array([1.0, -2.0])
      >>> tx = optx.sgd_schedule_free(lr=0.1)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, -0.5]), state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(optx.schedule_free_eval_params(state, params), precision=4))
      [ 0.95 -1.95]
    """
    st = _find(state)
    beta = momentum_of(st.hyperparams)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    created = jnp.broadcast_to(st.scalars[CREATED], (len(leaves),))
    zs = treedef.flatten_up_to(st.slots["z"])  # type: ignore[attr-defined]
    return treedef.unflatten([  # type: ignore[attr-defined]
        lax.select(jnp.broadcast_to(created[i], y.shape), to_eval(y, z, beta), y)
        for i, (y, z) in enumerate(zip(leaves, zs))])
