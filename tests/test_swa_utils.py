"""optx.optim.swa_utils against torch.optim.swa_utils: SWA and EMA averages of parameter
pytrees, AveragedModel evaluating the averaged model, and SWALR's lr sequence (update_bn:
test_swa_update_bn.py)."""

from __future__ import annotations

import doctest

import equinox as eqx
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


# AveragedModel over a model, not only its parameters: swa_model(x) evaluates the average.
def _torch_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))


def _mlp(params, x):
    h = jax.nn.relu(x @ params["0.weight"].T + params["0.bias"])
    return h @ params["2.weight"].T + params["2.bias"]


class _Net:
    """The porting guide's model class: parameters in ``.params``, called as
    ``model(params, x)``."""

    def __init__(self, params):
        self.params = params

    def __call__(self, params, x):
        return _mlp(params, x)


def _as_form(form, params):
    if form == "pair":
        return (_mlp, params)
    if form == "object":
        return _Net(params)
    mlp = eqx.nn.MLP(4, 3, 5, 1, activation=jax.nn.relu, key=jax.random.PRNGKey(0))
    leaves = [params[k] for k in ("0.weight", "0.bias", "2.weight", "2.bias")]
    return eqx.tree_at(lambda m: [m.layers[0].weight, m.layers[0].bias, m.layers[1].weight,
                                  m.layers[1].bias], mlp, leaves)


@pytest.mark.parametrize("form", ["pair", "object", "equinox"])
def test_averaged_model_evaluates_like_torch(form):
    tmod = _torch_mlp()
    rng = np.random.default_rng(3)

    def params():
        return {k: jnp.asarray(v.detach().numpy()) for k, v in tmod.named_parameters()}

    tavg, avg = TS.AveragedModel(tmod), S.AveragedModel(_as_form(form, params()))
    for _ in range(3):
        with torch.no_grad():
            for p in tmod.parameters():
                p.add_(torch.tensor(rng.normal(size=p.shape)))
        tavg.update_parameters(tmod)
        # The optimizer holds the trained params; the porting guide's model object does not.
        avg.update_parameters(params() if form == "object" else _as_form(form, params()))
    x = rng.normal(size=(2, 4))
    out = avg(jnp.asarray(x)) if form != "equinox" else jax.vmap(avg)(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), tavg(torch.tensor(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    if form == "equinox":  # the averaged copy is the model, its activation kept
        assert isinstance(avg.module, eqx.nn.MLP) and avg.module.activation is jax.nn.relu
    else:
        np.testing.assert_allclose(np.asarray(avg.module["2.bias"]),
                                   tavg.module[2].bias.detach().numpy(), rtol=1e-14)


def test_averaged_model_of_params_alone_is_still_the_average():
    params = {"w": jnp.ones(2)}
    avg = S.AveragedModel(params)
    assert avg() is avg.module and avg.apply_fn is None
    with pytest.raises(TypeError, match=r"AveragedModel\(\(apply_fn, params\)\)"):
        avg(jnp.ones(2))


def test_averaged_model_bad_input_changes_nothing():
    with pytest.raises(ValueError, match="Only one of avg_fn and multi_avg_fn"):
        S.AveragedModel({"w": jnp.ones(2)}, avg_fn=S.get_ema_avg_fn(),
                        multi_avg_fn=S.get_ema_multi_avg_fn())
    with pytest.raises(AssertionError, match="Only one of avg_fn and multi_avg_fn"):
        TS.AveragedModel(_torch_mlp(), avg_fn=TS.get_ema_avg_fn(),
                         multi_avg_fn=TS.get_ema_multi_avg_fn())
    with pytest.raises(TypeError, match=r"\(apply_fn, variables\)"):
        S.AveragedModel(_mlp)
    net = _Net({"0.weight": jnp.ones((5, 4))})
    with pytest.raises(TypeError, match="optimizer.params"):
        S.AveragedModel(net).update_parameters(net)
    avg = S.AveragedModel((_mlp, {"w": jnp.ones(2)}))
    avg.update_parameters({"w": jnp.ones(2)})
    before = avg.module
    with pytest.raises(ValueError, match="missing leaves"):
        avg.update_parameters({"v": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"\['w'\] has shape \(3,\)"):
        avg.update_parameters({"w": jnp.ones(3)})
    assert avg.module is before and avg.n_averaged == 1


def test_averaged_model_device():
    device = jax.devices()[-1]
    avg = S.AveragedModel({"w": jnp.zeros(2)}, device=device)
    avg.update_parameters({"w": jax.device_put(jnp.ones(2), jax.devices()[0])})
    avg.update_parameters({"w": jnp.full(2, 3.0)})
    assert avg.module["w"].devices() == {device}
    np.testing.assert_array_equal(avg.module["w"], [2.0, 2.0])


@pytest.mark.parametrize("name", ["AveragedModel", "update_bn"])
def test_docstring_example_runs(name):
    tests = doctest.DocTestFinder(recurse=False).find(getattr(S, name), name, globs={})
    assert tests and tests[0].examples, f"{name} has no >>> example"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{name}'s example fails (run pytest -s to see it)"
