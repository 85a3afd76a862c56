"""torchao 0.18's low-bit optimizers (Adam8bit ... AdamWFp8) against the real torchao.

torchao runs on CPU through ``torch.compile`` (inductor + gcc): its first compile is slow
(~18 graphs: 6 classes x 3 parameter shapes), so one module-scoped fixture runs every class
once, on a model with a quantized matrix, a quantized vector and a small float32 bias, and
keeps its trajectory, its ``state_dict()`` half way and its final moments.

Tolerance (derived, not fitted). optx computes torchao's float32 operations in its order,
and keeps XLA from contracting a product and a sum into an FMA (inductor never does; see
``optx.optimizers.adam_low_bit``), so Adam8bit, Adam4bit and AdamFp8 come out bitwise equal
here. Two effects remain possible and bound the test:

* AdamW's new parameter ``(p - lr*wd*p) - step`` is handed out as the delta ``new_p - p``,
  exact when ``new_p`` is within a factor of two of ``p`` (Sterbenz) and otherwise rounded: a
  parameter crossing zero may land an ulp of ``p`` away (~1e-9 here), and the next steps
  read that parameter, so such an element drifts by a few of its ulps per step.
* A rounding difference in a float32 moment can move it across a rounding boundary of the
  code table: that element's code differs by one (the adjacent entry), or a block's scale by
  an ulp. The step itself uses the unquantized moments (torchao's "high precision copy"); the
  flipped code changes the moments read at the next steps, and from then on that element may
  follow its own Adam trajectory. Adam moves an element by at most ``lr * (1 - beta1) /
  sqrt(1 - beta2)`` per step (3.16 lr for the defaults), so two such trajectories stay within
  ``2 * steps * lr * 3.16``: the bound asserted on the max abs error.

What makes the test sharp is the count: every element must agree to ``4 * steps`` float32 ulps
of the parameter's magnitude (each step adds at most ~4 ulps of rounding difference: the decay,
the lerp, the division and the subtraction), except a fraction below 0.1 % (measured: 0 for
Adam, ~0.003 % for AdamW, printed with ``-s``), and the codes and scales that differ from
torchao's at the end are counted (measured: none).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchao.optim as ao

import optx
from optx.quantized import QuantizedArray, qmap

CLASSES = ["Adam8bit", "AdamW8bit", "Adam4bit", "AdamW4bit", "AdamFp8", "AdamWFp8"]
FUNCTIONS = {"Adam8bit": optx.adam_8bit, "AdamW8bit": optx.adamw_8bit,
             "Adam4bit": optx.adam_4bit, "AdamW4bit": optx.adamw_4bit,
             "AdamFp8": optx.adam_fp8, "AdamWFp8": optx.adamw_fp8}
NAMES = ["w", "v", "b"]
SHAPES = {"w": (32, 256), "v": (4096,), "b": (16,)}  # quantized, quantized, plain float32
LR = 1e-2
KWARGS = dict(lr=LR, weight_decay=0.05)
STEPS, HALF = 12, 6
ADAM_STEP_BOUND = (1 - 0.9) / np.sqrt(1 - 0.999)  # |m_hat| / sqrt(v_hat) <= this


@pytest.fixture(scope="module", autouse=True)
def _torch_float32():
    """torchao computes in float32 and builds tensors from Python floats with torch's default
    dtype, which other test modules set to float64 when imported (pytest imports every module
    before running any): this module runs with float32, as torchao's users do."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(old)


def init_params() -> dict[str, np.ndarray]:
    rng = np.random.RandomState(0)
    return {k: (rng.randn(*SHAPES[k]) * 0.5).astype(np.float32) for k in NAMES}


def grads_at(k: int) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(100 + k)
    return {n: rng.randn(*SHAPES[n]).astype(np.float32) for n in NAMES}


def _np(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.float8_e4m3fn:
        return t.view(torch.uint8).numpy().copy()
    return t.detach().numpy().copy()


def torchao_moments(opt, ps) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Per parameter name, per slot: ``codes`` (flat, uint8 bytes) and ``scale``, or ``value``."""
    out = {}
    for n, p in zip(NAMES, ps):
        out[n] = {}
        for k in ("exp_avg", "exp_avg_sq"):
            s = opt.state[p][k]
            out[n][k] = ({"codes": _np(s.codes).reshape(-1), "scale": _np(s.scale)}
                         if hasattr(s, "codes") else {"value": _np(s)})
    return out


def optx_moments(state) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    out = {}
    for n in NAMES:
        out[n] = {}
        for k in ("exp_avg", "exp_avg_sq"):
            s = state.slots[k][n]
            if isinstance(s, QuantizedArray):
                codes = np.asarray(s.codes)
                if codes.dtype != np.uint8:
                    codes = codes.view(np.uint8)
                out[n][k] = {"codes": codes.reshape(-1), "scale": np.asarray(s.scale)}
            else:
                out[n][k] = {"value": np.asarray(s)}
    return out


def snapshot(t):
    """A copy of a torchao state tensor (its subclasses have no ``clone``)."""
    if not hasattr(t, "codes"):
        return t.clone()
    fields = [t.codes.clone(), t.scale.clone()]
    if hasattr(t, "qmap"):
        fields += [t.qmap.clone(), t.signed]
    if hasattr(t, "_shape"):
        fields.append(t._shape)
    return type(t)(*fields)


@pytest.fixture(scope="module")
def torchao_runs():
    """Each class's torchao trajectory (params after every step), its state_dict after HALF
    steps and its moments at HALF and at the end."""
    runs = {}
    start = time.time()
    for cls in CLASSES:
        ps = [torch.nn.Parameter(torch.tensor(v)) for v in init_params().values()]
        opt = getattr(ao, cls)(ps, **KWARGS)
        traj, sd, half = [], None, None
        for k in range(STEPS):
            for p, n in zip(ps, NAMES):
                p.grad = torch.tensor(grads_at(k)[n])
            opt.step()
            traj.append({n: p.detach().numpy().copy() for n, p in zip(NAMES, ps)})
            if k + 1 == HALF:
                sd = opt.state_dict()
                sd = {"state": {i: {k2: snapshot(v) for k2, v in e.items()}
                                for i, e in sd["state"].items()},
                      "param_groups": [dict(g) for g in sd["param_groups"]]}
                half = torchao_moments(opt, ps)
        runs[cls] = {"traj": traj, "state_dict": sd, "half": half,
                     "final": torchao_moments(opt, ps)}
    print(f"torchao runs: {time.time() - start:.1f} s")
    return runs


def run_optx(cls: str, steps=range(STEPS), state=None, params=None):
    tx = FUNCTIONS[cls](**KWARGS)
    params = {n: jnp.asarray(v) for n, v in init_params().items()} if params is None else params
    state = tx.init(params) if state is None else state
    update = jax.jit(tx.update)
    traj = []
    for k in steps:
        updates, state = update({n: jnp.asarray(g) for n, g in grads_at(k).items()}, state,
                                params)
        params = optx.apply_updates(params, updates)
        traj.append({n: np.asarray(v) for n, v in params.items()})
    return traj, state


def check_trajectory(cls: str, ours, theirs, first_step: int = 1) -> dict[str, float]:
    """Asserts the derived tolerance (module docstring); returns the errors."""
    worst_abs = worst_rel = 0.0
    far = total = 0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        steps = first_step + i
        for n in NAMES:
            x, y = a[n].astype(np.float64), b[n].astype(np.float64)
            err = np.abs(x - y)
            ulps = 4 * steps * np.spacing(np.abs(y).astype(np.float32)).astype(np.float64)
            far += int(np.sum(err > ulps))
            total += err.size
            worst_abs = max(worst_abs, float(err.max()))
            worst_rel = max(worst_rel, float((err / np.maximum(np.abs(y), 1e-30)).max()))
            bound = 2 * steps * LR * ADAM_STEP_BOUND
            assert err.max() <= bound, (cls, steps, n, err.max(), bound)
    fraction = far / total
    print(f"{cls}: max abs {worst_abs:.3g}, max rel {worst_rel:.3g}, "
          f"{far}/{total} elements beyond 4 ulps/step ({100 * fraction:.3f} %)")
    assert fraction < 0.001, (cls, fraction)
    return {"abs": worst_abs, "rel": worst_rel, "fraction": fraction}


def count_code_differences(ours, theirs) -> tuple[int, int]:
    differ = total = 0
    for n in NAMES:
        for k in ("exp_avg", "exp_avg_sq"):
            a, b = ours[n][k], theirs[n][k]
            assert a.keys() == b.keys(), (n, k, a.keys(), b.keys())
            if "codes" in a:
                differ += int(np.sum(a["codes"] != b["codes"]))
                differ += int(np.sum(a["scale"] != b["scale"]))  # torchao's compiled division
                total += a["codes"].size + a["scale"].size
    return differ, total


def test_code_tables_are_torchaos():
    from torchao.optim import subclass_4bit, subclass_8bit

    for kind, module in (("8bit", subclass_8bit), ("4bit", subclass_4bit)):
        for signed in (True, False):
            ref = np.asarray((module.get_qmap_signed if signed else module.get_qmap_unsigned)(),
                             np.float32)
            assert np.array_equal(qmap(kind, signed).view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("kind", ["8bit", "4bit", "fp8"])
def test_quantize_matches_torchao_eager(kind):
    """Outside jit (one XLA op at a time, no FMA contraction) the codes and scales are
    torchao's quantization of the same float32 tensor bit for bit. For fp8 eager torch divides
    ``amax / 448`` by multiplying with the reciprocal where inductor (torchao's optimizers,
    compared in the trajectory tests) divides: the scales agree to an ulp, the codes exactly."""
    from torchao.optim.subclass_4bit import OptimState4bit
    from torchao.optim.subclass_8bit import OptimState8bit
    from torchao.optim.subclass_fp8 import OptimStateFp8

    rng = np.random.RandomState(1)
    x = (rng.randn(8192) * np.exp(rng.randn(8192) * 3)).astype(np.float32)
    block = 128 if kind == "4bit" else 256
    for signed in (True, False):
        data = x if signed else np.abs(x)
        if kind == "8bit":
            ref = OptimState8bit.zeros(data.shape, signed, block)
        elif kind == "4bit":
            ref = OptimState4bit.zeros(data.shape, signed, block)
        else:
            ref = OptimStateFp8.zeros(data.shape, block)
        ref.copy_(torch.tensor(data))
        with jax.disable_jit():
            ours = QuantizedArray.quantize(jnp.asarray(data), kind, signed, block)
        codes = np.asarray(ours.codes)
        codes = codes.view(np.uint8) if codes.dtype != np.uint8 else codes
        if kind == "fp8":
            scale, ref_scale = np.asarray(ours.scale), _np(ref.scale)
            assert np.all(np.abs(scale - ref_scale) <= np.spacing(ref_scale))
            continue
        assert np.array_equal(codes.reshape(-1), _np(ref.codes).reshape(-1))
        assert np.array_equal(np.asarray(ours.scale), _np(ref.scale))
        assert np.array_equal(np.asarray(ours.dequantize()), _np(ref.dequantize()))


@pytest.mark.parametrize("cls", CLASSES)
def test_trajectory_matches_torchao(cls, torchao_runs):
    run = torchao_runs[cls]
    ours, state = run_optx(cls)
    check_trajectory(cls, ours, run["traj"])
    differ, total = count_code_differences(optx_moments(state), run["final"])
    print(f"{cls}: {differ}/{total} codes and scales differ after {STEPS} steps")
    assert differ <= 0.001 * total


@pytest.mark.parametrize("cls", CLASSES)
def test_torchao_state_dict_loads_and_continues(cls, torchao_runs):
    run = torchao_runs[cls]
    params = {n: jnp.asarray(v) for n, v in run["traj"][HALF - 1].items()}
    opt = getattr(optx.optim, cls)(params, **KWARGS)
    opt.load_state_dict(run["state_dict"])
    loaded, theirs = optx_moments(opt.opt_state), run["half"]
    for n in NAMES:  # bitwise equal right after the load
        for k in ("exp_avg", "exp_avg_sq"):
            for field, value in theirs[n][k].items():
                assert np.array_equal(loaded[n][k][field], value), (n, k, field)
    assert int(opt.opt_state.count) == HALF
    traj = []
    for k in range(HALF, STEPS):
        opt.step({n: jnp.asarray(g) for n, g in grads_at(k).items()})
        traj.append({n: np.asarray(v) for n, v in opt.params.items()})
    check_trajectory(cls, traj, run["traj"][HALF:], first_step=1)


@pytest.mark.parametrize("kind", ["8bit", "4bit"])
def test_code_lookup_is_torchaos_binary_search(kind):
    """optx rounds to codes with a lookup on the float's top 16 bits; torchao's branchless
    binary search gives the same code for every float32 in [-1, 1] (a sweep of 2.1 M bit
    patterns, every 1021st, both signs; 0, +-1 and the table entries themselves)."""
    from torchao.optim.quant_utils import quantize_4bit_with_qmap, quantize_8bit_with_qmap

    from optx.quantized import _search

    bits = np.arange(0, 0x3F800001, 1021, dtype=np.uint32)
    for signed in (True, False):
        table = qmap(kind, signed)
        x = np.concatenate([bits.view(np.float32), -bits.view(np.float32), table,
                            np.float32([0.0, 1.0, -1.0])])
        search = quantize_8bit_with_qmap if kind == "8bit" else quantize_4bit_with_qmap
        ref = search(torch.tensor(x), torch.tensor(table)).numpy()
        ours = np.asarray(jax.jit(_search, static_argnums=(1, 2))(jnp.asarray(x), kind, signed))
        assert np.array_equal(ours, ref)


def test_torchao_state_dict_of_another_class_or_block_size_is_refused(torchao_runs):
    """torchao's real state_dicts: AdamW4bit's into AdamW8bit, and AdamW8bit's (block 256)
    into an AdamW8bit of block_size 128, each refused naming the mismatch; nothing changes."""
    params = {n: jnp.asarray(v) for n, v in init_params().items()}
    cases = [
        ("AdamW8bit", {}, "AdamW4bit", "torchao's OptimState4bit, but AdamW8bit stores "
                                       "OptimState8bit"),
        ("AdamW8bit", {"block_size": 128}, "AdamW8bit",
         "saved with block_size 256, but this AdamW8bit uses block_size 128"),
        ("AdamWFp8", {}, "AdamW8bit", "torchao's OptimState8bit, but AdamWFp8 stores "
                                      "OptimStateFp8"),
    ]
    for cls, extra, saved_by, message in cases:
        opt = getattr(optx.optim, cls)(params, **KWARGS, **extra)
        opt.step(grads_at(0))
        before = [np.asarray(x) for x in jax.tree_util.tree_leaves((opt.params, opt.opt_state))]
        groups = [dict(g) for g in opt.param_groups]
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(torchao_runs[saved_by]["state_dict"])
        after = [np.asarray(x) for x in jax.tree_util.tree_leaves((opt.params, opt.opt_state))]
        assert all(np.array_equal(a, b) for a, b in zip(before, after))
        assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == [
            {k: v for k, v in g.items() if k != "params"} for g in groups]


def test_none_gradients_skip_parameters_as_torchao(torchao_runs):
    """A parameter whose gradient is None (torchao: ``p.grad is None``) is skipped, its step
    count too: its bias corrections then use its own step (the state gets per-parameter
    steps). Same tolerance as the trajectories; the shapes are the fixture's (no new compile).
    Not bitwise (unlike the trajectories with every gradient): with per-parameter steps XLA
    rewrites the division by a parameter's bias correction, a slice of the vector of them,
    into a product with its reciprocal (measured: 28 of 73824 elements beyond 4 ulps/step)."""
    del torchao_runs  # compiled torchao's graphs for these shapes already
    cls, steps = "Adam8bit", 6
    skip = {1: {"b"}, 2: {"v"}, 3: {"b", "w"}}
    ps = [torch.nn.Parameter(torch.tensor(v)) for v in init_params().values()]
    opt = getattr(ao, cls)(ps, **KWARGS)
    theirs = []
    for k in range(steps):
        for p, n in zip(ps, NAMES):
            p.grad = None if n in skip.get(k, ()) else torch.tensor(grads_at(k)[n])
        opt.step()
        theirs.append({n: p.detach().numpy().copy() for n, p in zip(NAMES, ps)})
    ours_opt = getattr(optx.optim, cls)({n: jnp.asarray(v) for n, v in init_params().items()},
                                        **KWARGS)
    ours = []
    for k in range(steps):
        ours_opt.step({n: None if n in skip.get(k, ()) else jnp.asarray(g)
                       for n, g in grads_at(k).items()})
        ours.append({n: np.asarray(v) for n, v in ours_opt.params.items()})
    check_trajectory(cls, ours, theirs)
    saved = ours_opt.state_dict()["state"]
    assert [float(saved[i]["step"]) for i in range(3)] == [
        float(opt.state[p]["step"]) for p in ps]
