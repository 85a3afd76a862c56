"""torch's Python branches on a hyperparameter being zero (``if weight_decay != 0``, SGD's
``if momentum != 0``), decided when the update is built: which changes recompile, which
``set_hyperparams`` refuses, and torch parity across every zero/nonzero flip (issue 29)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity import apply_update, make_params, max_rel_error, torch_step

import optx

torch.set_default_dtype(torch.float64)

# (torch class, constructor kwargs, [(step, group key, new value, compiles expected by then)]):
# the adapter compiles once at the first step and once more at each zero/nonzero flip only.
FLIPS = [
    ("SGD", dict(lr=0.05, momentum=0.9), [
        (2, "momentum", 0.95, 1),       # a value: data
        (3, "lr", 0.02, 1),
        (4, "weight_decay", 0.1, 2),    # 0 -> nonzero: torch enters `if weight_decay != 0`
        (5, "weight_decay", 0.2, 2),
        (6, "dampening", 0.3, 3),       # 0 -> nonzero: the (1 - dampening) factor comes in
        (7, "momentum", 0.0, 4),        # nonzero -> 0: torch skips the buffer, keeps it
        (9, "momentum", 0.5, 5),        # back: torch resumes from the old buffer
        (10, "weight_decay", 0.0, 6),   # nonzero -> 0: the branch goes again
    ]),
    ("SGD", dict(lr=0.05), [
        (2, "momentum", 0.9, 2),        # 0 -> 0.9: the buffer is allocated, torch's b = g
        (4, "momentum", 0.8, 2),
        (5, "nesterov", True, 3),       # a flag: always a rebuild
    ]),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True), [
        (2, "alpha", 0.9, 1),
        (3, "momentum", 0.0, 2),
        (6, "momentum", 0.7, 3),
        (7, "weight_decay", 0.1, 4),
    ]),
    ("Adam", dict(lr=0.01, weight_decay=0.1), [
        (2, "betas", (0.8, 0.99), 1),
        (3, "weight_decay", 0.0, 2),
        (5, "weight_decay", 0.05, 3),
    ]),
    ("Adagrad", dict(lr=0.1), [
        (2, "lr_decay", 0.1, 1),        # no torch branch: a value
        (3, "weight_decay", 0.1, 2),
    ]),
]


@pytest.mark.parametrize("cls,kwargs,changes", FLIPS,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(FLIPS)])
def test_adapter_recompiles_exactly_at_zero_flips_and_matches_torch(cls, kwargs, changes):
    params0 = make_params(seed=3)
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    topt = getattr(torch.optim, cls)(ps, **kwargs)
    opt = getattr(optx.optim, cls)([jnp.asarray(p) for p in params0], **kwargs)
    at = {step: (key, value, compiles) for step, key, value, compiles in changes}
    expected = 0
    for k in range(12):
        if k in at:
            key, value, expected = at[k]
            topt.param_groups[0][key] = opt.param_groups[0][key] = value
        gs = torch_step(topt, ps, k)
        opt.step([jnp.asarray(g) for g in gs])
        assert opt.trace_count == max(expected, 1), f"step {k}"
        assert max_rel_error([[np.asarray(p) for p in opt.params]],
                             [[p.detach().numpy() for p in ps]]) <= 1e-10, f"step {k}"
        # torch's state, the kept buffer included (in torch's state while unused).
        ours = opt.state_dict()["state"]
        for i, p in enumerate(ps):
            assert set(ours.get(i, {})) == set(topt.state[p]), f"step {k}"
            for name, value in topt.state[p].items():
                np.testing.assert_allclose(np.asarray(ours[i][name]), value.numpy(),
                                           rtol=1e-10, atol=1e-12, err_msg=f"step {k} {name}")


def _traced_step(tx, traces):
    @jax.jit
    def step(params, state, grads):
        traces.append(1)  # runs only when jax traces, i.e. compiles
        return apply_update(tx, params, state, grads)

    return step


def test_set_hyperparams_refuses_a_dropped_branch_and_says_how_to_keep_it():
    params = [jnp.asarray(p) for p in make_params()]
    state = optx.sgd(lr=0.1).init(params)  # momentum, dampening, weight_decay: constant 0
    assert optx.get_hyperparams(optx.set_hyperparams(state, weight_decay=0.0))["weight_decay"] == 0
    for name in ("weight_decay", "momentum", "dampening"):
        with pytest.raises(ValueError, match=rf"{name}=0.1 needs torch's `if {name} != 0` branch"
                                             rf".*nonzero {name} or a schedule"):
            optx.set_hyperparams(state, **{name: 0.1})
    state = optx.sgd(lr=0.1, momentum=0.9).init(params)
    with pytest.raises(ValueError, match="momentum=0 needs torch's code for a zero momentum.*"
                                         "schedule"):
        optx.set_hyperparams(state, momentum=0.0)
    state = optx.rmsprop(momentum=0.5).init(params)
    with pytest.raises(ValueError, match="momentum=0 needs"):
        optx.set_hyperparams(state, momentum=0)
    # Inside jit the value is unknown: accepted on the branch the update has (taken to be
    # nonzero: hypergradients w.r.t. momentum), refused where the branch is left out.
    moved = jax.jit(lambda s, v: optx.set_hyperparams(s, momentum=v))(state, 0.6)
    assert float(optx.get_hyperparams(moved)["momentum"]) == 0.6
    zero = optx.sgd(lr=0.1).init(params)
    with pytest.raises(ValueError, match="must be a concrete number.*at 0"):
        jax.jit(lambda s, v: optx.set_hyperparams(s, momentum=v))(zero, 0.6)
    # A schedule keeps both branches; a weight decay built nonzero may go to 0 (exactly torch).
    state = optx.sgd(lr=0.1, momentum=lambda c: 0.9, weight_decay=lambda c: 0.0).init(params)
    state = optx.set_hyperparams(state, momentum=0.0, weight_decay=0.1)
    state = optx.adam(weight_decay=0.1).init(params)
    assert float(optx.get_hyperparams(optx.set_hyperparams(state, weight_decay=0))
                 ["weight_decay"]) == 0.0


@pytest.mark.parametrize("make_tx,changes,torch_cls,torch_kwargs", [
    (lambda: optx.sgd(lr=0.05, momentum=0.9, weight_decay=0.1),
     {2: dict(momentum=0.95), 4: dict(weight_decay=0.0), 5: dict(weight_decay=0.2, lr=0.03)},
     torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
    (lambda: optx.sgd(lr=0.05, momentum=0.9, nesterov=True),
     {2: dict(momentum=0.5), 4: dict(lr=0.1)},
     torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (lambda: optx.rmsprop(lr=0.01, momentum=0.5, weight_decay=0.1),
     {2: dict(momentum=0.8), 3: dict(weight_decay=0.0, alpha=0.9)},
     torch.optim.RMSprop, dict(lr=0.01, momentum=0.5, weight_decay=0.1)),
    # A schedule may cross zero: the update keeps torch's skip (the buffer untouched at 0).
    (lambda: optx.sgd(lr=0.05, momentum=lambda c: 0.9, dampening=lambda c: 0.2),
     {2: dict(momentum=0.0), 3: dict(momentum=0.0), 5: dict(dampening=0.0)},
     torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.2)),
    (lambda: optx.rmsprop(lr=0.01, momentum=lambda c: 0.5),
     {2: dict(momentum=0.0), 3: dict(momentum=0.0)},
     torch.optim.RMSprop, dict(lr=0.01, momentum=0.5)),
], ids=["sgd", "sgd-nesterov", "rmsprop", "sgd-schedules", "rmsprop-schedule"])
def test_set_hyperparams_values_never_recompile_and_match_torch(make_tx, changes, torch_cls,
                                                                torch_kwargs):
    tx = make_tx()
    params0 = make_params(seed=5)
    params = [jnp.asarray(p) for p in params0]
    state = tx.init(params)
    traces: list[int] = []
    step = _traced_step(tx, traces)
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    topt = torch_cls(ps, **torch_kwargs)
    for k in range(8):
        # A scheduled value set for one update only, as set_hyperparams documents; the
        # schedules above are constants, so torch's group keeps the set value until changed.
        for key, value in changes.get(k, {}).items():
            topt.param_groups[0][key] = value
        values = {key: v for key, v in topt.param_groups[0].items()
                  if key in optx.get_hyperparams(state)}
        state = optx.set_hyperparams(state, **values)
        gs = torch_step(topt, ps, k)
        params, state = step(params, state, [jnp.asarray(g) for g in gs])
        assert max_rel_error([[np.asarray(p) for p in params]],
                             [[p.detach().numpy() for p in ps]]) <= 1e-10, f"step {k}"
    assert len(traces) == 1
    for i, p in enumerate(ps):
        for name, buf in state.slots.items():
            np.testing.assert_allclose(np.asarray(buf[i]), topt.state[p][name].numpy(),
                                       rtol=1e-10, atol=1e-12)


def test_a_constant_zero_leaves_the_branch_out_of_the_compiled_update():
    """The per-leaf code is torch's branch taken: a constant 0 compiles to fewer instructions
    than the same optimizer with the hyperparameter as a runtime value, and the stored state
    still holds the 0 (read by get_hyperparams and the adapter)."""
    params = [jnp.zeros((7,)) for _ in range(3)]

    def size(tx):
        step = jax.jit(functools.partial(apply_update, tx))
        return len(step.lower(params, tx.init(params), params).compile().as_text())

    assert size(optx.sgd(lr=0.1)) < size(optx.sgd(lr=0.1, weight_decay=0.1))
    assert size(optx.sgd(lr=0.1, momentum=0.9)) < size(optx.sgd(lr=0.1, momentum=lambda c: 0.9))
    state = optx.adam().init(params)
    assert float(optx.get_hyperparams(state)["weight_decay"]) == 0.0
    assert state.hyperparams.fixed == {"weight_decay": False}
    assert optx.sgd(momentum=0.9).init(params).hyperparams.fixed == {
        "momentum": True, "dampening": False, "weight_decay": False}
