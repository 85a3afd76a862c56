"""Gradient utilities: clipping against torch.nn.utils, apply_if_finite and accumulate_gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity import grad_fn, make_params, max_rel_error, run_optx, run_torch

import optx

SHAPES = ((3, 4), (5,), ())
CLIP = [
    (max_norm, norm_type)
    for norm_type in (2.0, 1.0, float("inf"), 3.0)
    for max_norm in (1e-3, 0.5, 1e3)
]


def _torch_clip_norm(grads, max_norm, norm_type):
    ps = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(ps, grads, strict=True):
        p.grad = torch.from_numpy(np.array(g))
    norm = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
    return [p.grad.numpy() for p in ps], float(norm)


@pytest.mark.parametrize("max_norm,norm_type", CLIP)
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    grads = grad_fn(make_params(seed=3, shapes=SHAPES), 5)
    expected, norm = _torch_clip_norm(grads, max_norm, norm_type)
    tx = optx.clip_grad_norm(max_norm, norm_type)
    got, _ = jax.jit(tx.update)([jnp.asarray(g) for g in grads], tx.init(grads))
    assert max_rel_error([[np.asarray(g) for g in got]], [expected]) <= 1e-14
    assert abs(float(optx.total_norm(grads, norm_type)) - norm) <= 1e-14 * norm


@pytest.mark.parametrize("clip_value", [1e-3, 0.3, 1e3])
def test_clip_grad_value_matches_torch(clip_value):
    grads = grad_fn(make_params(seed=3, shapes=SHAPES), 5)
    ps = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(ps, grads, strict=True):
        p.grad = torch.from_numpy(np.array(g))
    torch.nn.utils.clip_grad_value_(ps, clip_value)
    tx = optx.clip_grad_value(clip_value)
    got, _ = tx.update([jnp.asarray(g) for g in grads], tx.init(grads))
    for a, b in zip(got, ps, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b.grad.numpy())


class _ClipThenAdam(torch.optim.Adam):
    """torch's training loop: clip_grad_norm_ between backward() and step()."""

    def step(self, closure=None):
        torch.nn.utils.clip_grad_norm_(self.param_groups[0]["params"], 0.5, float("inf"))
        return super().step(closure)


def test_clip_in_a_chain_matches_torch_training_loop():
    params0 = make_params(seed=5)
    expected = run_torch(_ClipThenAdam, dict(lr=0.01), params0, 20)
    got = run_optx(optx.chain(optx.clip_grad_norm(0.5, float("inf")), optx.adam(0.01)), params0, 20)
    assert max_rel_error(got, expected) <= 1e-10


def test_clip_grad_norm_error_if_nonfinite():
    grads = [jnp.array([jnp.nan, 1.0]), jnp.ones(2)]
    tx = optx.clip_grad_norm(1.0, error_if_nonfinite=True)
    ps = [torch.zeros(2, requires_grad=True) for _ in grads]
    for p, g in zip(ps, grads, strict=True):
        p.grad = torch.from_numpy(np.asarray(g).copy())
    with pytest.raises(RuntimeError) as torch_err:
        torch.nn.utils.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError) as optx_err:
        tx.update(grads, tx.init(grads))
    assert str(optx_err.value) == str(torch_err.value)
    # Under jit the error comes through jax.debug.callback when the step runs.
    with pytest.raises(Exception, match="is non-finite, so it cannot be clipped"):
        jax.block_until_ready(jax.jit(tx.update)(grads, tx.init(grads)))
    # Without the flag the non-finite coefficient is applied, as torch does.
    got, _ = optx.clip_grad_norm(1.0).update(grads, tx.init(grads))
    torch.nn.utils.clip_grad_norm_(ps, 1.0)
    for a, b in zip(got, ps, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b.grad.numpy())


def test_apply_if_finite_skips_then_gives_up():
    params = [jnp.ones(3), jnp.ones(())]
    tx = optx.apply_if_finite(optx.sgd(0.1), max_consecutive_errors=2)
    step = jax.jit(tx.update)
    state = tx.init(params)
    good = [jnp.ones(3), jnp.ones(())]
    bad = [jnp.array([1.0, jnp.inf, 1.0]), jnp.ones(())]
    nan = [jnp.ones(3), jnp.array(jnp.nan)]

    u, state = step(good, state, params)
    assert np.allclose(u[0], -0.1) and int(state.inner_state.count) == 1
    for g in (bad, nan):  # skipped: zero updates, inner state untouched
        u, state = step(g, state, params)
        assert all(np.all(np.asarray(x) == 0) for x in u)
        assert int(state.inner_state.count) == 1 and not bool(state.last_finite)
    assert int(state.notfinite_count) == 2 and int(state.total_notfinite) == 2
    u, state = step(bad, state, params)  # third in a row > max_consecutive_errors: applied
    assert np.isinf(np.asarray(u[0])[1]) and int(state.inner_state.count) == 2
    u, state = step(good, state, params)
    assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 3
    assert bool(state.last_finite) and int(state.inner_state.count) == 3


@pytest.mark.parametrize("every_k", [1, 3])
def test_accumulate_gradients_matches_torch_accumulation(every_k):
    """k micro-batches of (loss / k).backward() then step(), against the wrapped optx optimizer."""
    params0 = make_params(seed=6)
    steps = 8
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    opt = torch.optim.Adam(ps, lr=0.05)
    expected = []
    for k in range(steps * every_k):
        gs = grad_fn([p.detach().numpy() for p in ps], k)
        for p, g in zip(ps, gs, strict=True):
            g = torch.from_numpy(np.array(g)) / every_k
            p.grad = g if p.grad is None else p.grad + g
        if k % every_k == every_k - 1:
            opt.step()
            opt.zero_grad(set_to_none=True)
        expected.append([p.detach().numpy().copy() for p in ps])
    tx = optx.accumulate_gradients(optx.adam(lr=0.05), every_k)
    got = run_optx(tx, params0, steps * every_k)
    assert max_rel_error(got, expected) <= 1e-10


def test_accumulate_gradients_state_and_validation():
    params = [jnp.zeros(2)]
    tx = optx.accumulate_gradients(optx.sgd(1.0), 2)
    state = tx.init(params)
    u, state = tx.update([jnp.array([1.0, 2.0])], state, params)
    assert np.all(np.asarray(u[0]) == 0) and int(state.mini_step) == 1
    u, state = tx.update([jnp.array([3.0, 4.0])], state, params)
    np.testing.assert_allclose(np.asarray(u[0]), [-2.0, -3.0])
    assert int(state.mini_step) == 0 and int(state.gradient_step) == 1
    assert np.all(np.asarray(state.acc_grads[0]) == 0)
    assert optx.get_hyperparams(state.inner_state)["lr"] == 1.0
    with pytest.raises(ValueError, match="every_k"):
        optx.accumulate_gradients(optx.sgd(1.0), 0)


def test_adapter_clip_helpers_match_torch_nn_utils():
    """optx.optim.clip_grad_norm_/clip_grad_value_ return what torch leaves in p.grad."""
    import optx.optim

    rng = np.random.default_rng(7)
    grads = [rng.normal(size=(3, 4)) * 5, rng.normal(size=(6,))]
    for norm_type in (2.0, 1.0, float("inf")):
        ps = [torch.zeros(g.shape, requires_grad=True) for g in grads]
        for p, g in zip(ps, grads):
            p.grad = torch.tensor(g)
        expected_norm = torch.nn.utils.clip_grad_norm_(ps, 1.5, norm_type=norm_type)
        clipped, norm = optx.optim.clip_grad_norm_([jnp.asarray(g) for g in grads], 1.5,
                                                   norm_type=norm_type)
        np.testing.assert_allclose(float(norm), float(expected_norm), rtol=1e-14)
        for c, p in zip(clipped, ps):
            np.testing.assert_allclose(np.asarray(c), p.grad.numpy(), rtol=1e-14)
    ps = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    for p, g in zip(ps, grads):
        p.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_(ps, 0.7)
    for c, p in zip(optx.optim.clip_grad_value_([jnp.asarray(g) for g in grads], 0.7), ps):
        np.testing.assert_array_equal(np.asarray(c), p.grad.numpy())
