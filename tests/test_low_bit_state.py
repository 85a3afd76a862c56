"""The low-bit optimizers' state as optx state: checkpoints, jit vs the adapter, bad input,
ZeRO sharding on 1, 2 and 4 devices, and bfloat16 stochastic rounding (no torchao needed
here: tests/test_low_bit.py compares with torchao)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import optx
from optx.quantized import QuantizedArray

CLASSES = {"Adam8bit": optx.adam_8bit, "AdamW8bit": optx.adamw_8bit,
           "Adam4bit": optx.adam_4bit, "AdamW4bit": optx.adamw_4bit,
           "AdamFp8": optx.adam_fp8, "AdamWFp8": optx.adamw_fp8}
# 18 blocks of 256 (8-bit, fp8) or 36 of 128 (4-bit): split on 2 devices, replicated or split
# on 4; 16 blocks; a plain float32 bias.
SHAPES = {"w": (18, 256), "v": (4096,), "b": (16,)}
KWARGS = dict(lr=1e-2, weight_decay=0.05, amsgrad=True)


@pytest.fixture(scope="module", autouse=True)
def _torch_float32():
    """torchao computes in float32 and builds tensors from Python floats with torch's default
    dtype, which other test modules set to float64 when imported (pytest imports every module
    before running any): this module runs with float32, as torchao's users do."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(old)


def init_params():
    rng = np.random.RandomState(0)
    return {k: jnp.asarray((rng.randn(*s) * 0.5).astype(np.float32)) for k, s in SHAPES.items()}


def grads_at(k):
    rng = np.random.RandomState(100 + k)
    return {n: jnp.asarray(rng.randn(*s).astype(np.float32)) for n, s in SHAPES.items()}


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def assert_bitwise(a, b):
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8))


def functional_run(cls, steps=3):
    tx = CLASSES[cls](**KWARGS)
    params = init_params()
    state = tx.init(params)
    step = jax.jit(lambda p, s, g: (lambda u, s: (optx.apply_updates(p, u), s))(
        *tx.update(g, s, p)))
    for k in range(steps):
        params, state = step(params, state, grads_at(k))
    return params, state


@pytest.mark.parametrize("cls", list(CLASSES))
def test_jitted_functional_equals_adapter_and_checkpoint_round_trips(cls, tmp_path):
    params, state = functional_run(cls)
    opt = getattr(optx.optim, cls)(init_params(), **KWARGS)
    for k in range(3):
        opt.step(grads_at(k))
    assert_bitwise(opt.params, params)
    assert_bitwise(opt.opt_state.slots, state.slots)
    assert isinstance(opt.opt_state.slots["exp_avg"]["w"], QuantizedArray)
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    optx.optim.save(sd, tmp_path / "opt.npz")
    loaded = optx.optim.load(tmp_path / "opt.npz")
    other = getattr(optx.optim, cls)(opt.params, **KWARGS)
    other.load_state_dict(loaded)
    assert_bitwise(other.opt_state.slots, opt.opt_state.slots)
    assert int(other.opt_state.count) == 3
    for k in range(3, 5):
        opt.step(grads_at(k))
        other.step(grads_at(k))
    assert_bitwise(other.params, opt.params)
    assert_bitwise(other.opt_state.slots, opt.opt_state.slots)


def test_bad_input_names_it_and_changes_nothing():
    with pytest.raises(TypeError, match="complex64"):
        optx.adamw_8bit().init({"w": jnp.ones((4096,), jnp.complex64)})
    with pytest.raises(TypeError, match="int32"):
        optx.adamw_8bit().init({"w": jnp.ones((4096,), jnp.int32)})
    with pytest.raises(ValueError, match="block_size must be a positive integer and even"):
        optx.adamw_4bit(block_size=127)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        optx.adam_8bit(block_size=0)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        optx.optim.AdamW8bit(init_params(), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="does not divide"):
        QuantizedArray.zeros((4096,), "8bit", True, 1000)
    # A block_size that does not divide a parameter keeps float32 state, as torchao does.
    state = optx.adam_8bit(block_size=1000).init(init_params())
    assert not isinstance(state.slots["exp_avg"]["w"], QuantizedArray)
    # A state of another block size or class: a clear error, nothing changed.
    tx = optx.adamw_8bit()
    with pytest.raises(ValueError, match="another block_size"):
        tx.update(grads_at(0), optx.adamw_8bit(block_size=128).init(init_params()),
                  init_params())

    opt = optx.optim.AdamW8bit(init_params(), **KWARGS)
    opt.step(grads_at(0))
    before = (leaves(opt.params), leaves(opt.opt_state), opt.state_dict()["param_groups"])
    small = optx.optim.AdamW8bit(init_params(), **KWARGS, block_size=128)
    small.step(grads_at(0))
    sd = small.state_dict()
    for g in sd["param_groups"]:  # as torchao's: block_size is the optimizer's, not a group's
        del g["block_size"], g["bf16_stochastic_round"]
    with pytest.raises(ValueError, match="saved with block_size 128, but this AdamW8bit uses "
                                         "block_size 256"):
        opt.load_state_dict(sd)
    four = optx.optim.AdamW4bit(init_params(), **KWARGS)
    four.step(grads_at(0))
    with pytest.raises(ValueError, match="torchao's OptimState4bit, but AdamW8bit stores "
                                         "OptimState8bit|codes of dtype|holds 4608 values"):
        sd = four.state_dict()
        for entry in sd["state"].values():  # as torchao's tensor subclasses would name them
            for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if isinstance(entry[k], dict):
                    entry[k]["type"] = "OptimState4bit"
        opt.load_state_dict(sd)
    plain = optx.optim.AdamW(init_params(), lr=1e-2, amsgrad=True)
    plain.step(grads_at(0))
    with pytest.raises(ValueError, match="plain array, but AdamW8bit stores"):
        opt.load_state_dict(plain.state_dict())
    after = (leaves(opt.params), leaves(opt.opt_state), opt.state_dict()["param_groups"])
    for x, y in zip(before[0] + before[1], after[0] + after[1]):
        assert np.array_equal(x, y)
    assert before[2] == after[2]


@pytest.mark.parametrize("cls", ["AdamW8bit", "AdamW4bit"])
def test_zero_sharded_bitwise_on_1_2_4_devices(cls):
    """Under zero_shardings (a jitted step) and ZeroRedundancyOptimizer the trajectory and the
    state are bitwise the unsharded ones, and each quantized slot holds whole blocks per
    device."""
    ref_params, ref_state = functional_run(cls)
    tx = CLASSES[cls](**KWARGS)
    for n in (1, 2, 4):
        mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
        params = jax.device_put(init_params(), NamedSharding(mesh, P()))
        state = optx.sharding.zero_place(tx.init(params), mesh)
        shardings = optx.sharding.zero_shardings(state, mesh)

        def step_fn(p, s, g):
            u, s = tx.update(g, s, p)
            return optx.apply_updates(p, u), s

        step = jax.jit(step_fn, out_shardings=(NamedSharding(mesh, P()), shardings))
        for k in range(3):
            params, state = step(params, state, grads_at(k))
        assert_bitwise(params, ref_params)
        assert_bitwise(state.slots, ref_state.slots)
        w = state.slots["exp_avg"]["w"]
        blocks = w.scale.shape[0]
        if n > 1 and blocks % n == 0:
            per_device = {s.data.shape for s in w.codes.addressable_shards}
            assert per_device == {(blocks // n, w.codes.shape[1])}

        zero = optx.optim.ZeroRedundancyOptimizer(init_params(), getattr(optx.optim, cls),
                                                  mesh=mesh, **KWARGS)
        for k in range(3):
            zero.step(grads_at(k))
        assert_bitwise(zero.params, ref_params)
        assert_bitwise(zero.opt_state.slots, ref_state.slots)


def test_bf16_stochastic_rounding_is_unbiased():
    """Each update is about 1/8 of a bfloat16 ulp: rounding to nearest never moves the
    parameter, stochastic rounding moves it by the expected drift on average: the sum of the
    float32 updates, which a float32 parameter receives exactly."""
    n, steps = 4096, 48
    ulp = 2.0**-7  # of bfloat16 in [1, 2)
    lr = ulp / 8  # Adam's step with a constant gradient is about lr (up to quantization)
    def run(sr, dtype=jnp.bfloat16):
        grads = {"w": jnp.full((n,), -1.0, dtype)}
        tx = optx.adam_8bit(lr=lr, eps=0.0, bf16_stochastic_round=sr)
        params = {"w": jnp.full((n,), 1.0, dtype)}
        state = tx.init(params)

        @jax.jit
        def step(p, s):
            u, s = tx.update(grads, s, p)
            return optx.apply_updates(p, u), s

        for _ in range(steps):
            params, state = step(params, state)
        return np.asarray(params["w"], np.float64)

    nearest = run(False)
    assert np.all(nearest == 1.0)  # 1/8 ulp: round to nearest never moves
    sr = run(True)
    expected = run(False, jnp.float32).mean()  # the same moments: no weight decay
    assert abs(expected - (1 + steps * lr)) < 0.05 * steps * lr
    # Each element's final value is 1 + (number of up-roundings) * ulp; the mean of n
    # independent ones has standard deviation <= ulp * sqrt(steps / 8 ... ) / sqrt(n): 6 sigma.
    sigma = ulp * np.sqrt(steps * (1 / 8) * (7 / 8)) / np.sqrt(n)
    assert abs(sr.mean() - expected) < 6 * sigma, (sr.mean(), expected, sigma)
    assert len(np.unique(sr)) > 1  # not every element moved alike: random per element
    # A pure function of the state: the same state and gradients give the same result.
    assert np.array_equal(run(True), sr)


def test_torch_tensor_fields_load():
    """torchao's tensor subclasses carry torch tensors: a state_dict whose fields are torch
    tensors (as torchao's, see tests/test_low_bit.py for the real thing) loads."""
    opt = optx.optim.AdamWFp8(init_params(), **KWARGS)
    opt.step(grads_at(0))
    sd = opt.state_dict()

    def to_torch(v):
        if isinstance(v, np.ndarray) and v.dtype.name == "float8_e4m3fn":
            return torch.from_numpy(v.view(np.uint8).copy()).view(torch.float8_e4m3fn)
        return torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v

    sd["state"] = {i: {k: ({f: to_torch(x) for f, x in v.items()} if isinstance(v, dict)
                           else to_torch(v)) for k, v in e.items()}
                   for i, e in sd["state"].items()}
    other = optx.optim.AdamWFp8(opt.params, **KWARGS)
    other.load_state_dict(sd)
    assert_bitwise(other.opt_state.slots, opt.opt_state.slots)
