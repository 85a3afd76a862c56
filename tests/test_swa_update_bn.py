"""optx.optim.swa_utils.update_bn against torch's, on the same data: flax linen models (Linear +
BatchNorm1d, a BatchNorm called twice per forward, Conv2d + BatchNorm2d) and a plain pytree of
running statistics with its own ``stats_fn``; and SWA end to end with batch norm (AveragedModel,
update_bn, then ``swa_model(x)`` in eval mode) for both."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import swa_utils as TS

from optx.optim import swa_utils as S

SIZES = (5, 3, 7)  # batches of different sizes


def _j(t):
    return jnp.asarray(t.detach().numpy())


def _loader(shape, dtype, seed=0):
    """(input, label) batches: numpy for optx, torch tensors for torch."""
    rng = np.random.default_rng(seed)
    ours = [(((rng.normal(size=(n, *shape)) * 2 + 1)).astype(dtype), np.zeros(n)) for n in SIZES]
    return ours, [(torch.tensor(x), torch.tensor(y)) for x, y in ours]


@pytest.fixture
def torch_dtype(request):
    old = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(old)


def _random_affine(bns):
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)


class Mlp(nn.Module):
    """torch's Sequential(Linear(4, 6), BatchNorm1d(6), ReLU, Linear(6, 3), BatchNorm1d(3));
    ``shared``: one BatchNorm1d(6) applied after both Linear(4, 6) and Linear(6, 6)."""

    dtype: jnp.dtype = jnp.float64
    shared: bool = False

    @nn.compact
    def __call__(self, x, train=False):
        d = dict(param_dtype=self.dtype)
        bn = nn.BatchNorm(use_running_average=not train, **d)
        x = nn.relu(bn(nn.Dense(6, **d)(x)))
        if self.shared:
            return bn(nn.Dense(6, **d)(x))
        return nn.BatchNorm(use_running_average=not train, **d)(nn.Dense(3, **d)(x))


def _torch_mlp(shared=False):
    torch.manual_seed(0)
    L, B = torch.nn.Linear, torch.nn.BatchNorm1d
    if not shared:
        m = torch.nn.Sequential(L(4, 6), B(6), torch.nn.ReLU(), L(6, 3), B(3))
        _random_affine([m[1], m[4]])
        return m, [m[0], m[3]], [m[1], m[4]]

    class Shared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.bn, self.fc2 = L(4, 6), B(6), L(6, 6)

        def forward(self, x):
            return self.bn(self.fc2(torch.relu(self.bn(self.fc1(x)))))

    m = Shared()
    _random_affine([m.bn])
    return m, [m.fc1, m.fc2], [m.bn]


def _flax_variables(linears, bns):
    """The flax Mlp's variables holding the torch model's parameters and buffers."""
    params, stats = {}, {}
    for i, lin in enumerate(linears):
        params[f"Dense_{i}"] = {"kernel": _j(lin.weight).T, "bias": _j(lin.bias)}
    for i, bn in enumerate(bns):
        params[f"BatchNorm_{i}"] = {"scale": _j(bn.weight), "bias": _j(bn.bias)}
        stats[f"BatchNorm_{i}"] = {"mean": _j(bn.running_mean), "var": _j(bn.running_var)}
    return {"params": params, "batch_stats": stats}


def _assert_stats(stats, bns, tol):
    for i, bn in enumerate(bns):
        for ours, theirs in (("mean", bn.running_mean), ("var", bn.running_var)):
            np.testing.assert_allclose(np.asarray(stats[f"BatchNorm_{i}"][ours]),
                                       theirs.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("torch_dtype,shared", [
    (torch.float64, False), (torch.float64, True), (torch.float32, False)],
    indirect=["torch_dtype"], ids=["float64", "shared-bn", "float32"])
def test_update_bn_flax_matches_torch(torch_dtype, shared):
    model, linears, bns = _torch_mlp(shared)
    variables = _flax_variables(linears, bns)
    dtype = np.float64 if torch_dtype == torch.float64 else np.float32
    ours, theirs = _loader((4,), dtype)
    TS.update_bn(theirs, model)
    module = Mlp(dtype, shared)
    # The module or its bound apply: both name the flax model.
    new = S.update_bn(ours, (module.apply if shared else module, variables), train=True)
    _assert_stats(new["batch_stats"], bns, 1e-12 if dtype == np.float64 else 1e-6)
    assert model.training  # torch restores the mode; flax's is an argument
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(variables)
    np.testing.assert_array_equal(new["params"]["Dense_0"]["kernel"],
                                  variables["params"]["Dense_0"]["kernel"])


class Cnn(nn.Module):
    """torch's Sequential(Conv2d(2, 3, 3), BatchNorm2d(3), ReLU) on NHWC inputs."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(3, (3, 3), padding="VALID", param_dtype=jnp.float64)(x)
        return nn.relu(nn.BatchNorm(use_running_average=not train, param_dtype=jnp.float64)(x))


@pytest.mark.parametrize("torch_dtype", [torch.float64], indirect=True)
def test_update_bn_flax_batchnorm2d_matches_torch(torch_dtype):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU())
    _random_affine([model[1]])
    conv, bn = model[0], model[1]
    variables = {
        "params": {"Conv_0": {"kernel": _j(conv.weight).transpose(2, 3, 1, 0),
                              "bias": _j(conv.bias)},
                   "BatchNorm_0": {"scale": _j(bn.weight), "bias": _j(bn.bias)}},
        "batch_stats": {"BatchNorm_0": {"mean": jnp.zeros(3), "var": jnp.ones(3)}}}
    ours, theirs = _loader((2, 5, 5), np.float64, seed=2)
    TS.update_bn(theirs, model)
    nhwc = [(x.transpose(0, 2, 3, 1), y) for x, y in ours]
    new = S.update_bn(nhwc, (Cnn(), variables), train=True)
    _assert_stats(new["batch_stats"], [bn], 1e-12)


# A plain-JAX model with a pytree of running statistics: Linear(4, 6), BatchNorm1d(6), ReLU,
# Linear(6, 3), as torch's Sequential of the same.
def _plain_apply(variables, x):
    p, s = variables["params"], variables["batch_stats"]
    h = x @ p["fc1"]["weight"].T + p["fc1"]["bias"]
    h = (h - s["bn"]["mean"]) / jnp.sqrt(s["bn"]["var"] + 1e-5)
    h = h * p["bn"]["weight"] + p["bn"]["bias"]
    return jax.nn.relu(h) @ p["fc2"]["weight"].T + p["fc2"]["bias"]


def _plain_stats(variables, x):
    p = variables["params"]
    h = x @ p["fc1"]["weight"].T + p["fc1"]["bias"]
    return {"bn": {"mean": h.mean(0), "var": h.var(0, ddof=1)}}


def _torch_plain():
    torch.manual_seed(3)
    m = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(),
                            torch.nn.Linear(6, 3))
    _random_affine([m[1]])
    return m


def _plain_variables(m):
    named = {k: _j(v) for k, v in m.state_dict().items() if "num_batches" not in k}
    return {"params": {"fc1": {"weight": named["0.weight"], "bias": named["0.bias"]},
                       "bn": {"weight": named["1.weight"], "bias": named["1.bias"]},
                       "fc2": {"weight": named["3.weight"], "bias": named["3.bias"]}},
            "batch_stats": {"bn": {"mean": named["1.running_mean"],
                                   "var": named["1.running_var"]}}}


def _train_steps(model, to_variables, n=3, seed=5):
    """Yields the torch model's variables after each of n "training" steps (noise on the
    parameters and a forward pass in training mode, which moves the running statistics)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.tensor(rng.normal(size=p.shape) * 0.1))
            model(torch.tensor(rng.normal(size=(8, 4))))
        yield to_variables(model)


@pytest.mark.parametrize("torch_dtype", [torch.float64], indirect=True)
def test_update_bn_plain_pytree_matches_torch(torch_dtype):
    model = _torch_plain()
    variables = _plain_variables(model)
    ours, theirs = _loader((4,), np.float64, seed=4)
    TS.update_bn(theirs, model)
    new = S.update_bn(ours, (_plain_apply, variables), stats_fn=_plain_stats)
    for k in ("mean", "var"):
        np.testing.assert_allclose(np.asarray(new["batch_stats"]["bn"][k]),
                                   getattr(model[1], f"running_{k}").numpy(), rtol=1e-12)


@pytest.mark.parametrize("torch_dtype", [torch.float64], indirect=True)
@pytest.mark.parametrize("kind,use_buffers", [
    ("flax", False), ("flax", True), ("plain", False)])
def test_swa_with_batch_norm_end_to_end(torch_dtype, kind, use_buffers):
    """AveragedModel over a few training states, update_bn (torch's recipe; with use_buffers
    the averaged buffers instead), then the averaged model's eval-mode output."""
    if kind == "flax":
        model, linears, bns = _torch_mlp()
        to_variables = lambda m: _flax_variables(linears, bns)  # noqa: E731
        apply, kw, bn_kw = Mlp(), {"train": False}, {"train": True}
    else:
        model, to_variables = _torch_plain(), _plain_variables
        apply, kw, bn_kw = _plain_apply, {}, {"stats_fn": _plain_stats}
    t_swa = TS.AveragedModel(model, use_buffers=use_buffers)
    swa = S.AveragedModel((apply, to_variables(model)), use_buffers=use_buffers)
    for variables in _train_steps(model, to_variables):
        t_swa.update_parameters(model)
        swa.update_parameters(variables)
    ours_data, theirs_data = _loader((4,), np.float64, seed=6)
    if not use_buffers:
        TS.update_bn(theirs_data, t_swa)
        S.update_bn(ours_data, swa, **bn_kw)
    x = np.random.default_rng(7).normal(size=(6, 4))
    t_swa.eval()
    with torch.no_grad():
        expected = t_swa(torch.tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(swa(jnp.asarray(x), **kw)), expected, rtol=1e-12,
                               atol=1e-12)
    assert swa.n_averaged == int(t_swa.n_averaged) == 3


def _swa_mlp():
    return S.AveragedModel((Mlp(), _flax_variables(*_torch_mlp()[1:])))


def test_update_bn_bad_input_changes_nothing():
    swa = _swa_mlp()
    variables, before = swa.module, swa.module
    data = [np.ones((3, 4))]
    with pytest.raises(ValueError, match="no batches"):
        S.update_bn([], swa, train=True)
    with pytest.raises(ValueError, match=r"BatchNorm 'BatchNorm_0'.*train=True"):
        S.update_bn(data, swa)  # eval mode: torch's update_bn would call model.train()
    with pytest.raises(TypeError, match="stats_fn"):
        S.update_bn(data, (_plain_apply, variables))
    with pytest.raises(ValueError, match="statistics from stats_fn"):
        S.update_bn(data, swa, stats_fn=lambda v, x: {"mean": x.mean(0)})
    # torch refuses one value per channel in training mode with the same message.
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        S.update_bn([np.ones((1, 4))], swa, train=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        TS.update_bn([torch.ones(1, 4)], _torch_mlp()[0])
    assert swa.module is before


def test_update_bn_refuses_what_torch_batch_norm_has_not():
    class Lifted(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            bn = nn.vmap(nn.BatchNorm, variable_axes={"params": 0, "batch_stats": 0},
                         split_rngs={"params": True})
            return bn(use_running_average=not train)(x)

    variables = {"params": {"VmapBatchNorm_0": {"scale": jnp.ones((2, 4)),
                                                "bias": jnp.zeros((2, 4))}},
                 "batch_stats": {"VmapBatchNorm_0": {"mean": jnp.zeros((2, 4)),
                                                     "var": jnp.ones((2, 4))}}}
    with pytest.raises(ValueError, match="lifted transform"):
        S.update_bn([np.ones((2, 3, 4))], (Lifted(), variables), train=True)

    class Masked(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=False)(x, mask=x > 0)

    variables = {"params": {"BatchNorm_0": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}},
                 "batch_stats": {"BatchNorm_0": {"mean": jnp.zeros(4), "var": jnp.ones(4)}}}
    with pytest.raises(ValueError, match="'BatchNorm_0' was called with a mask"):
        S.update_bn([np.ones((3, 4))], (Masked(), variables))


def test_update_bn_without_batch_norm_returns_at_once():
    class Plain(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(x)

    variables = {"params": {"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}}

    def loader():
        raise AssertionError("torch does not iterate the loader when there is no BatchNorm")
        yield

    assert S.update_bn(loader(), (Plain(), variables)) is variables


def test_update_bn_moves_inputs_to_device_and_updates_in_place():
    device = jax.devices()[-1]
    swa = _swa_mlp()
    data = [(np.ones((3, 4)) * i, None) for i in range(1, 3)]
    seen = []

    def stats_fn(v, x):
        seen.append(x.devices())
        return jax.tree_util.tree_map(jnp.zeros_like, v["batch_stats"])

    new = S.update_bn(data, swa, device, stats_fn=stats_fn)
    assert seen == [{device}] * 2 and swa.module is new
