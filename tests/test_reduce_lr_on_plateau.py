"""reduce_lr_on_plateau makes torch's ReduceLROnPlateau decisions, step for step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import optx


def metrics(kind, n=60, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "stall":
        return np.concatenate([np.linspace(1.0, 0.5, 10), np.full(n - 10, 0.5)])
    if kind == "noisy":
        return 1.0 / (1 + np.arange(n) * 0.05) + 0.05 * rng.normal(size=n)
    if kind == "rising":
        return np.linspace(0.0, 1.0, n) + 0.02 * rng.normal(size=n)
    if kind == "negative":
        return -1.0 + 0.01 * np.sin(np.arange(n))
    raise ValueError(kind)


def torch_scales(values, **kwargs):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for v in values:
        sched.step(float(v))
        out.append(opt.param_groups[0]["lr"])
    return np.array(out)


CONFIGS = [
    dict(),
    dict(patience=2, cooldown=1),
    dict(patience=0, factor=0.5, min_lr=0.1),
    dict(mode="max", patience=3),
    dict(mode="max", threshold_mode="abs", threshold=0.05, patience=1),
    dict(threshold_mode="abs", threshold=0.01, patience=2, cooldown=3, factor=0.3),
    dict(patience=1, factor=0.5, eps=0.2),
]


@pytest.mark.parametrize("kind", ["stall", "noisy", "rising", "negative"])
@pytest.mark.parametrize("kwargs", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_decisions_match_torch(kind, kwargs):
    values = metrics(kind)
    expected = torch_scales(values, **kwargs)
    opt_kwargs = dict(kwargs)
    if "min_lr" in opt_kwargs:
        opt_kwargs["min_scale"] = opt_kwargs.pop("min_lr")
    tx = optx.reduce_lr_on_plateau(**opt_kwargs)
    state = tx.init(None)
    # Jitted for one metric kind, op by op for the others (same code, less compiling).
    update = jax.jit(tx.update) if kind == "stall" else tx.update
    got = []
    for v in values:
        _, state = update(jnp.ones(()), state, value=v)
        got.append(float(state.scale))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_steps_per_epoch_uses_the_mean_and_scales_updates():
    values = metrics("stall", 40)
    k = 4
    expected = torch_scales(values.reshape(-1, k).mean(1), patience=1)
    tx = optx.chain(optx.sgd(lr=1.0), optx.reduce_lr_on_plateau(patience=1, steps_per_epoch=k))
    params = jnp.zeros(())
    state = tx.init(params)
    for epoch, chunk in enumerate(values.reshape(-1, k)):
        for v in chunk:
            scale_before = float(state[1].scale)
            updates, state = tx.update(jnp.ones(()), state, params, value=v)
            assert float(updates) == pytest.approx(-scale_before)
        assert float(state[1].scale) == pytest.approx(expected[epoch], rel=1e-12)


def test_constant_metric_reduces_at_calls_4_and_8():
    tx = optx.reduce_lr_on_plateau(patience=2, cooldown=1)
    state = tx.init(None)
    scales = []
    for _ in range(9):
        _, state = tx.update(jnp.ones(()), state, value=1.0)
        scales.append(float(state.scale))
    assert scales == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_axis_name_averages_across_devices():
    n = jax.local_device_count()
    tx = optx.reduce_lr_on_plateau(patience=0, axis_name="i")
    state = tx.init(None)
    rstate = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), state)
    step = jax.pmap(lambda s, v: tx.update(jnp.ones(()), s, value=v)[1], axis_name="i")
    # Device metrics differ, their mean stalls: every replica reduces at the same epoch.
    for epoch in range(4):
        values = jnp.arange(n, dtype=jnp.float64) - (n - 1) / 2 + (1.0 if epoch == 0 else 0.5)
        rstate = step(rstate, values)
    scales = np.asarray(rstate.scale)
    assert np.all(scales == scales[0])
    np.testing.assert_allclose(scales[0], torch_scales([1.0, 0.5, 0.5, 0.5], patience=0)[-1])


def test_requires_value():
    tx = optx.reduce_lr_on_plateau()
    with pytest.raises(ValueError, match="needs the metric"):
        tx.update(jnp.ones(()), tx.init(None))
