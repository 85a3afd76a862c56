"""Block-quantized arrays: optimizer state in 8 bits, 4 bits or fp8, as torchao stores it.

A :class:`QuantizedArray` is a float32 tensor stored as codes plus one float32 scale per block
of ``block_size`` consecutive elements (the tensor flattened, as torchao's ``view(-1,
block_size)``). It is a pytree node whose leaves are the two arrays, ``codes`` of shape
``(n_blocks, block_size)`` (``block_size // 2`` bytes for 4 bits, two codes a byte) and
``scale`` of shape ``(n_blocks,)``, so a state made of them jits, donates, shards and
checkpoints like any other; the kind, signedness and logical shape are static metadata.
Nothing in it is specific to Adam: any optimizer's moment can be a :class:`QuantizedArray`
(read it with :meth:`~QuantizedArray.dequantize`, write it back with
:meth:`~QuantizedArray.requantize`).

The formats are torchao 0.18's (``torchao/optim/subclass_{8bit,4bit,fp8}.py``), bit for bit:

* ``"8bit"``: the scale is the block's ``max |x|`` (at least ``1e-12``); ``x / scale`` is
  rounded to the nearest entry of bitsandbytes' dynamic-tree map (:func:`qmap`: signed for a
  first moment, unsigned for a second), by torchao's branchless binary search and its
  half-way rule (``x - lo >= (hi - lo) * 0.5`` rounds up).
* ``"4bit"``: the same with 16 entries (the signed dynamic map with 3 exponent bits, and for an
  unsigned tensor the linear map ``1/16 ... 1`` without zero), two codes per byte, the first
  in the high nibble.
* ``"fp8"``: ``scale = max|x| / 448`` and the codes are ``x / scale`` cast to float8 e4m3fn
  (round to nearest even).

Under :func:`optx.sharding.zero_shardings` both arrays are split along the block axis (whole
blocks per device) when the device count divides the number of blocks, and replicated
otherwise, so a block never straddles two devices.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array

KINDS = ("8bit", "4bit", "fp8")
"""The storage formats of :class:`QuantizedArray`."""

_FP8 = jnp.float8_e4m3fn
_FP8_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max


def _linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` in float32, with torch's CPU kernel: the first
    half counted up from ``start``, the second half down from ``end``, each a fused
    multiply-add (one rounding; exact in float64 here, then rounded once to float32)."""
    start32, end32 = np.float32(start), np.float32(end)
    step = np.float64((end32 - start32) / np.float32(steps - 1))
    i = np.arange(steps)
    up = (np.float64(start32) + step * i).astype(np.float32)
    down = (np.float64(end32) - step * (steps - 1 - i)).astype(np.float32)
    return np.where(i < steps // 2, up, down)


def _dynamic_map(signed: bool, max_exponent_bits: int, total_bits: int) -> np.ndarray:
    """torchao's ``create_dynamic_map`` (bitsandbytes' dynamic tree without zero padding), with
    its float32 arithmetic: each exponent's fraction midpoints times a power of ten."""
    data: list[float] = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = _linspace_f32(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / np.float32(2.0)
        power = np.float32(10 ** (-(max_exponent_bits - 1) + i))
        data += (power * means).tolist()
        if signed:
            data += (-power * means).tolist()
    if additional_items > 0:
        boundaries = _linspace_f32(0.1, 1, additional_items + 1)
        means = (boundaries[:-1] + boundaries[1:]) / np.float32(2.0)
        power = np.float32(10 ** (-(max_exponent_bits - 1) + max_exponent_bits - 1))
        data += (power * means).tolist()
        if signed:
            data += (-power * means).tolist()
    data += [0.0, 1.0]
    assert len(data) == 2**total_bits
    return np.sort(np.asarray(data, np.float32))


@functools.cache
def qmap(kind: str, signed: bool) -> np.ndarray:
    """The code -> value table of a quantized kind (float32, sorted), as torchao's
    ``get_qmap_signed`` / ``get_qmap_unsigned``; ``"fp8"`` has none (its codes are floats).

    Args:
      kind: ``"8bit"`` or ``"4bit"``.
      signed: the table for signed values (a first moment) or non-negative ones (a second).

    Returns:
      A read-only float32 array of 256 (8 bits) or 16 (4 bits) values.

    Example:
      >>> from optx.quantized import qmap
      >>> table = qmap("4bit", False)
      >>> print(table.shape, table[0], table[-1])
      (16,) 0.0625 1.0
    """
    if kind == "8bit":
        table = _dynamic_map(signed, 7, 8)
    elif kind == "4bit":
        table = (_dynamic_map(True, 3, 4) if signed
                 else _linspace_f32(0, 1, 17)[1:])  # linear, without zero
    else:
        raise ValueError(f"kind {kind!r} has no code table (the 8bit and 4bit kinds have one)")
    table.setflags(write=False)
    return table


def _search_reference(x: np.ndarray, table: np.ndarray, bits: int) -> np.ndarray:
    """torchao's ``quantize_{8,4}bit_with_qmap`` in numpy float32: a branchless binary search
    for the last entry ``<= x``, then up one code when ``x - lo >= (hi - lo) * 0.5``."""
    top, half = 2**bits - 1, 2 ** (bits - 1)
    codes = np.where(x >= table[half], half, 0)
    step = half // 2
    while step:
        codes = codes + np.where(x >= table[codes + step], step, 0)
        step //= 2
    up = np.minimum(codes + 1, top)
    with np.errstate(invalid="ignore"):
        rounds_up = (x - table[codes]) >= (table[up] - table[codes]) * np.float32(0.5)
    return np.where(rounds_up, up, codes)


@functools.cache
def _lookup(kind: str, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """torchao's search as a lookup on the float32's top 16 bits (sign, exponent, 7 mantissa
    bits): the code is monotone in ``x`` and changes at most once within each of these 65536
    buckets (checked here), so ``code(x) = base[key] + (x >= threshold[key])`` with ``base``
    the code of the bucket's smallest value and ``threshold`` the smallest value of the next
    code (NaN where none). Built by bisection with :func:`_search_reference`; bit for bit the
    binary search (packed for one gather per value by :func:`_packed_lookup`)."""
    table, bits = qmap(kind, signed), (8 if kind == "8bit" else 4)
    keys = np.arange(65536, dtype=np.uint32)
    negative = keys >= 0x8000

    def value(j: np.ndarray) -> np.ndarray:  # the j-th smallest float of each bucket
        low = np.where(negative, 0xFFFF - j, j).astype(np.uint32)
        return ((keys << 16) | low).view(np.float32)

    first = np.zeros(65536, np.int64)
    last = np.full(65536, 0xFFFF, np.int64)
    base = _search_reference(value(first), table, bits)
    end = _search_reference(value(last), table, bits)
    finite = np.isfinite(value(first)) & np.isfinite(value(last))
    jumps = np.where(finite, end - base, 0)
    assert jumps.max() <= 1 and jumps.min() >= 0, "a bucket holds two code changes"
    lo, hi = first.copy(), last.copy()  # the first index with the next code is in (lo, hi]
    for _ in range(16):
        mid = (lo + hi) // 2
        up = _search_reference(value(mid), table, bits) > base
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    threshold = np.where(jumps == 1, value(hi), np.float32(np.nan)).astype(np.float32)
    return base.astype(np.uint8), threshold


_KEY_LO, _KEY_HI = 0x3000, 0x3F80  # the buckets of 2**-31 and of 1.0: outside, no code changes


@functools.cache
def _packed_lookup(kind: str, signed: bool) -> np.ndarray:
    """:func:`_lookup` packed into one int32 per bucket and cut to the buckets that matter.

    With ``jump`` the position (``0 .. 0xFFFF``, counted from the bucket's smallest value) of
    the bucket's first value with the next code (``0x10000``: none), the code is ``base +
    (position >= jump)``; the entry is ``(base + 1) * 2**17 - jump``, so that the code is
    ``(entry + position) >> 17`` (``position - jump`` is in ``[-2**16, 2**16)``): one gather,
    whose result is used once (XLA then computes it inside its consumer's loop). The buckets
    of magnitudes under 2**-31 and over 1.0 are each one code with no jump (checked here, for
    both signs, infinities included), so a magnitude's bucket is clamped to ``[2**-31, 1.0]``:
    2 x 2945 entries (23 KB, cache-resident) instead of 65536."""
    base, threshold = _lookup(kind, signed)
    keys = np.arange(65536, dtype=np.uint32)
    low = threshold.view(np.uint32) & 0xFFFF
    jump = np.where(np.isnan(threshold), 0x10000, np.where(keys >= 0x8000, 0xFFFF - low, low))
    entry = ((base.astype(np.int64) + 1) << 17) - jump
    halves = []
    for sign in (0, 0x8000):
        below = entry[sign:sign + _KEY_LO + 1]
        above = entry[sign + _KEY_HI:sign + 0x7F81]  # up to the infinity's bucket
        assert np.all(below == below[-1]) and below[-1] % 2**17 == 2**16, "code below"
        assert np.all(above == above[0]) and above[0] % 2**17 == 2**16, "code above"
        halves.append(entry[sign + _KEY_LO:sign + _KEY_HI + 1])
    table = np.concatenate(halves).astype(np.int32)
    table.setflags(write=False)
    return table


def _take(table: Any, index: Array) -> Array:
    """``table[index]`` (a 1-D constant table, indices known in bounds): one gather, with no
    normalization of negative indices."""
    dims = lax.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(0,),
                                      start_index_map=(0,))
    return lax.gather(jnp.asarray(table), index[..., None], dims, slice_sizes=(1,),
                      mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def _search(x: Array, kind: str, signed: bool) -> Array:
    """torchao's rounding of the scaled values ``x`` to codes (see :func:`_lookup` and
    :func:`_packed_lookup`); NaN gives code 0, as torchao's search does."""
    table = _packed_lookup(kind, signed)
    bits = lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.int32)
    negative = bits >> 31  # 0, or -1 (all ones) for a negative sign
    width = _KEY_HI - _KEY_LO + 1
    key = jnp.clip((bits >> 16) & 0x7FFF, _KEY_LO, _KEY_HI) - _KEY_LO + (negative & width)
    position = (bits ^ negative) & 0xFFFF  # from the bucket's smallest value up
    codes = (_take(table, key) + position) >> 17
    return jnp.where(jnp.isnan(x), jnp.uint8(0), codes.astype(jnp.uint8))


def _to_e4m3fn(x: Array) -> Array:
    """The float32 ``x`` cast to float8 e4m3fn (round to nearest even; NaN for a NaN, an
    infinity or a magnitude that rounds beyond 448), as the bits of the float8 (uint8): XLA's
    ``convert`` bit for bit (checked on all 2**32 float32s), in integer ops that XLA:CPU
    vectorizes (its own conversion goes one element at a time through float16)."""
    bits = lax.bitcast_convert_type(x, jnp.int32)
    magnitude = bits & 0x7FFFFFFF
    # Normal: the mantissa rounded to 3 bits (round half to even), the exponent rebiased 127 -> 7.
    normal = ((magnitude + 0x7FFFF + ((magnitude >> 20) & 1)) >> 20) - (120 << 3)
    # Under 2**-6, subnormal: |x| / 2**-9 rounded half to even (8 is the smallest normal).
    subnormal = jnp.round(jnp.abs(x) * jnp.float32(512)).astype(jnp.int32)
    code = jnp.where(magnitude < 0x3C800000, subnormal, normal)
    code = jnp.where((code > 0x7E) | (magnitude > 0x7F800000), 0x7F, code)
    return (((bits >> 24) & 0x80) | code).astype(jnp.uint8)


def _from_e4m3fn(codes: Array) -> Array:
    """The float32 values of float8 e4m3fn bits (uint8): XLA's ``convert`` bit for bit (all 256
    codes, NaN's bits included), in vectorizable integer ops."""
    b = codes.astype(jnp.int32)
    exponent, mantissa = (b >> 3) & 0xF, b & 7
    normal = ((exponent + 120) << 23) | (mantissa << 20)
    subnormal = lax.bitcast_convert_type(mantissa.astype(jnp.float32) * jnp.float32(2.0**-9),
                                         jnp.int32)
    magnitude = jnp.where(exponent == 0, subnormal, normal)
    magnitude = jnp.where((b & 0x7F) == 0x7F, 0x7FC00000, magnitude)
    return lax.bitcast_convert_type(magnitude | ((b & 0x80) << 24), jnp.float32)


def _div_exact(x: Array, c: float) -> Array:
    """``x / c`` for a float32 ``x`` and a constant ``c``, IEEE-rounded as torch divides. XLA
    rewrites a division by a constant into a product with its (rounded) reciprocal, one ulp off
    now and then; in float64 (under x64) that product is within 2**-52 of the quotient, never
    near a float32 rounding boundary for c = 448, so rounding it gives the IEEE float32
    quotient. Without x64 the float32 product is used (an ulp off at times)."""
    if jnp.zeros((), dtype=float).dtype == jnp.float64:
        return (x.astype(jnp.float64) / c).astype(jnp.float32)
    return x / jnp.float32(c)


class QuantizedArray:
    """A float32 tensor stored block-quantized (see the module docstring).

    Args:
      codes: ``(n_blocks, block_size)`` uint8 codes (``"8bit"``), ``(n_blocks, block_size //
        2)`` uint8 bytes of two codes (``"4bit"``) or ``(n_blocks, block_size)`` float8 e4m3fn
        values (``"fp8"``).
      scale: ``(n_blocks,)`` float32, one scale per block.
      kind: ``"8bit"``, ``"4bit"`` or ``"fp8"``.
      signed: whether the values may be negative (picks the code table; fp8 is always signed).
      shape: the shape of the tensor it stands for.
      block_size: the number of consecutive values that share a scale.

    Attributes:
      codes: the codes (a pytree leaf).
      scale: the block scales (a pytree leaf).
      kind: the storage format.
      signed: whether the code table is the signed one.
      shape: the logical shape.
      block_size: values per scale.

    Example:
      >>> import jax.numpy as jnp
      >>> from optx.quantized import QuantizedArray
      >>> x = jnp.linspace(-1.0, 1.0, 512)
      >>> q = QuantizedArray.quantize(x, "8bit", signed=True, block_size=256)
      >>> print(q.codes.shape, q.codes.dtype, q.scale.shape)
      (2, 256) uint8 (2,)
      >>> bool(jnp.max(jnp.abs(q.dequantize() - x)) < 0.01)
      True
    """

    def __init__(self, codes: Any, scale: Any, kind: str, signed: bool,
                 shape: tuple[int, ...], block_size: int) -> None:
        self.codes = codes
        self.scale = scale
        self.kind = kind
        self.signed = signed
        self.shape = tuple(shape)
        self.block_size = block_size

    def __repr__(self) -> str:
        return (f"QuantizedArray(kind={self.kind!r}, signed={self.signed}, shape={self.shape}, "
                f"block_size={self.block_size})")

    @property
    def size(self) -> int:
        """The number of values it stands for."""
        return math.prod(self.shape)

    @staticmethod
    def _check(kind: str, shape: tuple[int, ...], block_size: int) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown quantized kind {kind!r}; expected one of {KINDS}")
        size = math.prod(shape)
        if block_size <= 0 or size % block_size or (kind == "4bit" and block_size % 2):
            raise ValueError(
                f"block_size {block_size} does not divide the {size} elements of shape {shape}"
                + (" into blocks of an even size (4-bit codes are packed two a byte)"
                   if kind == "4bit" else ""))
        return size // block_size

    @classmethod
    def zeros(cls, shape: tuple[int, ...], kind: str, signed: bool,
              block_size: int) -> QuantizedArray:
        """The zero tensor (zero codes and scales), as torchao's ``OptimState*.zeros``.

        Args:
          shape: the logical shape.
          kind: ``"8bit"``, ``"4bit"`` or ``"fp8"``.
          signed: whether the values may be negative.
          block_size: elements per scale; must divide the size (and be even for 4 bits).

        Returns:
          A :class:`QuantizedArray` whose :meth:`dequantize` is zero."""
        n = cls._check(kind, tuple(shape), block_size)
        width = block_size // 2 if kind == "4bit" else block_size
        dtype = _FP8 if kind == "fp8" else jnp.uint8
        return cls(jnp.zeros((n, width), dtype), jnp.zeros((n,), jnp.float32), kind, signed,
                   tuple(shape), block_size)

    @classmethod
    def quantize(cls, x: Array, kind: str, signed: bool, block_size: int) -> QuantizedArray:
        """``x`` quantized block by block (torchao's ``copy_`` into its optimizer state).

        Args:
          x: the values (any shape, computed in float32).
          kind: ``"8bit"``, ``"4bit"`` or ``"fp8"``.
          signed: whether the values may be negative.
          block_size: elements per scale; must divide ``x.size``.

        Returns:
          The :class:`QuantizedArray`."""
        shape = tuple(jnp.shape(x))
        n = cls._check(kind, shape, block_size)
        blocks = jnp.reshape(jnp.asarray(x, jnp.float32), (n, block_size))
        amax = jnp.maximum(jnp.max(jnp.abs(blocks), axis=1), jnp.float32(1e-12))
        if kind == "fp8":
            scale = _div_exact(amax, _FP8_MAX)
            codes = lax.bitcast_convert_type(_to_e4m3fn(blocks / scale[:, None]), _FP8)
            return cls(codes, scale, kind, signed, shape, block_size)
        codes = _search(blocks / amax[:, None], kind, signed)
        if kind == "4bit":
            codes = (codes[:, 0::2] << 4) | codes[:, 1::2]
        return cls(codes, amax, kind, signed, shape, block_size)

    def requantize(self, x: Array) -> QuantizedArray:
        """``x`` quantized in this array's format (kind, signedness, block size).

        Args:
          x: the new values, of this array's shape.

        Returns:
          A new :class:`QuantizedArray`."""
        if tuple(jnp.shape(x)) != self.shape:
            raise ValueError(f"cannot store shape {jnp.shape(x)} in a quantized {self.shape}")
        return QuantizedArray.quantize(x, self.kind, self.signed, self.block_size)

    def dequantize(self) -> Array:
        """The float32 values: ``table[code] * scale`` (``float(code) * scale`` for fp8).

        Returns:
          A float32 array of the logical shape (``self.shape``)."""
        if self.kind == "fp8":
            values = _from_e4m3fn(lax.bitcast_convert_type(self.codes, jnp.uint8))
        else:
            codes = self.codes
            if self.kind == "4bit":
                codes = jnp.stack([codes >> 4, codes & 0b1111], axis=-1).reshape(
                    codes.shape[0], -1)
            values = _take(qmap(self.kind, self.signed), codes)
        return jnp.reshape(values * self.scale[:, None], self.shape)

    @property
    def nbytes(self) -> int:
        """The bytes its codes and scales take."""
        return int(np.size(self.codes)) * np.dtype(self.codes.dtype).itemsize + int(
            np.size(self.scale)) * 4


def _flatten(q: QuantizedArray) -> tuple[tuple[Any, Any], tuple[Any, ...]]:
    return (q.codes, q.scale), (q.kind, q.signed, q.shape, q.block_size)


def _unflatten(aux: tuple[Any, ...], children: Any) -> QuantizedArray:
    return QuantizedArray(children[0], children[1], *aux)


jax.tree_util.register_pytree_node(QuantizedArray, _flatten, _unflatten)

__all__ = ["QuantizedArray", "qmap"]
