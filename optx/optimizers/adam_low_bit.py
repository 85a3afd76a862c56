r"""torchao's low-bit Adam (``torchao.optim.Adam8bit`` ... ``AdamWFp8``): the update, written once.

The six constructors of :mod:`optx.optimizers.low_bit` differ only in how the moments are
stored (:class:`optx.quantized.QuantizedArray` ``"8bit"``, ``"4bit"`` or ``"fp8"``) and in the
weight decay (Adam's L2 or AdamW's decoupled); this module is torchao 0.18's
``_AdamBase.step`` and ``single_param_adam`` for all of them. Everything is computed in float32
as torchao does, whatever the parameter's dtype:

.. math::
   \begin{aligned}
   &\textbf{AdamW: } \theta \leftarrow \theta - (\gamma\lambda)\,\theta
     \qquad \textbf{Adam: } g \leftarrow g + \lambda\theta \\
   &m \leftarrow \operatorname{lerp}(\operatorname{deq}(m_{t-1}), g, 1-\beta_1), \quad
     v \leftarrow \operatorname{lerp}(\operatorname{deq}(v_{t-1}), g^2, 1-\beta_2) \\
   &m_t \leftarrow \operatorname{quant}(m), \quad v_t \leftarrow \operatorname{quant}(v) \\
   &\textit{amsgrad}: v \leftarrow \max(\operatorname{deq}(v^{max}_{t-1}), v), \quad
     v^{max}_t \leftarrow \operatorname{quant}(v) \\
   &\textit{denom} \leftarrow \sqrt{v} / \sqrt{1-\beta_2^t} + \epsilon, \quad
     \theta_t \leftarrow \theta - \gamma\,(m / (1-\beta_1^t)) / \textit{denom}
   \end{aligned}

with the unquantized ``m`` and ``v`` (torchao's "high precision copy") in the parameter update;
``deq`` and ``quant`` are the storage's (a plain array of the parameter's dtype for a tensor
under 4096 elements or not divisible by the block size, torchao's rule, applied to the global
shape). ``beta ** t`` is float32's ``powf`` of the float32 ``beta`` (torchao's ``step`` is a
float32 tensor); ``lr`` is float32, ``1 - beta`` is rounded from double. With
``bf16_stochastic_round`` a bfloat16 parameter is rounded stochastically from the float32 result
(torchao's ``_fp32_to_bf16_sr``); the random bits come from the PRNG key in the state's
``scalars["key"]``, folded with the parameter's step and index (the key itself never changes,
so the update stays a pure function of its inputs); element ``i`` gets
``jax.random.bits(key, shape)[i]`` whichever chunk (below) it is updated in.

A parameter with quantized moments is updated chunk by chunk (:func:`optx.blockwise.map_blocks`:
a loop over chunks of whole blocks, its update written into the gradient's buffer), so the
float32 temporaries are chunk-sized; bit for bit the update in one piece. The parameters are
updated one after the other: each quantized parameter's gradient is read only once the previous
one is done (an exact bitwise OR with a +0.0 computed from its results), so XLA holds one
gradient at a time where it computes them just in time (an elementwise loss gradient).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.random import threefry2x32_p

from optx import hyperparams as hp_lib
from optx import torch_ops, validation
from optx.blockwise import map_blocks
from optx.layout import TorchLayout, TorchTransformation
from optx.quantized import QuantizedArray
from optx.state import Hyperparams, OptimizerState, increment
from optx.torch_optimizer import _once_per_step

Array = jax.Array

MIN_QUANTIZED_SIZE = 4096
"""torchao's (and bitsandbytes') rule: only tensors of at least this many elements, divisible
by the block size, are stored quantized."""

SLOT_SIGNED = {"exp_avg": True, "exp_avg_sq": False, "max_exp_avg_sq": False}
"""Each state slot and whether its values may be negative (the signed code table)."""

_DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)


def quantizes(shape: tuple[int, ...], block_size: int) -> bool:
    """Whether torchao stores a tensor of ``shape`` quantized: at least 4096 elements and a
    multiple of ``block_size`` (read from the global shape, so sharding never changes it)."""
    size = 1
    for d in shape:
        size *= int(d)
    return size >= MIN_QUANTIZED_SIZE and size % block_size == 0


def new_slot(p: Any, kind: str, signed: bool, block_size: int) -> Any:
    """A zero moment for parameter ``p``: quantized, or a plain array of ``p``'s dtype."""
    shape = tuple(jnp.shape(p))
    if quantizes(shape, block_size):
        return QuantizedArray.zeros(shape, kind, signed, block_size)
    return jnp.zeros(shape, jnp.result_type(p))


def _lerp(start: Array, end: Array, w: torch_ops.PreparedLerp, one: Array) -> Array:
    """``start.lerp(end, w)`` for a scalar weight (:func:`optx.torch_ops.lerp`'s formula), the
    product rounded before the sum as inductor computes it (see :func:`single_param_adam`)."""
    return lax.select(w.small, start, end) + (w.coef * (end - start)) * one


def _load(slot: Any) -> Array:
    return slot.dequantize() if isinstance(slot, QuantizedArray) else slot.astype(jnp.float32)


def _store(slot: Any, x: Array) -> Any:
    return slot.requantize(x) if isinstance(slot, QuantizedArray) else x.astype(slot.dtype)


def _pow_f32(base: Array, t: Array) -> Array:
    """C's ``powf(float(base), t)`` (inductor's ``std::pow`` on floats): computed in float64
    when x64 is on (exact to double, rounded once), else in float32."""
    base32 = jnp.asarray(base).astype(jnp.float32)
    dtype = hp_lib.float_dtype()
    return jnp.power(base32.astype(dtype), t.astype(dtype)).astype(jnp.float32)


def coefficients(hp: dict[str, Any], t: Array) -> dict[str, Any]:
    """The float32 scalars of one step; ``t`` the step (a vector: one per parameter)."""
    f32 = jnp.float32
    lr = jnp.asarray(hp["lr"]).astype(f32)
    beta1, beta2 = hp["betas"]
    weight_decay = jnp.asarray(hp["weight_decay"]).astype(f32)
    return {
        "lr": lr,
        "lr_wd": lr * weight_decay,
        "weight_decay": weight_decay,
        "one_minus_beta1": torch_ops.prepare_lerp(jnp.asarray(1 - beta1).astype(f32)),
        "one_minus_beta2": torch_ops.prepare_lerp(jnp.asarray(1 - beta2).astype(f32)),
        "bias_correction1": f32(1) - _pow_f32(beta1, t),
        "bias_correction2_sqrt": jnp.sqrt(f32(1) - _pow_f32(beta2, t)),
        "eps": jnp.asarray(hp["eps"]).astype(f32),
        "one": f32(1),  # opaque once passed through _once_per_step (see single_param_adam)
    }


def random_bits16(key: Array, positions: Array) -> Array:
    """16 random bits (in a uint32) for each flat index in ``positions``:
    ``jax.random.bits(key, shape, uint32)[positions] >> 16`` for a threefry key (JAX's
    partitionable threefry draws element ``i``'s bits from the counter ``i`` alone, so a chunk
    draws its own without the rest), else bits drawn from ``key`` folded with the first
    position."""
    partitionable = getattr(jax.config, "jax_threefry_partitionable", False)
    if str(jax.random.key_impl(key)) == "threefry2x32" and partitionable:
        k1, k2 = jax.random.key_data(key)
        b1, b2 = threefry2x32_p.bind(k1, k2, jnp.zeros_like(positions), positions)
        return (b1 ^ b2) >> 16
    return jax.random.bits(jax.random.fold_in(key, jnp.ravel(positions)[0]), positions.shape,
                           jnp.uint32) >> 16


def fp32_to_bf16_sr(x: Array, key: Array, positions: Array | None = None) -> Array:
    """torchao's ``_fp32_to_bf16_sr``: ``x`` (float32) to bfloat16, rounded away from zero with
    probability (low 16 bits of ``x``) / 2**16, else towards zero: unbiased.

    Args:
      x: float32 values.
      key: a PRNG key; 16 random bits per element are drawn from it.
      positions: the elements' flat indices in the whole tensor (uint32, ``x``'s shape), when
        ``x`` is a chunk of it (:func:`random_bits16`); ``None``: ``x`` is the whole tensor.

    Returns:
      The bfloat16 values."""
    if positions is None:
        positions = lax.iota(jnp.uint32, x.size).reshape(jnp.shape(x))
    bits = lax.bitcast_convert_type(x, jnp.uint32)
    rand = random_bits16(key, positions)
    truncated = bits & jnp.uint32(0xFFFF0000)
    rounded = jnp.where(rand < (bits & jnp.uint32(0xFFFF)), truncated + jnp.uint32(0x10000),
                        truncated)
    return lax.bitcast_convert_type(rounded, jnp.float32).astype(jnp.bfloat16)


def single_param_adam(p: Array, g: Array, slots: dict[str, Any], c: dict[str, Any], *,
                      is_adamw: bool, key: Array | None, positions: Array | None = None,
                      ) -> tuple[Any, dict[str, Any]]:
    """torchao's ``single_param_adam`` for one parameter, or a chunk of whole blocks of one:
    ``(new_p, new_slots)`` (see the module docstring); ``key`` given: stochastic rounding to
    bfloat16, with the random bits of the elements at ``positions`` (see
    :func:`fp32_to_bf16_sr`)."""
    # XLA contracts ``a + b * c`` into an FMA where its fusion puts both in one kernel (so the
    # result would depend on fusion, which sharding changes); inductor never does. ``one`` is
    # a runtime 1.0 (a coefficient XLA cannot fold): ``a + (b * c) * one`` is exact whether
    # or not XLA contracts it, since an FMA of the rounded ``b * c`` with 1.0 adds it exactly.
    one = c["one"]
    p32 = p.astype(jnp.float32)
    g32 = g.astype(jnp.float32)
    if is_adamw:
        p32 = p32 - (c["lr_wd"] * p32) * one
    else:
        g32 = g32 + (c["weight_decay"] * p32) * one
    m = _lerp(_load(slots["exp_avg"]), g32, c["one_minus_beta1"], one)
    v = _lerp(_load(slots["exp_avg_sq"]), (g32 * g32) * one, c["one_minus_beta2"], one)
    new = {"exp_avg": _store(slots["exp_avg"], m), "exp_avg_sq": _store(slots["exp_avg_sq"], v)}
    if "max_exp_avg_sq" in slots:
        v = jnp.maximum(_load(slots["max_exp_avg_sq"]), v)
        new["max_exp_avg_sq"] = _store(slots["max_exp_avg_sq"], v)
    denom = jnp.sqrt(v) / c["bias_correction2_sqrt"] + c["eps"]
    step = (c["lr"] * (m / c["bias_correction1"])) / denom
    if key is not None:
        return fp32_to_bf16_sr(p32 - step, key, positions), new
    if p.dtype == jnp.float32 and not is_adamw:
        return torch_ops.Increment(-step), new  # p + (-step) is p - step bit for bit
    return (p32 - step).astype(p.dtype), new


def _delta(new_p: Any, p: Array) -> Array:
    # torchao copies the new value into p; optax wants a delta. new_p - p is exact when new_p
    # is within a factor of two of p (Sterbenz), so p + delta is new_p.
    if isinstance(new_p, torch_ops.Increment):
        return new_p.value
    return (new_p - p).astype(p.dtype)


def _after(g: Array, zero: Array) -> Array:
    """``g`` bit for bit, computed only once ``zero`` (+0.0 from the previous quantized
    parameter's results) is: XLA then computes each gradient (where it is an elementwise
    expression it can fuse, as ``2 * p``) just before its parameter's loop, and frees it (it
    becomes that parameter's update) before the next gradient is made, instead of holding every
    gradient at once."""
    uint = {2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}[jnp.dtype(g.dtype).itemsize]
    bits = lax.bitcast_convert_type(zero, jnp.uint32).astype(uint)
    return lax.bitcast_convert_type(lax.bitcast_convert_type(g, uint) | bits, g.dtype)


def leaf_update(p: Array, g: Array, slots: dict[str, Any], c: dict[str, Any], *,
                is_adamw: bool, key: Array | None) -> tuple[Array, dict[str, Any]]:
    """One parameter's ``(delta, new_slots)``. Quantized moments are updated chunk by chunk
    (:func:`optx.blockwise.map_blocks`), the update written into the gradient's buffer, so
    the float32 temporaries are chunk-sized; plain moments in one piece."""
    names = [k for k, v in slots.items() if isinstance(v, QuantizedArray)]
    if not names:
        new_p, new = single_param_adam(p, g, slots, c, is_adamw=is_adamw, key=key)
        return _delta(new_p, p), new
    same = jnp.result_type(g) == jnp.result_type(p)
    read, write = ([p], [g]) if same else ([p, g], [jnp.zeros_like(p)])

    def chunk(read: list[Array], write: list[Array], qs: list[QuantizedArray],
              positions: Callable[[], Array]) -> tuple[list[Array], list[QuantizedArray]]:
        p_c, g_c = (read[0], write[0]) if same else (read[0], read[1])
        new_p, new = single_param_adam(p_c, g_c, dict(zip(names, qs)), c, is_adamw=is_adamw,
                                       key=key, positions=None if key is None else positions())
        return [_delta(new_p, p_c)], [new[k] for k in names]

    (delta,), new_qs = map_blocks(chunk, read, write, [slots[k] for k in names])
    return delta, dict(zip(names, new_qs))


def _check_dtypes(params: Any, who: str) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = jnp.result_type(leaf)
        if not any(dtype == d for d in _DTYPES):
            raise TypeError(
                f"{who} supports float16, bfloat16, float32 and float64 parameters (computed in "
                f"float32, as torchao does), but the parameter at "
                f"{jax.tree_util.keystr(path) or '<root>'} has dtype {dtype}")


def _check_state(state: Any, params: Any, expected: Callable[[Any], Any], who: str) -> None:
    """Raises naming the mismatch when ``state``'s slots are not what ``init(params)`` makes
    (another optimizer's state, other params, another block size)."""
    if not isinstance(state, OptimizerState):
        raise TypeError(f"{who}: expected an OptimizerState, got {type(state).__name__}")
    want = jax.eval_shape(expected, params)
    got_def: Any = jax.tree_util.tree_structure(state.slots)
    want_def: Any = jax.tree_util.tree_structure(want)
    if got_def != want_def:
        raise ValueError(
            f"{who}: the state's slots do not fit these params (structure {got_def}, expected "
            f"{want_def}): was it initialized with other params, another block_size, or by "
            "another optimizer?")
    for (path, g), w in zip(jax.tree_util.tree_flatten_with_path(state.slots)[0],
                            jax.tree_util.tree_leaves(want)):
        if jnp.shape(g) != w.shape or jnp.result_type(g) != w.dtype:
            raise ValueError(
                f"{who}: the state's {jax.tree_util.keystr(path)} has shape {jnp.shape(g)} and "
                f"dtype {jnp.result_type(g)}, expected {w.shape} {w.dtype}: was it initialized "
                "with other params?")


def low_bit_adam(
    name: str, layout: TorchLayout, kind: str, *, lr: Any, betas: Any, eps: Any,
    weight_decay: Any, amsgrad: bool, block_size: int, bf16_stochastic_round: bool,
    is_adamw: bool,
) -> TorchTransformation:
    """The transformation behind the six constructors (see the module docstring).

    Args:
      name: the constructor's name, for messages.
      layout: the torchao class's :class:`~optx.layout.TorchLayout`.
      kind: the storage, ``"8bit"``, ``"4bit"`` or ``"fp8"``.
      lr, betas, eps, weight_decay: torchao's hyperparameters (constants or schedules).
      amsgrad: keep ``max_exp_avg_sq``.
      block_size: elements per quantization scale.
      bf16_stochastic_round: round bfloat16 parameters stochastically.
      is_adamw: decoupled weight decay."""
    validation.check_lr(lr)
    validation.check_eps(eps)
    validation.check_betas(betas)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size <= 0 or (
            kind == "4bit" and block_size % 2):
        raise ValueError(
            f"{name}: block_size must be a positive integer" + (" and even (4-bit codes are "
            "packed two a byte)" if kind == "4bit" else "") + f", got {block_size!r}")
    spec = validation.scalar_hyperparams(
        {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
    validation.check_numbers(spec, who=name)
    names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())

    def init_slots(params: Any) -> dict[str, Any]:
        return {k: jax.tree_util.tree_map(
            lambda p, k=k: new_slot(p, kind, SLOT_SIGNED[k], block_size), params) for k in names}

    def init(params: Any) -> OptimizerState:
        validation.check_params(params, who=name)
        _check_dtypes(params, name)
        scalars = {"key": jax.random.key(0)} if bf16_stochastic_round else {}
        # ``name`` lets optx.set_hyperparams run this constructor's checks.
        hp = Hyperparams(hp_lib.evaluate(spec, 0), {}, name)
        return OptimizerState(jnp.zeros((), jnp.int32), hp, init_slots(params), scalars)

    def update(updates: Any, state: Any, params: Any = None, **extra_args: Any) -> Any:
        del extra_args
        if params is None:
            raise ValueError(f"{name} needs the current params: call update(grads, state, params)")
        validation.check_params(params, who=name)
        _check_dtypes(params, name)
        validation.check_matching(updates, params, who=name)
        _check_state(state, params, init_slots, name)
        treedef: Any
        p_leaves, treedef = jax.tree_util.tree_flatten(params)
        g_leaves = treedef.flatten_up_to(updates)
        slot_leaves = {k: treedef.flatten_up_to(v) for k, v in state.slots.items()}
        active = [g is not None for g in g_leaves]
        count = increment(state.count)
        steps = state.steps
        if steps is None and not all(active):
            steps = jnp.full((len(p_leaves),), state.count, state.count.dtype)
        if steps is not None:
            steps = increment(steps, jnp.asarray(active))
            t = steps.astype(jnp.float32)
            c_all = _once_per_step(coefficients(state.hyperparams, t), jnp.max(t))
        else:
            t = count.astype(jnp.float32)
            c_all = _once_per_step(coefficients(state.hyperparams, t), t)
        key = state.scalars.get("key")
        after: Array | None = None  # +0.0, computed from the previous quantized parameter
        deltas: list[Any] = []
        new_slots: dict[str, list[Any]] = {k: [] for k in state.slots}
        for i, (g, p) in enumerate(zip(g_leaves, p_leaves)):
            slots = {k: v[i] for k, v in slot_leaves.items()}
            if g is None:
                deltas.append(None)
                for k in state.slots:
                    new_slots[k].append(slots[k])
                continue
            # Per-parameter steps: the bias corrections are vectors, one entry per parameter.
            c = jax.tree_util.tree_map(lambda x, i=i: x[i] if jnp.ndim(x) else x, c_all)
            leaf_key = None
            if key is not None and jnp.result_type(p) == jnp.bfloat16:
                base = key if key.ndim == 0 else key[i]
                step = count if steps is None else steps[i]
                leaf_key = jax.random.fold_in(jax.random.fold_in(base, step), i)
            quantized = [v for v in slots.values() if isinstance(v, QuantizedArray)]
            if quantized and after is not None:
                g = _after(g, after)
            delta, new = leaf_update(p, g, slots, c, is_adamw=is_adamw, key=leaf_key)
            deltas.append(delta)
            for k in state.slots:
                new_slots[k].append(new[k])
            if quantized:
                name0 = next(k for k in slots if slots[k] is quantized[0])
                done = jnp.abs(jnp.max(new[name0].scale))
                after = jnp.where(jnp.isfinite(done), done, jnp.float32(0)) * jnp.float32(0)
        new_state = OptimizerState(
            count=count,
            hyperparams=Hyperparams(hp_lib.advance(spec, state.hyperparams, count), {}, name),
            slots={k: treedef.unflatten(v) for k, v in new_slots.items()},
            scalars=state.scalars,
            steps=steps,
        )
        return treedef.unflatten(deltas), new_state

    # The update reduces over blocks: optx.sharding.zero must not slice a parameter.
    update.elementwise = False  # type: ignore[attr-defined]
    return TorchTransformation(init, update, layout)
