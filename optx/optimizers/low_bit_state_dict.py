"""torchao's state_dict layout for the low-bit optimizers: the export/import hooks of their
:class:`optx.layout.TorchLayout`.

torchao keeps, per parameter that has stepped, ``step`` (a float32 0-d tensor), ``exp_avg``,
``exp_avg_sq`` and with amsgrad ``max_exp_avg_sq``; each moment is a plain tensor or, for a
parameter torchao quantizes, a tensor subclass whose fields are the codes and scales:
``OptimState8bit(codes, scale, qmap, signed)`` (codes shaped like the parameter),
``OptimState4bit(codes, scale, qmap, signed, shape)`` (codes flat, two a byte) and
``OptimStateFp8(codes, scale)``. optx exports a quantized moment as a dict of those fields
(numpy arrays, a bool and a tuple: what :func:`optx.optim.save` stores without pickle) and
imports either form, checking the class, the element count, the block size (codes per scale),
the signedness and the code table against the optimizer's: a state saved by another class or
with another ``block_size`` raises ``ValueError`` naming it. Parameter groups, their checks and
the commit are ``optx.optim.state_dict``'s.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from optx.quantized import QuantizedArray, qmap

_TORCHAO_CLASS = {"8bit": "OptimState8bit", "4bit": "OptimState4bit", "fp8": "OptimStateFp8"}
_STEP_MAX = np.iinfo(np.int32).max


def _per_param(tree: Any) -> list[Any]:
    return jax.tree_util.tree_flatten(
        tree, is_leaf=lambda x: x is None or isinstance(x, QuantizedArray))[0]


def _export_slot(x: Any) -> Any:
    if not isinstance(x, QuantizedArray):
        return x
    if x.kind == "fp8":
        return {"codes": jnp.reshape(x.codes, x.shape), "scale": x.scale}
    fields = {"codes": jnp.reshape(x.codes, x.shape if x.kind == "8bit" else (-1,)),
              "scale": x.scale, "qmap": np.array(qmap(x.kind, x.signed)), "signed": x.signed}
    if x.kind == "4bit":
        fields["shape"] = tuple(x.shape)
    return fields


def export_state(layout: Any, state: Any, order: Sequence[int],
                 sizes: Sequence[int]) -> dict[int, dict[str, Any]]:
    """torchao's entry of each parameter that has stepped, keyed by torch position."""
    del layout, sizes
    n = len(order)
    steps = (np.full((n,), int(state.count)) if state.steps is None
             else np.asarray(state.steps))
    slots = {k: _per_param(v) for k, v in state.slots.items()}
    out = {}
    for k, j in enumerate(order):
        if steps[j] == 0:
            continue
        entry: dict[str, Any] = {"step": np.asarray(steps[j], np.float32)}
        entry.update({name: _export_slot(leaves[j]) for name, leaves in slots.items()})
        out[k] = entry
    return out


def _numpy(x: Any) -> np.ndarray:
    """An array of any kind (torch's included, float8 and bfloat16 too) as numpy."""
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        torch = sys.modules["torch"]
        x = x.detach().cpu()
        special = {torch.float8_e4m3fn: (torch.uint8, jnp.float8_e4m3fn),
                   torch.bfloat16: (torch.int16, jnp.bfloat16)}
        if x.dtype in special:
            raw, dtype = special[x.dtype]
            return x.view(raw).numpy().view(dtype)
        return x.numpy()
    return np.asarray(x)


def _fields(value: Any) -> dict[str, Any] | None:
    """A quantized moment's fields (torchao's tensor subclass or a dict of its fields), with
    ``type`` its torchao class name when known; None for a plain array."""
    if isinstance(value, dict) and "codes" in value and "scale" in value:
        return {**value, "type": value.get("type")}
    if hasattr(value, "codes") and hasattr(value, "scale"):
        return {"codes": value.codes, "scale": value.scale, "qmap": getattr(value, "qmap", None),
                "signed": getattr(value, "signed", None), "type": type(value).__name__}
    return None


def _import_quantized(fields: dict[str, Any], ref: QuantizedArray, what: str,
                      cls: str) -> QuantizedArray:
    expected = _TORCHAO_CLASS[ref.kind]
    if fields["type"] is not None and fields["type"] != expected:
        raise ValueError(f"{what} is torchao's {fields['type']}, but {cls} stores {expected}: "
                         "was it saved by another optimizer?")
    codes, scale = _numpy(fields["codes"]), _numpy(fields["scale"])
    code_dtype = np.dtype(jnp.float8_e4m3fn) if ref.kind == "fp8" else np.dtype(np.uint8)
    if codes.dtype != code_dtype:
        raise ValueError(f"{what} has codes of dtype {codes.dtype}; {cls} stores {code_dtype}")
    values = codes.size * (2 if ref.kind == "4bit" else 1)
    if values != ref.size:
        raise ValueError(f"{what} holds {values} values; the parameter has {ref.size} (shape "
                         f"{ref.shape})")
    if scale.ndim != 1 or scale.size == 0 or values % scale.size:
        raise ValueError(f"{what} has scales of shape {scale.shape} for {values} values")
    if values // scale.size != ref.block_size:
        raise ValueError(
            f"{what} was saved with block_size {values // scale.size}, but this {cls} uses "
            f"block_size {ref.block_size}: construct it with block_size="
            f"{values // scale.size}")
    signed = fields.get("signed")
    if signed is not None and bool(signed) != ref.signed:
        raise ValueError(f"{what} is {'un' * (not signed)}signed; {cls} keeps it "
                         f"{'un' * (not ref.signed)}signed")
    table = fields.get("qmap")
    if table is not None and not np.array_equal(_numpy(table), qmap(ref.kind, ref.signed)):
        raise ValueError(f"{what} has a code table (qmap) other than torchao's {ref.kind} map")
    return QuantizedArray(jnp.array(codes.reshape(np.shape(ref.codes)), copy=True),
                          jnp.array(scale, jnp.float32, copy=True), ref.kind, ref.signed,
                          ref.shape, ref.block_size)


def _import_slot(value: Any, ref: Any, what: str, cls: str) -> Any:
    fields = _fields(value)
    if isinstance(ref, QuantizedArray):
        if fields is None:
            raise ValueError(
                f"{what} is a plain array, but {cls} stores this parameter's moments quantized "
                f"({ref.kind}, block_size {ref.block_size}): was it saved by another optimizer, "
                "or with a block_size that does not divide it?")
        return _import_quantized(fields, ref, what, cls)
    if fields is not None:
        raise ValueError(
            f"{what} is quantized ({fields['type'] or 'codes and scales'}), but {cls} keeps this "
            f"parameter's moments as a plain {ref.dtype} array (it has {math.prod(ref.shape)} "
            "elements: under 4096, or not a multiple of block_size): was it saved with another "
            "block_size?")
    try:
        array = _numpy(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not an array: {type(value).__name__}") from err
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise ValueError(f"{what} has dtype {array.dtype}, expected {ref.dtype}")
    if array.shape != ref.shape:
        raise ValueError(f"{what} has shape {array.shape}, expected {ref.shape}")
    return jnp.array(array, ref.dtype, copy=True)


def _step(value: Any, label: str) -> int:
    v = _numpy(value)
    what = f"state 'step' of parameter {label}"
    if v.size != 1 or not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype,
                                                                               np.integer)):
        raise ValueError(f"{what} must be a scalar number, got {v.dtype} of shape {v.shape}")
    x = float(v.reshape(()))
    if not math.isfinite(x) or x < 0 or x != int(x) or x > _STEP_MAX:
        raise ValueError(f"{what} is {x!r}: a step count must be a non-negative integer at "
                         f"most {_STEP_MAX}")
    return int(x)


def import_state(layout: Any, fresh: Any, entries: Sequence[Any], labels: Sequence[str],
                 order: Sequence[int], sizes: Sequence[int]) -> Any:
    """The group's state from torchao's (or optx's) entries, in torch order; raises
    ``ValueError`` naming the parameter and the mismatch."""
    del sizes
    cls = layout.torch_name
    slots = {k: _per_param(v) for k, v in fresh.slots.items()}
    new = {k: list(v) for k, v in slots.items()}
    steps = np.zeros((len(order),), np.int64)
    keys = {"step", *fresh.slots}
    for k, (entry, label) in enumerate(zip(entries, labels)):
        j = order[k]
        if not entry:
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"state of parameter {label} must be a dict, got "
                             f"{type(entry).__name__}")
        if set(entry) != keys:
            raise ValueError(
                f"state of parameter {label} has keys {sorted(map(str, entry))}, but {cls} "
                f"keeps {sorted(keys)}: was it saved by another optimizer (or with another "
                "amsgrad)?")
        steps[j] = _step(entry["step"], label)
        for name in fresh.slots:
            new[name][j] = _import_slot(entry[name], slots[name][j],
                                        f"state {name!r} of parameter {label}", cls)
    if not steps.any():
        return fresh
    treedefs: dict[str, Any] = {k: jax.tree_util.tree_structure(
        v, is_leaf=lambda x: x is None or isinstance(x, QuantizedArray))
        for k, v in fresh.slots.items()}
    state = fresh._replace(slots={k: treedefs[k].unflatten(v) for k, v in new.items()})
    if (steps == steps[0]).all():
        return state._replace(count=jnp.asarray(steps[0], fresh.count.dtype))
    return state._replace(count=jnp.asarray(steps.max(), fresh.count.dtype),
                          steps=jnp.asarray(steps, fresh.count.dtype))
