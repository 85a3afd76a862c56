"""Updates of block-quantized state chunk by chunk: float32 temporaries the size of a chunk.

An optimizer whose moments are :class:`optx.quantized.QuantizedArray` s reads them
dequantized (float32), updates them and writes them back requantized. Done on a whole tensor
at once, the float32 temporaries (the dequantized moments, their new values, the update) are
the tensor's size: at the step's peak they cost more memory than the quantized storage saves,
and on CPU each large fresh buffer also costs its page faults. :func:`map_blocks` runs the
same elementwise-and-per-block function over chunks of whole blocks in a loop
(``lax.fori_loop``), writing each chunk's results into the loop's buffers in place
(``dynamic_update_slice``: the donated state, and the gradient's buffer for the update), so the
float32 temporaries are the size of a chunk (at most about :data:`CHUNK_ELEMENTS` elements),
allocated once and reused by every chunk (a block's ``max |x|`` needs the whole block before
any of it is requantized, so a chunk is read more than once).

The result is the one of the whole tensor at once, bit for bit: every value depends only on
its own element and its own block. Nothing here is specific to Adam.

Layout. The ``n_blocks`` blocks are viewed as ``(A, K, r)`` (C order) with ``A =
gcd(n_blocks, 256)``, and chunk ``k`` is the blocks ``[:, k, :]``: ``A`` contiguous runs of
``r`` blocks. A split of the block axis across ``D`` devices (what
:func:`optx.sharding.zero_shardings` makes when ``D`` divides ``n_blocks``) is a split of the
leading axis whenever ``D`` divides ``A``, so the loop runs over an axis that is never
sharded and each device updates its own blocks. Where no such even split gives chunks near the
size (a prime number of blocks), the chunks are runs of ``r`` blocks along the block axis and
the blocks left over a last, smaller piece (:func:`chunk_layout`).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from optx.quantized import QuantizedArray

Array = jax.Array

CHUNK_ELEMENTS = 1 << 20
"""The elements a chunk holds at most (4 MiB of float32 per temporary), unless no whole-block
layout comes close (see :func:`chunk_layout`)."""

_LEADING = 256  # A divides this: device counts dividing it keep the sharding on A


def chunk_layout(n_blocks: int, block_size: int,
                 chunk_elements: int = CHUNK_ELEMENTS) -> tuple[int, int, int, int]:
    """``(A, K, r, t)``: the blocks viewed as ``A x K x r`` (chunk ``k`` the blocks ``[:, k,
    :]``), then ``t`` more blocks.

    A tensor of at most ``chunk_elements`` elements is one piece (``K = 1``). Otherwise ``K``
    is the fewest chunks of at most ``chunk_elements`` elements that divide the blocks evenly;
    where these would be under 1/16 of that size (a prime number of blocks, say), the chunks
    are ``r = chunk_elements // block_size`` blocks in a row (``A = 1``) and the ``t < r``
    blocks left over are a last, smaller piece."""
    a = math.gcd(n_blocks, _LEADING)
    q = n_blocks // a
    if n_blocks * block_size <= chunk_elements:
        return a, 1, q, 0
    for k in range(1, q + 1):
        if q % k == 0 and a * (q // k) * block_size <= chunk_elements:
            break
    else:  # even A blocks exceed chunk_elements: chunks of A blocks, the smallest there are
        k = q
    if 16 * a * (q // k) * block_size >= chunk_elements:
        return a, k, q // k, 0
    r = max(1, chunk_elements // block_size)
    return 1, n_blocks // r, r, n_blocks % r


Fn = Callable[[list[Array], list[Array], list[QuantizedArray], Callable[[], Array]],
              tuple[list[Array], list[QuantizedArray]]]


def map_blocks(fn: Fn, read: Sequence[Array], write: Sequence[Array],
               slots: Sequence[QuantizedArray], *, chunk_elements: int | None = None,
               ) -> tuple[list[Array], list[QuantizedArray]]:
    """``fn`` applied chunk by chunk: ``(new write arrays, new slots)``.

    Args:
      fn: ``fn(read_chunks, write_chunks, slot_chunks, positions) -> (write_chunks,
        slot_chunks)``. Each dense chunk has shape ``(blocks, block_size)`` (a row per block
        of the chunk: XLA:CPU then indexes the per-block scales without divisions, and
        vectorizes), each slot chunk is a :class:`~optx.quantized.QuantizedArray` of that
        shape; ``positions()`` gives the chunk elements' flat indices in the tensor (uint32,
        that shape). It must compute each element from its own element and its own block
        only.
      read: arrays of the slots' logical shape, read only.
      write: arrays of that shape whose chunks ``fn`` replaces (in place: their buffers, if
        donated or temporary, hold the results).
      slots: the quantized arrays, all of one shape and block size.
      chunk_elements: the most elements per chunk (see :func:`chunk_layout`); ``None``:
        :data:`CHUNK_ELEMENTS`, read at each call.

    Returns:
      The new ``write`` arrays and the new slots.
    """
    shape, bs = slots[0].shape, slots[0].block_size
    if any(q.shape != shape or q.block_size != bs for q in slots):
        raise ValueError("map_blocks: the slots differ in shape or block size")
    n = math.prod(shape)
    if n >= 2**32:
        raise ValueError(f"map_blocks: {n} elements do not fit uint32 positions")
    nb = n // bs
    a, k, r, t = chunk_layout(nb, bs, CHUNK_ELEMENTS if chunk_elements is None
                              else chunk_elements)

    def raw(codes: Array) -> Array:  # XLA:CPU slices float8 arrays through float16: slowly
        return lax.bitcast_convert_type(codes, jnp.uint8)

    Parts = tuple[list[Array], list[Array], list[Array]]  # write arrays, raw codes, scales

    def call(read_c: list[Array], parts: Parts, positions: Callable[[], Array], rows: int,
             ) -> Parts:
        """``fn`` on a chunk of ``rows`` blocks; its results as raw arrays."""
        write_c, codes_c, scales_c = parts
        chunk = [QuantizedArray(lax.bitcast_convert_type(c, q.codes.dtype).reshape(rows, -1),
                                sc.reshape(rows), q.kind, q.signed, (rows, bs), bs)
                 for q, c, sc in zip(slots, codes_c, scales_c)]
        new_w, new_s = fn([x.reshape(rows, bs) for x in read_c],
                          [x.reshape(rows, bs) for x in write_c], chunk, positions)
        return new_w, [raw(q.codes) for q in new_s], [q.scale for q in new_s]

    def finish(parts: Parts) -> tuple[list[Array], list[QuantizedArray]]:
        new_w, codes, scales = parts
        return ([x.reshape(shape) for x in new_w],
                [QuantizedArray(lax.bitcast_convert_type(c.reshape(nb, -1), q.codes.dtype),
                                sc.reshape(nb), q.kind, q.signed, shape, bs)
                 for q, c, sc in zip(slots, codes, scales)])

    if k == 1 and t == 0:  # one piece
        return finish(call(list(read), (list(write), [raw(q.codes) for q in slots],
                                        [q.scale for q in slots]),
                           lambda: lax.iota(jnp.uint32, n).reshape(nb, bs), nb))

    if t:  # chunks of r blocks in a row, then the t blocks left over
        def take_rows(x: Array, start: Array | int, size: int) -> Array:
            return lax.dynamic_slice_in_dim(x, start, size, axis=0)

        def rows_positions(start: Array | int, size: int) -> Callable[[], Array]:
            return lambda: (jnp.asarray(start, jnp.uint32) * jnp.uint32(bs)
                            + lax.iota(jnp.uint32, size * bs)).reshape(size, bs)

        read2 = [x.reshape(nb, bs) for x in read]

        def put_rows(parts: Parts, new: Parts, start: Array | int, size: int) -> Parts:
            w, c, sc = ([lax.dynamic_update_slice_in_dim(x, y.reshape((size,) + x.shape[1:]),
                                                         start, axis=0)
                         for x, y in zip(part, new_part)]
                        for part, new_part in zip(parts, new))
            return w, c, sc

        def row_body(i: Array, carry: Parts) -> Parts:
            start = i * r
            w, c, sc = ([take_rows(x, start, r) for x in part] for part in carry)
            out = call([take_rows(x, start, r) for x in read2], (w, c, sc),
                       rows_positions(start, r), r)
            return put_rows(carry, out, start, r)

        carry: Parts = ([x.reshape(nb, bs) for x in write], [raw(q.codes) for q in slots],
                        [q.scale for q in slots])
        carry = lax.fori_loop(0, k, row_body, carry)
        w, c, sc = ([x[k * r:] for x in part] for part in carry)
        tail = call([x[k * r:] for x in read2], (w, c, sc), rows_positions(k * r, t), t)
        return finish(put_rows(carry, tail, k * r, t))

    def dense(x: Array) -> Array:
        return x.reshape(a, k, r * bs)

    read3 = [dense(x) for x in read]

    def body(i: Array, carry: Parts) -> Parts:
        def take(x: Array) -> Array:
            return lax.dynamic_index_in_dim(x, i, axis=1, keepdims=False)

        def put(x: Array, y: Array) -> Array:
            return lax.dynamic_update_index_in_dim(x, y.reshape(x.shape[:1] + x.shape[2:]), i,
                                                   axis=1)

        def positions() -> Array:
            run = lax.broadcasted_iota(jnp.uint32, (a, r * bs), 0) * jnp.uint32(k * r * bs)
            within = lax.broadcasted_iota(jnp.uint32, (a, r * bs), 1)
            return (run + i.astype(jnp.uint32) * jnp.uint32(r * bs) + within).reshape(a * r, bs)

        w, c, sc = ([take(x) for x in part] for part in carry)
        out = call([take(x) for x in read3], (w, c, sc), positions, a * r)
        w, c, sc = ([put(x, y) for x, y in zip(part, new)] for part, new in zip(carry, out))
        return w, c, sc

    init: Parts = ([dense(x) for x in write], [raw(q.codes).reshape(a, k, r, -1) for q in slots],
                   [q.scale.reshape(a, k, r) for q in slots])
    return finish(lax.fori_loop(0, k, body, init))


__all__ = ["CHUNK_ELEMENTS", "chunk_layout", "map_blocks"]
