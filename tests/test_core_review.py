"""Regression tests for the core review: donation, NaN handling against torch, schedule
precision under x64, state/params mismatches and bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from registry import OPTIMIZERS

import optx


def _params(info):
    if info.matrices_only:
        return {"w": jnp.ones((3, 4)), "b": jnp.ones((2, 4))}
    return {"w": jnp.ones((3, 4)), "b": jnp.ones(4), "s": jnp.ones(())}


def _step_fn(tx, info):
    def quadratic(params):
        return sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(params))

    def step(grads, state, params):
        if info.needs_closure:
            return tx.update(grads, state, params, value=quadratic(params), value_fn=quadratic)
        return tx.update(grads, state, params)

    return step


@pytest.mark.parametrize("info", OPTIMIZERS, ids=lambda i: i.name)
def test_fresh_state_can_be_donated(info):
    """No two leaves of a fresh state share a buffer, so a jitted update can donate it."""
    tx = info.fn()
    params = _params(info)
    state = tx.init(params)
    leaves = jax.tree_util.tree_leaves(state)
    pointers = [x.unsafe_buffer_pointer() for x in leaves]
    assert len(set(map(id, leaves))) == len(leaves)
    assert len(set(pointers)) == len(pointers)
    step = jax.jit(_step_fn(tx, info), donate_argnums=(1,))
    grads = jax.tree_util.tree_map(lambda p: 0.5 * p, params)
    for _ in range(2):
        _, state = step(grads, state, params)
    jax.block_until_ready(state)


def _torch_run(torch_cls, tkw, tx, p0, grads):
    """Runs torch and optx side by side; returns both parameter trajectories and states."""
    t = torch.tensor(p0.copy(), requires_grad=True)
    opt = torch_cls([t], **tkw)
    x = jnp.asarray(p0)
    state = tx.init(x)
    out = []
    for g in grads:
        t.grad = torch.tensor(g)
        opt.step()
        u, state = tx.update(jnp.asarray(g), state, x)
        x = optx.apply_updates(x, u)
        # torch updates its state in place: keep copies.
        tstate = {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[t].items()}
        out.append((t.detach().numpy().copy(), np.asarray(x), tstate, state))
    return out


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rprop_nonfinite_gradient_matches_torch(bad):
    """torch's sign(NaN) is 0: the NaN entry neither moves nor changes its step size."""
    p0 = np.array([1.0, 2.0, 3.0])
    grads = [np.array([0.5, -0.5, 0.5]), np.array([bad, 0.5, 0.5]),
             np.array([0.5, 0.5, 0.5]), np.array([-0.5, 0.5, 0.5]), np.array([0.5, 0.5, -0.5])]
    steps = _torch_run(torch.optim.Rprop, dict(lr=0.1), optx.rprop(lr=0.1), p0, grads)
    if bad is np.nan:
        np.testing.assert_allclose(steps[1][1], [0.9, 2.1, 2.78], rtol=1e-15)
    for theirs, ours, tstate, state in steps:
        np.testing.assert_allclose(ours, theirs, rtol=1e-15)
        for k in ("prev", "step_size"):
            np.testing.assert_allclose(np.asarray(state.slots[k]), tstate[k].numpy(), rtol=1e-15)


@pytest.mark.parametrize("shape", [(5,), (3, 4)])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_adafactor_nonfinite_gradient_matches_torch(shape, bad):
    """torch's ``max(1.0, rms / d)`` and ``max(eps2, rms)`` are Python's: NaN gives the first
    argument, so one NaN entry of a vector does not turn the whole vector into NaN."""
    p0 = np.random.default_rng(0).standard_normal(shape)
    grads = []
    for k in range(4):
        g = np.full(shape, 0.5) + 0.1 * k
        if k == 1:
            g.flat[0] = bad
        grads.append(g)
    steps = _torch_run(torch.optim.Adafactor, dict(lr=0.1), optx.adafactor(lr=0.1), p0, grads)
    for theirs, ours, _, _ in steps:
        np.testing.assert_allclose(ours, theirs, rtol=1e-13, equal_nan=True)
    if shape == (5,):
        assert np.isfinite(steps[-1][1][1:]).all()


@pytest.mark.parametrize("kwargs", [dict(lr=0.0), dict(lr=-0.0), dict(eps=0.0), dict(eps=-0.0),
                                    dict(lr=jnp.asarray(0.0))])
def test_sparse_adam_refuses_zero_lr_and_eps_like_torch(kwargs):
    torch_kwargs = {k: torch.tensor(float(v)) if hasattr(v, "shape") else v
                    for k, v in kwargs.items()}
    with pytest.raises(ValueError) as theirs:
        torch.optim.SparseAdam([torch.zeros(2, requires_grad=True)], **torch_kwargs)
    with pytest.raises(ValueError) as ours:
        optx.sparse_adam(**kwargs)
    assert str(ours.value).split(":")[0] == str(theirs.value).split(":")[0]
    if not hasattr(kwargs.get("lr"), "shape"):
        assert str(ours.value) == str(theirs.value)


def test_lambda_schedules_run_in_float64_like_torch():
    """A schedule gets the count in the default integer dtype, so ``c / 10`` is float64 under
    x64 as torch's Python arithmetic is (an int32 count would make it float32)."""
    lr = lambda c: 0.05 * 0.9 ** (c / 10)  # noqa: E731
    beta1 = lambda c: 0.5 + 0.4 * (c / 30)  # noqa: E731
    p0 = np.random.default_rng(0).standard_normal((3, 4))
    t = torch.tensor(p0.copy(), requires_grad=True)
    opt = torch.optim.Adam([t], lr=0.05)
    tx = optx.adam(lr=lr, betas=(beta1, 0.999))
    x = jnp.asarray(p0)
    state = tx.init(x)
    step = jax.jit(tx.update)
    for s in range(30):
        group = opt.param_groups[0]
        group["lr"], group["betas"] = lr(s), (beta1(s), 0.999)
        t.grad = torch.tensor(np.sin(3 * t.detach().numpy()))
        opt.step()
        u, state = step(jnp.sin(3 * x), state, x)
        x = optx.apply_updates(x, u)
        assert float(optx.get_hyperparams(state)["lr"]) == lr(s + 1)
    np.testing.assert_allclose(np.asarray(x), t.detach().numpy(), rtol=1e-13)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("case", ["sgd_shape", "adam_shape", "adam_dtype", "adafactor_factored",
                                  "adafactor_ndim", "extra_leaf", "other_optimizer"])
def test_state_that_does_not_fit_the_params_is_refused(case, jit):
    """A state initialized for other params gets an error naming the slot, the leaf and both
    shapes/dtypes, instead of a silent broadcast or a raw lax error."""
    five = {"a": jnp.ones(5)}
    tx, state_params, params, error, match = {
        "sgd_shape": (optx.sgd(0.1, momentum=0.9), {"a": jnp.ones(1)}, five, ValueError,
                      r"'momentum_buffer' at \['a'\] has shape \(1,\).*needs shape \(5,\)"),
        "adam_shape": (optx.adam(0.1), {"a": jnp.ones(1)}, five, ValueError,
                       r"'exp_avg' at \['a'\] has shape \(1,\)"),
        "adam_dtype": (optx.adam(0.1), {"a": jnp.ones(5, jnp.float32)}, five, TypeError,
                       r"'exp_avg' at \['a'\] has dtype float32.*needs float64"),
        "adafactor_factored": (optx.adafactor(), {"a": jnp.ones((3, 4))},
                               {"a": jnp.ones((3, 5))}, ValueError,
                               r"'col_var' at \['a'\] has shape \(1, 4\).*needs shape \(1, 5\)"),
        "adafactor_ndim": (optx.adafactor(), {"a": jnp.ones((3, 4))}, {"a": jnp.ones(12)},
                           ValueError, r"holds the slots \['col_var', 'row_var'\].*\['variance'\]"),
        "extra_leaf": (optx.adam(0.1), {"a": jnp.ones(5), "b": jnp.ones(2)}, five, ValueError,
                       r"'exp_avg' tree does not match.*unexpected leaves \[\"\['b'\]\"\]"),
        "other_optimizer": (optx.adam(0.1), five, five, ValueError, r"holds the slots \[\]"),
    }[case]
    init = optx.sgd(0.1).init if case == "other_optimizer" else tx.init
    state = init(state_params)
    update = jax.jit(tx.update) if jit else tx.update
    with pytest.raises(error, match=match):
        update(params, state, params)


@pytest.mark.parametrize("name", ["adam", "adafactor", "adagrad"])
def test_states_with_slots_unlike_their_params_still_update(name):
    """Slots that legitimately differ from their parameter pass the state check: complex
    slots, Adafactor's factored moments, None params."""
    params = {"m": jnp.ones((3, 4)), "v": jnp.ones(4), "none": None}
    if name != "adafactor":
        params["c"] = jnp.ones(3, jnp.complex128)
    tx = getattr(optx, name)()
    state = tx.init(params)
    for update in (tx.update, jax.jit(tx.update)):
        u, _ = update(params, state, params)
        assert jax.tree_util.tree_structure(u) == jax.tree_util.tree_structure(params)


def test_clip_grad_value_refuses_complex_like_torch():
    p = torch.zeros(2, dtype=torch.complex64, requires_grad=True)
    p.grad = torch.ones(2, dtype=torch.complex64)
    with pytest.raises(NotImplementedError) as theirs:
        torch.nn.utils.clip_grad_value_([p], 0.5)
    grads = {"w": jnp.ones(2), "z": jnp.ones(2, jnp.complex64) * (1 + 2j)}
    with pytest.raises(NotImplementedError, match=r"\['z'\]") as ours:
        optx.clip_grad_value(0.5).update(grads, optx.clip_grad_value(0.5).init(grads))
    assert str(ours.value).startswith(str(theirs.value))


@pytest.mark.parametrize("name", ["sgd", "adam", "adafactor", "lbfgs"])
def test_python_scalar_param_is_refused_by_init_and_update(name):
    tx = getattr(optx, name)()
    with pytest.raises(TypeError, match=r"parameter at \['b'\] is a float"):
        tx.init({"a": jnp.ones(2), "b": 1.0})
    if name == "lbfgs":
        return
    params = {"a": jnp.ones(2), "b": jnp.asarray(1.0)}
    state = tx.init(params)
    with pytest.raises(TypeError, match=r"parameter at \['b'\] is a float"):
        tx.update(params, state, {"a": jnp.ones(2), "b": 1.0})
