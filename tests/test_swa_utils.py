"""optx.optim.swa_utils against torch.optim.swa_utils: SWA and EMA averages of parameter
pytrees, and SWALR's lr sequence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import swa_utils as TS

import optx.optim as O
from optx.optim import swa_utils as S

torch.set_default_dtype(torch.float64)


def _models(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [{"w": rng.normal(size=(3, 2)), "b": rng.normal(size=(2,))} for _ in range(n)]


def _torch_module(tree):
    m = torch.nn.Module()
    for k, v in sorted(tree.items()):
        m.register_parameter(k, torch.nn.Parameter(torch.tensor(v)))
    return m


@pytest.mark.parametrize("kind", ["swa", "ema", "ema_single", "custom"])
def test_averaged_model_matches_torch(kind):
    models = _models()
    kw_o, kw_t = {}, {}
    if kind == "ema":
        kw_o = {"multi_avg_fn": S.get_ema_multi_avg_fn(0.9)}
        kw_t = {"multi_avg_fn": TS.get_ema_multi_avg_fn(0.9)}
    elif kind == "ema_single":
        kw_o = {"avg_fn": S.get_ema_avg_fn(0.8)}
        kw_t = {"avg_fn": TS.get_ema_avg_fn(0.8)}
    elif kind == "custom":
        def fn(a, c, n):
            return 0.5 * a + 0.5 * c
        kw_o = kw_t = {"avg_fn": fn}
    avg = S.AveragedModel(jax.tree_util.tree_map(jnp.asarray, models[0]), **kw_o)
    tmod = _torch_module(models[0])
    tavg = TS.AveragedModel(tmod, **kw_t)
    for m in models:
        avg.update_parameters(jax.tree_util.tree_map(jnp.asarray, m))
        with torch.no_grad():
            for k, v in m.items():
                getattr(tmod, k).copy_(torch.tensor(v))
        tavg.update_parameters(tmod)
    assert avg.n_averaged == int(tavg.n_averaged) == len(models)
    for k in ("w", "b"):
        np.testing.assert_allclose(
            np.asarray(avg.module[k]), getattr(tavg.module, k).detach().numpy(), rtol=0,
            atol=1e-14)


@pytest.mark.parametrize("kw", [
    dict(swa_lr=0.05, anneal_epochs=4),
    dict(swa_lr=[0.05, 0.01], anneal_epochs=3, anneal_strategy="linear"),
    dict(swa_lr=0.02, anneal_epochs=0),
])
def test_swalr_matches_torch(kw):
    o_opt = O.SGD([{"params": jnp.zeros(2)}, {"params": jnp.zeros(1), "lr": 0.2}], lr=0.1)
    t_opt = torch.optim.SGD([{"params": [torch.zeros(2)]},
                             {"params": [torch.zeros(1)], "lr": 0.2}], lr=0.1)
    o_s, t_s = S.SWALR(o_opt, **kw), TS.SWALR(t_opt, **kw)
    for _ in range(8):
        assert o_s.get_last_lr() == pytest.approx(t_s.get_last_lr(), abs=1e-14)
        assert [g["swa_lr"] for g in o_opt.param_groups] == [
            g["swa_lr"] for g in t_opt.param_groups]
        o_opt._opt_called = True
        t_opt._opt_called = True
        o_s.step()
        t_s.step()


def test_swalr_rejects_bad_arguments():
    opt = O.SGD(jnp.zeros(1), lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        S.SWALR(opt, swa_lr=0.1, anneal_strategy="exp")
    with pytest.raises(ValueError, match="anneal_epochs"):
        S.SWALR(opt, swa_lr=0.1, anneal_epochs=-1)


def test_default_average_is_torchs_bit_for_bit_in_float32():
    # torch on CPU averages with get_swa_avg_fn, a true division by n + 1 per leaf.
    rng = np.random.default_rng(1)
    ms = [rng.normal(size=(500,)).astype(np.float32) for _ in range(12)]
    tmod = torch.nn.Module()
    tmod.register_parameter("w", torch.nn.Parameter(torch.tensor(ms[0])))
    tavg, avg = TS.AveragedModel(tmod), S.AveragedModel({"w": jnp.asarray(ms[0])})
    for m in ms:
        with torch.no_grad():
            tmod.w.copy_(torch.tensor(m))
        tavg.update_parameters(tmod)
        avg.update_parameters({"w": jnp.asarray(m)})
    np.testing.assert_array_equal(np.asarray(avg.module["w"]), tavg.module.w.detach().numpy())
