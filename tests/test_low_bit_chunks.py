"""The low-bit optimizers update large tensors chunk by chunk (``optx.blockwise.map_blocks``: a
loop over chunks of whole blocks, so the step's float32 temporaries are chunk-sized). Every
value depends only on its own element and its own block, so the chunked update must equal the
update in one piece bit for bit: unsharded, under ``zero_shardings`` on 2 and 4 devices, and
with bfloat16 stochastic rounding (whose random bits must not depend on the chunks). Small
chunks here (1024 elements) make the loop run on small tensors; tests/test_low_bit.py checks
the one-piece update against torchao."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import optx
from optx import blockwise

CLASSES = {"AdamW8bit": optx.adamw_8bit, "AdamW4bit": optx.adamw_4bit,
           "AdamWFp8": optx.adamw_fp8}
# w: 18 blocks of 256 (36 of 128 for 4 bits), as (A, K, r) = (2, 9, 1): split on 2 devices,
# replicated on 4; u: 96 blocks (192), (32, 3, 1) ((64, 3, 1)): split on 2 and 4 devices;
# b: a plain bias.
SHAPES = {"w": (18, 256), "u": (96, 256), "b": (16,)}
KWARGS = dict(lr=1e-2, weight_decay=0.05, amsgrad=True)
SMALL, ONE_PIECE = 1024, 2**30


def init_params(dtype=jnp.float32, shapes=SHAPES):
    rng = np.random.RandomState(0)
    return {k: jnp.asarray((rng.randn(*s) * 0.5).astype(np.float32), dtype)
            for k, s in shapes.items()}


def grads_at(k, dtype=jnp.float32, shapes=SHAPES):
    rng = np.random.RandomState(100 + k)
    return {n: jnp.asarray(rng.randn(*s).astype(np.float32), dtype) for n, s in shapes.items()}


def assert_bitwise(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8))


def run(tx, monkeypatch, chunk, mesh=None, dtype=jnp.float32, steps=2, shapes=SHAPES):
    monkeypatch.setattr(blockwise, "CHUNK_ELEMENTS", chunk)
    params = init_params(dtype, shapes)
    state = tx.init(params)
    out = None
    if mesh is not None:
        params = jax.device_put(params, NamedSharding(mesh, P()))
        state = optx.sharding.zero_place(state, mesh)
        out = (NamedSharding(mesh, P()), optx.sharding.zero_shardings(state, mesh))

    def step_fn(p, s, g):
        u, s = tx.update(g, s, p)
        return optx.apply_updates(p, u), s

    step = jax.jit(step_fn, out_shardings=out, donate_argnums=(0, 1))
    jaxpr = str(jax.make_jaxpr(step_fn)(params, state, grads_at(0, dtype, shapes)))
    loops = jaxpr.count("while[") + jaxpr.count("scan[")
    for k in range(steps):
        params, state = step(params, state, grads_at(k, dtype, shapes))
    return params, state, loops


@pytest.mark.parametrize("cls", list(CLASSES))
def test_chunked_equals_one_piece_on_1_2_4_devices(cls, monkeypatch):
    tx = CLASSES[cls](**KWARGS)
    ref_params, ref_state, loops = run(tx, monkeypatch, ONE_PIECE)
    assert loops == 0
    for n in (None, 2, 4):
        mesh = None if n is None else Mesh(np.array(jax.devices()[:n]), ("data",))
        params, state, loops = run(tx, monkeypatch, SMALL, mesh)
        assert loops == 2  # w and u, each a loop over its chunks
        assert_bitwise(params, ref_params)
        assert_bitwise(state.slots, ref_state.slots)
        if n in (2, 4):  # u's quantized moments stay split: whole blocks per device
            u = state.slots["exp_avg"]["u"]
            assert {s.data.shape[0] for s in u.codes.addressable_shards} == {
                u.codes.shape[0] // n}


@pytest.mark.parametrize("cls", list(CLASSES))
def test_chunks_with_a_tail_equal_one_piece(cls, monkeypatch):
    """67 blocks (a prime; 134 of 128 for 4 bits) in chunks of at most 8192 elements: no
    even split comes close, so chunks of 32 blocks in a row (64 for 4 bits) and the 3 (6)
    left over as a last piece; bitwise the one-piece update, unsharded and on 2 devices."""
    shapes = {"t": (67, 256), "b": (16,)}
    tx = CLASSES[cls](**KWARGS)
    ref_params, ref_state, _ = run(tx, monkeypatch, ONE_PIECE, shapes=shapes)
    for n in (None, 2):
        mesh = None if n is None else Mesh(np.array(jax.devices()[:n]), ("data",))
        params, state, loops = run(tx, monkeypatch, 8192, mesh, shapes=shapes)
        assert loops == 1
        assert_bitwise(params, ref_params)
        assert_bitwise(state.slots, ref_state.slots)


def test_chunked_stochastic_rounding_draws_the_one_piece_bits(monkeypatch):
    """bfloat16 parameters with stochastic rounding: element i's random bits are
    ``jax.random.bits(key, shape)[i]`` whatever chunk it is in."""
    tx = optx.adam_8bit(lr=1e-3, bf16_stochastic_round=True)
    ref_params, ref_state, _ = run(tx, monkeypatch, ONE_PIECE, dtype=jnp.bfloat16)
    params, state, loops = run(tx, monkeypatch, SMALL, dtype=jnp.bfloat16)
    assert loops == 2
    assert_bitwise(params, ref_params)
    assert_bitwise(state.slots, ref_state.slots)

    from optx.optimizers.adam_low_bit import random_bits16

    key = jax.random.key(3)
    shape = (96, 256)
    whole = jax.random.bits(key, shape, jnp.uint32) >> 16
    positions = jnp.arange(96 * 256, dtype=jnp.uint32).reshape(shape)[40:50]
    assert np.array_equal(random_bits16(key, positions), whole[40:50])


def test_chunk_layout():
    """(A, K, r, t): A = gcd(blocks, 256) leading runs, K chunks of at most the chunk size;
    one piece for a small tensor; chunks in a row and a tail where no even split comes close
    (a prime number of blocks)."""
    assert blockwise.chunk_layout(4096, 256, 2**18) == (256, 4, 4, 0)
    assert blockwise.chunk_layout(18, 256, 1024) == (2, 9, 1, 0)
    assert blockwise.chunk_layout(4099, 256, 2**18) == (1, 4, 1024, 3)  # prime: a tail
    assert blockwise.chunk_layout(16, 256, 2**18) == (16, 1, 1, 0)
    assert blockwise.chunk_layout(150771, 256, 2**20) == (1, 87, 1733, 0)  # 50257 x 768


def test_fp8_conversions_are_xlas():
    """optx converts to and from float8 e4m3fn with integer ops (XLA:CPU's own conversion runs
    one element at a time through float16): bit for bit XLA's ``convert`` for all 256 codes,
    and for a sweep of float32 bit patterns (every 4093rd of all 2**32: both signs, subnormals,
    ties, overflow past 448, infinities and NaNs; the whole range was checked once)."""
    from jax import lax

    from optx.quantized import _from_e4m3fn, _to_e4m3fn

    codes = jnp.arange(256, dtype=jnp.uint8)
    ref = lax.bitcast_convert_type(codes, jnp.float8_e4m3fn).astype(jnp.float32)
    assert np.array_equal(np.asarray(jax.jit(_from_e4m3fn)(codes)).view(np.uint32),
                          np.asarray(ref).view(np.uint32))
    bits = np.arange(0, 2**32, 4093, dtype=np.uint64).astype(np.uint32)
    x = jnp.asarray(np.concatenate([bits, np.uint32([0x43E80000, 0x43E80001, 0xC3E80000])])
                    .view(np.float32))  # 464 (a tie: rounds to 448), just above it, -464
    ref = lax.bitcast_convert_type(jax.jit(lambda x: x.astype(jnp.float8_e4m3fn))(x), jnp.uint8)
    assert np.array_equal(np.asarray(jax.jit(_to_e4m3fn)(x)), np.asarray(ref))


def test_step_temporaries_do_not_grow_with_the_model():
    """XLA's own count of a jitted, donating training step's temporary bytes
    (``memory_analysis()``, deterministic): with AdamW8bit it is one parameter's gradient (the
    loss ``sum(w**2)`` has an elementwise gradient that XLA makes just before its parameter's
    loop) plus chunk-sized float32 temporaries (each matrix of 2048 x 1024 is two chunks), the
    same for 4 and for 8 matrices (up to a few scalars); the one-piece update held float32
    temporaries of whole parameters (here 56 MiB, against 24 MiB chunked)."""
    def temp_bytes(n_layers):
        tx = optx.adamw_8bit()
        params = {f"w{i}": jnp.zeros((2048, 1024), jnp.float32) for i in range(n_layers)}
        state = tx.init(params)

        def step(p, s):
            g = jax.grad(lambda p: sum(jnp.sum(w * w) for w in p.values()))(p)
            u, s = tx.update(g, s, p)
            return optx.apply_updates(p, u), s

        compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    leaf, chunk = 2048 * 1024 * 4, blockwise.CHUNK_ELEMENTS * 4
    assert 2 * chunk == leaf
    four, eight = temp_bytes(4), temp_bytes(8)
    assert abs(eight - four) < 2**16  # a few scalars per parameter at most
    assert four <= leaf + 8 * chunk < 7 * leaf, four / chunk
