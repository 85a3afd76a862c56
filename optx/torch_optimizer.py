"""The one builder behind every elementwise torch optimizer.

Each optimizer module supplies three small pure functions and this module does the rest:
pytree plumbing, hyperparameters held in the state (constants or schedules), torch's complex
handling (a complex tensor is updated as its real view), input checks, and the conversion of
torch's in-place parameter update into an optax-style delta.

* ``init_slots(p) -> {name: buffer}``: the per-parameter state, keyed by torch's state names
  (``exp_avg``, ``momentum_buffer``, ...), so the ``optx.optim`` adapter can export and import
  torch state_dicts without per-optimizer code.
* ``coefficients(hp, t, scalars) -> (coeffs, new_scalars)``: the scalar part of the step, with
  ``t`` the step number after torch's increment (1 on the first update). It runs in
  :func:`optx.hyperparams.float_dtype` (float64 under x64, as torch's Python-float math), and
  the results are cast to each parameter's dtype afterwards, as torch casts a Python scalar
  when it meets a tensor.
* ``update_leaf(g, p, slots, c) -> (new_p, new_slots)``: torch's ``_single_tensor_*`` loop
  body for one parameter, written out of place. When torch's last op is ``p.add_(x)`` on the
  untouched ``p``, return :class:`optx.torch_ops.Increment` ``(x)`` instead of ``p + x``: the
  update is then ``x`` itself, with no subtraction to turn a new parameter into a delta. A slot
  it does not return is carried over unchanged (the layout's ``kept_slots``).

torch decides ``if weight_decay != 0`` (each hyperparameter of the layout's
``structural_zeros``) in Python at each step; the builder decides it once. A constant 0 leaves
the branch out: ``coefficients`` sees ``None`` for it (:func:`optx.torch_ops.decay` of None is no
decay), the state still stores the 0 and :func:`optx.set_hyperparams` refuses a nonzero value.
The ``fixed_when_nonzero`` ones given as a nonzero constant refuse 0 likewise (the optimizer
leaves out its code for 0). Schedules and traced values keep both branches.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Collection, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from optx import hyperparams as hp_lib
from optx import torch_ops, validation
from optx.layout import TorchLayout, TorchTransformation
from optx.state import Hyperparams, OptimizerState, increment, with_per_leaf_steps

Array = jax.Array
Slots = dict[str, Array]
Coefficients = dict[str, Any]


def _to_real(x: Array) -> Array:
    return jnp.stack([x.real, x.imag], axis=-1)


def _from_real(x: Array, like: Array) -> Array:
    return jax.lax.complex(x[..., 0], x[..., 1]).astype(like.dtype)


def _map_slots(fn, slots: Slots) -> Slots:
    return {k: None if v is None else fn(v) for k, v in slots.items()}


def _cast(coeffs: Coefficients, dtype: Any) -> Coefficients:
    """The coefficients in ``dtype`` (floating ones only), with every :class:`torch_ops.Lerp`
    weight prepared in that dtype, as torch's lerp kernel sees it."""

    def cast(c):
        c = jnp.asarray(c)
        return c.astype(dtype) if jnp.issubdtype(c.dtype, jnp.floating) else c

    def prepare(c):
        return torch_ops.prepare_lerp(c.weight) if isinstance(c, torch_ops.Lerp) else c

    cast_coeffs = jax.tree_util.tree_map(cast, coeffs)
    return jax.tree_util.tree_map(
        prepare, cast_coeffs, is_leaf=lambda c: isinstance(c, torch_ops.Lerp)
    )


def _apply_leaf(update_leaf, g, p, slots: Slots, cast_coeffs: Callable[[Any], Coefficients]):
    """One parameter's update, returning (delta, new_slots). Complex leaves use their real view.

    ``cast_coeffs(dtype)`` is the coefficients cast to ``dtype``, memoized per dtype by the
    caller: a model with thousands of leaves traces one set of converts per dtype, not per leaf.
    """
    if jnp.iscomplexobj(p):
        real = jnp.finfo(p.dtype).dtype
        new_p, new_slots = update_leaf(
            _to_real(g), _to_real(p), _map_slots(_to_real, slots), cast_coeffs(real)
        )
        if isinstance(new_p, torch_ops.Increment):
            new_p = torch_ops.Increment(_from_real(new_p.value, p))
        else:
            new_p = _from_real(new_p, p)
        new_slots = {
            k: None if v is None else _from_real(v, slots[k]) for k, v in new_slots.items()
        }
    else:
        new_p, new_slots = update_leaf(g, p, slots, cast_coeffs(p.dtype))
        new_slots = {k: None if v is None else v.astype(slots[k].dtype)
                     for k, v in new_slots.items()}
    if isinstance(new_p, torch_ops.Increment):
        return new_p.value.astype(p.dtype), new_slots
    # torch updates p in place; optax wants a delta. new_p - p is exact whenever new_p is within a
    # factor of two of p (Sterbenz), so params + delta reproduces torch's new_p bit for bit.
    return (new_p - p).astype(p.dtype), new_slots


def _once_per_step(coeffs: Coefficients, t: Array) -> Coefficients:
    """The coefficients, computed once per step instead of once per leaf on XLA:CPU.

    XLA fuses cheap scalar ops (``1 - beta``, a negation, a compare) into every consumer, so a
    scalar computed once in ``coefficients`` would be recomputed inside each leaf's kernel: a
    few instructions per leaf, and XLA:CPU's compile time grows with the instructions. The
    results of a ``conditional`` cannot be fused into their users, so on CPU the coefficients
    pass through one whose predicate is always true (``t >= 1``; XLA cannot prove it) and each
    leaf's kernel receives them as plain scalar arguments. ``lax.optimization_barrier`` does
    not do this: XLA:CPU removes it before fusion. The coefficients of each
    :class:`optx.torch_ops.Packed` entry pass as one vector, which every kernel reading any of
    them receives whole (why: its docstring). On GPU and TPU a conditional would cost a
    device-to-host sync per step, and their compile times are not the bottleneck, so the
    coefficients are passed through as they are.
    """
    leaves, treedef = jax.tree_util.tree_flatten(coeffs)
    if not leaves:
        return coeffs
    bundles = _bundles(coeffs)
    loose = sorted(set(range(len(leaves))).difference(*bundles))

    def cpu(*xs):
        result = list(xs)
        if not bundles:
            return _through_cond(t, result)
        *out, t_after = _through_cond(t, [xs[i] for i in loose] + [t])
        # The vectors pass a second conditional that waits for the first, so every kernel
        # reading one of them gets it after all its other coefficients (see Packed).
        vectors = _through_cond(t_after, [jnp.stack([xs[i] for i in b]) for b in bundles])
        for i, x in zip(loose, out):
            result[i] = x
        for b, vector in zip(bundles, vectors):
            for k, i in enumerate(b):
                result[i] = vector[k]
        return result

    out = jax.lax.platform_dependent(*leaves, cpu=cpu, default=lambda *xs: list(xs))
    return jax.tree_util.tree_unflatten(treedef, out)


def _through_cond(t: Array, args: list[Array]) -> list[Array]:
    """``args`` through a conditional on ``t > 0``: always true, which XLA cannot prove."""
    return jax.lax.cond(t > 0, lambda: args, lambda: [jnp.zeros_like(x) for x in args])


def _bundles(coeffs: Coefficients) -> list[list[int]]:
    """Indices, among ``coeffs``' leaves, of each :class:`optx.torch_ops.Packed` entry's floating
    leaves, grouped by dtype and shape (in practice each entry is one bundle)."""

    def is_packed(x):
        return isinstance(x, torch_ops.Packed)

    bundles: list[list[int]] = []
    start = 0
    for node in jax.tree_util.tree_leaves(coeffs, is_leaf=is_packed):
        leaves = jax.tree_util.tree_leaves(node)
        if is_packed(node):
            groups: dict[Any, list[int]] = {}
            for k, x in enumerate(leaves):
                if jnp.issubdtype(x.dtype, jnp.floating):
                    groups.setdefault((x.dtype, x.shape), []).append(start + k)
            bundles += [b for b in groups.values() if len(b) > 1]
        start += len(leaves)
    return bundles


def _shard_like(slots: Slots, p: Any) -> Slots:
    """Ties each slot shaped like its parameter to that parameter, so it is sharded like it.

    Outside jit ``zeros_like``/``full_like`` of a committed array already inherit its sharding.
    Under jit a constant has no data dependence on ``p`` and the compiler places it on one
    device; selecting it through ``where(False, p, slot)`` makes the sharding propagate from
    ``p`` (the select folds away after propagation, so it costs nothing at run time).
    """
    if not isinstance(p, jax.core.Tracer):
        return slots

    def tie(s):
        if s is None or s.shape != p.shape:
            return s
        src = p if jnp.iscomplexobj(s) or not jnp.iscomplexobj(p) else p.real
        return jnp.where(jnp.zeros(p.shape, bool), src.astype(s.dtype), s)

    return {k: tie(v) for k, v in slots.items()}



def _per_dtype(coeffs: Coefficients, t: Array) -> Callable[[int, Any], Coefficients]:
    """``leaf_coeffs(i, dtype)``: the step's coefficients cast to ``dtype``, memoized per dtype:
    a model with thousands of leaves traces one set of converts per dtype, not per leaf."""
    cache: dict[Any, Coefficients] = {}

    def leaf_coeffs(i: int, dtype: Any) -> Coefficients:
        del i
        dtype = jnp.dtype(dtype)
        if dtype not in cache:
            cache[dtype] = _once_per_step(_cast(coeffs, dtype), t)
        return cache[dtype]

    return leaf_coeffs


def _per_leaf(coefficients, hp, state: OptimizerState, active: list[bool], n: int):
    """The coefficients of an update where parameters have their own step counts: torch's
    per-parameter ``step``, which diverge once a gradient leaf is ``None``.

    ``coefficients`` runs once, vectorized over the leaves (``jax.vmap`` over the steps and the
    per-leaf scalars), so the scalar math is traced once, not once per leaf. Returns
    ``(leaf_coeffs(i, dtype), scalars, steps)`` with the skipped leaves' scalars and steps
    unchanged.
    """
    state = with_per_leaf_steps(state, n)  # the first such update: each took `count` steps
    steps, old = state.steps, state.scalars
    assert steps is not None
    mask = np.asarray(active)
    new_steps = increment(steps, mask)
    t = new_steps.astype(hp_lib.float_dtype())
    coeffs, scalars = jax.vmap(coefficients, in_axes=(None, 0, 0))(hp, t, old)
    scalars = {k: jnp.where(mask, v, old[k]) for k, v in scalars.items()}
    cache: dict[Any, Coefficients] = {}
    t_any = jnp.max(t)

    def leaf_coeffs(i: int, dtype: Any) -> Coefficients:
        dtype = jnp.dtype(dtype)
        if dtype not in cache:
            cache[dtype] = _once_per_step(_cast(coeffs, dtype), t_any)
        return jax.tree_util.tree_map(lambda c: c[i], cache[dtype])

    return leaf_coeffs, scalars, new_steps


def torch_optimizer(
    name: str,
    hyperparams: Mapping[str, Any],
    *,
    init_slots: Callable[[Array], Slots],
    coefficients: Callable[[dict[str, Any], Array, dict[str, Array]], tuple[Coefficients, dict]],
    update_leaf: Callable[[Array, Array, Slots, Coefficients], tuple[Array, Slots]],
    init_scalars: Callable[[dict[str, Any]], dict[str, Array]] | None = None,
    elementwise: bool = True,
    layout: TorchLayout,
    optional: frozenset[str] = frozenset(),
    fixed_when_nonzero: Collection[str] = (),
) -> TorchTransformation:
    """Builds a :class:`GradientTransformation` from an optimizer's per-parameter algorithm.

    Args:
      name: the constructor's name, used in error messages (``"optx.adam"``).
      hyperparams: torch's param-group keys mapped to constants or schedules; tuples (``betas``)
        may mix both.
      init_slots: per-parameter state for one parameter leaf.
      coefficients: the scalar part of one step (see the module docstring).
      update_leaf: one parameter's update (see the module docstring).
      init_scalars: the initial shared scalar state, from the initial hyperparameters.
      elementwise: whether ``update_leaf`` treats every element on its own (given the shared
        coefficients). False when it reduces over the whole parameter (Adafactor's RMS and
        factored moments, Muon's orthogonalisation): :func:`optx.sharding.zero` then updates
        whole leaves instead of slices. Recorded as ``update.elementwise``.
      layout: what the ``optx.optim`` adapter needs to know of the torch class (its name, whether
        it counts a per-parameter ``step``, ...); the returned transformation carries it as
        ``.layout``.
      optional: hyperparameters (``"eps[0]"`` inside a tuple) that may be None; any other None
        or non-number is refused with a ``TypeError`` naming it.
      fixed_when_nonzero: hyperparameters of ``layout.structural_zeros`` for which the update,
        given a nonzero constant, has no code for 0 (SGD's momentum); they then refuse 0.
    """
    spec = validation.scalar_hyperparams(hyperparams)
    validation.check_numbers(spec, who=name, optional=optional)
    # name -> nonzero, for each torch branch decided now (see the module docstring).
    fixed = {
        k: not hp_lib.is_zero(v)
        for k, v in spec.items()
        if k in layout.structural_zeros
        and (hp_lib.is_zero(v) or (k in fixed_when_nonzero and hp_lib.is_constant(v)))
    }
    dropped = frozenset(k for k, nonzero in fixed.items() if not nonzero)

    def abstract_slots(structs):
        # The slots init makes for these abstract params, without allocating them. Defined
        # once, so jax's trace cache serves repeated calls.
        return [init_slots(p) for p in structs]

    def expected_slots(structs):
        return jax.eval_shape(abstract_slots, structs)

    def init(params):
        validation.check_params(params, who=name)
        hp = hp_lib.evaluate(spec, 0)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        per_leaf = [_shard_like(init_slots(jnp.asarray(p)), p) for p in leaves]
        # A slot may exist for some leaves only (Adafactor factors matrices, not vectors);
        # the others hold None, as torch's state simply lacks the key.
        names = dict.fromkeys(k for s in per_leaf for k in s)
        if not per_leaf:
            names = dict.fromkeys(init_slots(jnp.zeros(())))
        slots = {k: treedef.unflatten([s.get(k) for s in per_leaf]) for k in names}
        scalars = init_scalars(hp) if init_scalars is not None else {}
        return OptimizerState(jnp.zeros((), jnp.int32), Hyperparams(hp, fixed, name), slots,
                              scalars)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                f"{name} needs the current params: call update(grads, state, params)"
            )
        if not isinstance(state, OptimizerState):
            raise TypeError(f"{name}: expected an OptimizerState, got {type(state).__name__}")
        validation.check_params(params, who=name)
        validation.check_matching(updates, params, who=name)
        validation.check_slots(
            state.slots, params, expected_slots, who=name, optional=layout.kept_slots
        )
        hp = state.hyperparams
        # A branch left out: coefficients see None (torch_ops.decay(None) is no decay).
        hp_args = {k: None if k in dropped else v for k, v in hp.items()}
        # A None gradient leaf skips its parameter, as torch skips ``p.grad is None``. Which
        # leaves are None is static (part of the tree), so each pattern compiles once.
        # (A None subtree of the params, equinox's filtered fields, is structure, not a leaf.)
        p_leaves, treedef = jax.tree_util.tree_flatten(params)
        g_leaves = treedef.flatten_up_to(updates)
        active = [g is not None for g in g_leaves]
        slot_leaves = {k: treedef.flatten_up_to(v) for k, v in state.slots.items()}
        count = increment(state.count)
        if state.steps is None and all(active):
            t = count.astype(hp_lib.float_dtype())
            coeffs, scalars = coefficients(hp_args, t, state.scalars)
            leaf_coeffs = _per_dtype(coeffs, t)
            steps = None
        else:
            leaf_coeffs, scalars, steps = _per_leaf(
                coefficients, hp_args, state, active, len(g_leaves))

        deltas, new_slot_leaves = [], {k: [] for k in state.slots}
        for i, (g, p) in enumerate(zip(g_leaves, p_leaves)):
            slots = {k: v[i] for k, v in slot_leaves.items()}
            if g is None:
                delta, new = None, slots
            else:
                delta, new = _apply_leaf(update_leaf, g, p, slots, functools.partial(
                    leaf_coeffs, i))
            deltas.append(delta)
            for k in state.slots:
                new_slot_leaves[k].append(new[k] if k in new else slot_leaves[k][i])

        new_state = OptimizerState(
            count=count,
            hyperparams=Hyperparams(hp_lib.advance(spec, hp, count), fixed, name),
            slots={k: treedef.unflatten(v) for k, v in new_slot_leaves.items()},
            scalars=scalars,
            steps=steps,
        )
        return treedef.unflatten(deltas), new_state

    update.elementwise = elementwise  # type: ignore[attr-defined]  # read by optx.sharding.zero
    return TorchTransformation(init, update, layout)
