"""Every state optx produces comes back from ``optx.optim.save``/``load`` as it was saved.

Arrays of every dtype JAX has (bfloat16, the float8 and float4 variants, int4..., complex)
keep their dtype and bits; containers keep their types (``Counter``, tuple, list, dict) and
keys of any saved type (numpy scalars, floats, tuples, None); every scheduler of
``torch.optim.lr_scheduler`` (and SWALR, ReduceLROnPlateau) resumed from a checkpoint continues
as the run that never saved, which is torch's; optimizers with bf16, float16 and complex params
resume bit for bit. A malformed file never runs code and raises ``CheckpointError`` naming it.
"""

from __future__ import annotations

import collections
import json
import math
import warnings

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch.optim.lr_scheduler as TL
from scheduler_cases import CASES, groups, optimizers
from torch.optim import swa_utils as TS

import optx.optim as O
from optx.optim import lr_scheduler as L
from optx.optim import swa_utils as OS

# Every dtype jnp names: numpy's and ml_dtypes' (whose bytes .npy cannot describe).
EXTENSION = [n for n in ("bfloat16", "float8_e3m4", "float8_e4m3", "float8_e4m3b11fnuz",
                         "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                         "float8_e8m0fnu", "float4_e2m1fn", "int2", "int4", "uint2", "uint4")
             if hasattr(jnp, n)]
DTYPES = EXTENSION + ["float16", "float32", "float64", "complex64", "complex128", "int8",
                      "int32", "int64", "uint8", "uint32", "bool"]


def same(a, b, where="/"):
    """Equal values of identical types all the way down; arrays by dtype, shape and bits."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, dict):  # keys in order, compared as values (bits, for a nan key)
        assert len(a) == len(b), where
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            same(ka, kb, f"{where}key {ka!r}/")
            same(va, vb, f"{where}{ka!r}/")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}{i}/")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), (where, a.dtype, b.dtype)
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, (where, a, b)
        if isinstance(a, float):
            assert math.copysign(1, a) == math.copysign(1, b), where


def _numpy(x):
    """JAX arrays as numpy arrays, containers and their order kept."""
    if isinstance(x, dict):
        return {k: _numpy(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_numpy(v) for v in x)
    return np.asarray(x) if isinstance(x, jax.Array) else x


def round_trip(obj, tmp_path, name="ckpt.npz"):
    path = tmp_path / name
    O.save(obj, path)
    return O.load(path)


def _values(dtype):
    """Values of the dtype, special ones included (inf, nan, -0.0 where it has them)."""
    raw = np.array([0.0, -0.0, 1.0, -1.5, 0.25, 3.0, np.inf, -np.inf, np.nan, 1e-3])
    dt = np.dtype(getattr(ml_dtypes, dtype, None) or dtype)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if dt.kind == "c":
            return (raw + 1j * raw[::-1]).astype(dt)
        finite = np.nan_to_num(raw, nan=0.0, posinf=1.0, neginf=-1.0)
        return (raw if dt.kind in "fV" else np.abs(finite)).astype(dt)


@pytest.mark.parametrize("dtype", DTYPES)
def test_arrays_and_scalars_keep_dtype_and_bits(tmp_path, dtype):
    values = _values(dtype)
    obj = {"array": values, "matrix": values[:4].reshape(2, 2), "zero_d": values[2:3].reshape(()),
           "scalar": values[2], "jax": jnp.asarray(values), "empty": values[:0],
           "keys": {values[2]: "scalar key"}}
    got = round_trip(obj, tmp_path)
    same({**obj, "jax": np.asarray(obj["jax"])}, got)
    assert type(got["scalar"]) is type(values[2]) and hash(next(iter(got["keys"])))


def test_python_containers_and_keys_keep_their_types(tmp_path):
    obj = {
        "counter": collections.Counter([3, 10, 10, 30]),
        "nested": [collections.Counter({np.int64(4): 2}), [[1, [2.5, None]], ()], (1, (2,))],
        "tuple": (0.9, 0.999), "none": None, "bool": True, "one": 1, "big": 2**80,
        "floats": [math.inf, -math.inf, math.nan, -0.0, 5e-324], "complex": 1 - 2j,
        "numpy": [np.int64(7), np.float32(0.1), np.float64(0.1), np.bool_(True), np.uint8(3)],
        np.int64(3): "np.int64 key", 2.5: "float key", (1, "a"): "tuple key", None: "None key",
        False: "bool key", 7: "int key", "": "empty", "__optx_meta__x": "name like the meta",
        "empty": [{}, [], (), collections.Counter()],
    }
    same(obj, round_trip(obj, tmp_path))


def test_unsavable_values_raise_type_error_and_write_nothing(tmp_path):
    path = tmp_path / "ckpt.npz"
    for bad in ({"f": print}, {"s": {1, 2}}, {"o": np.array([None, 1], dtype=object)}):
        with pytest.raises(TypeError, match="without pickle"):
            O.save(bad, path)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- schedulers


def _resume_case(name, before=7, after=25):
    """Runs a case ``before`` steps, saves optimizer and scheduler, then continues the original
    and, in a fresh optimizer and scheduler, the loaded copy: both and torch must agree."""
    cls, build = CASES[name]
    return cls, build, before, after


def _continue(opt, sched, n, step):
    out = []
    for k in range(n):
        opt._opt_called = True
        step(sched, k)
        out.append((sched.get_last_lr(), groups(opt)))
    return out


def _check_resume(tmp_path, cls, build, before, after, step=lambda s, k: s.step()):
    o_opt, t_opt = optimizers(cls)
    o_s, t_s = build(L, OS, o_opt), build(TL, TS, t_opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _continue(o_opt, o_s, before, step)
        _continue(t_opt, t_s, before, step)
        sched_sd = o_s.state_dict()
        loaded = round_trip({"optimizer": o_opt.state_dict(), "scheduler": sched_sd}, tmp_path)
        same(sched_sd, loaded["scheduler"])
        # torch's resume: build both again, then load their state_dicts.
        r_opt, _ = optimizers(cls)
        r_s = build(L, OS, r_opt)
        r_opt.load_state_dict(loaded["optimizer"])
        r_s.load_state_dict(loaded["scheduler"])
        resumed = _continue(r_opt, r_s, after, step)
        original = _continue(o_opt, o_s, after, step)
        in_torch = _continue(t_opt, t_s, after, step)
    assert resumed == original == in_torch


@pytest.mark.parametrize("name", list(CASES))
def test_every_scheduler_resumes_from_a_checkpoint(tmp_path, name):
    _check_resume(tmp_path, *_resume_case(name))


def test_multistep_lr_resumes_across_its_milestones(tmp_path):
    """The issue's case: MultiStepLR's Counter (repeated milestones), alone and inside
    SequentialLR, saved before and resumed across its milestones."""
    for name in ("MultiStepLR", "SequentialLR-multistep", "ChainedScheduler-multistep"):
        cls, build = CASES[name]
        _check_resume(tmp_path, cls, build, before=1, after=12)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_reduce_lr_on_plateau_resumes_from_a_checkpoint(tmp_path, mode):
    """Its ``best`` is inf (or -inf) until the first metric, ``mode_worse`` always."""
    metrics = np.float32(np.cos(np.arange(40) * 0.7) + np.arange(40) * 0.01)

    def build(M, S, o):
        return M.ReduceLROnPlateau(o, mode=mode, factor=0.7, patience=2, threshold=0.01,
                                   cooldown=1, min_lr=[1e-3, 0.0])

    for before in (0, 9):
        _check_resume(tmp_path, "SGD", build, before, 25,
                      step=lambda s, k: s.step(metrics[(k + before) % 40]))


# ----------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("dtype", [
    "bfloat16", "float16", "complex64", "complex128"])
def test_optimizer_state_resumes_bit_for_bit(tmp_path, dtype):
    """Adam on params of the dtype: saved after 3 steps, loaded into a fresh optimizer, the next
    3 steps give the params of the run that never saved, bit for bit."""
    dt = jnp.dtype(dtype)
    params = [jnp.linspace(-1, 1, 5).astype(dt), jnp.ones((2, 2), dt)]

    def grads(opt, k):
        return [jnp.sin(p * (k + 1)).astype(dt) for p in opt.params]

    opt = O.Adam(params, lr=0.01)
    for k in range(3):
        opt.step(grads(opt, k))
    loaded = round_trip(opt.state_dict(), tmp_path)
    same(_numpy(opt.state_dict()), loaded)
    restored = O.Adam(list(opt.params), lr=0.01)  # the model's params, from elsewhere
    restored.load_state_dict(loaded)
    for k in range(3, 6):
        opt.step(grads(opt, k))
        restored.step(grads(restored, k))
    for a, b in zip(opt.params, restored.params):
        assert a.dtype == dt
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


# ----------------------------------------------------------------------------- malformed files


def _with_meta(path, meta, **arrays):
    np.savez(path, __optx_meta__=np.asarray(json.dumps(meta)), **arrays)


MALFORMED = {
    "unknown dtype name": ({"array": "a", "dtype": "object"}, {"a": np.zeros(2, np.uint16)}),
    "dtype of another size": ({"array": "a", "dtype": "bfloat16"}, {"a": np.zeros(2, np.uint8)}),
    "dtype over signed ints": ({"array": "a", "dtype": "bfloat16"}, {"a": np.zeros(2, np.int16)}),
    "scalar with a shape": ({"array": "a", "scalar": True}, {"a": np.zeros(2)}),
    "unknown array field": ({"array": "a", "exec": "print(1)"}, {"a": np.zeros(2)}),
    "missing array": ({"array": "nowhere"}, {}),
    "py holding a list": ({"py": [1, 2]}, {}),
    "complex of strings": ({"complex": ["a", "b"]}, {}),
    "counter with a list key": ({"counter": [[{"list": []}, {"py": 1}]]}, {}),
    "node not an object": ([1, 2], {}),
    "two kinds in one node": ({"py": 1, "list": []}, {}),
    "pickled object array": ({"array": "a"}, {"a": np.array([None, print], dtype=object)}),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_metadata_raises_checkpoint_error_naming_the_file(tmp_path, case):
    meta, arrays = MALFORMED[case]
    path = tmp_path / "bad.npz"
    _with_meta(path, meta, **arrays)
    with pytest.raises(O.CheckpointError, match="corrupted checkpoint") as info:
        O.load(path)
    assert str(path) in str(info.value)
