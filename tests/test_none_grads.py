"""Issue 26.2: a ``None`` gradient skips its parameter exactly as torch skips ``p.grad is None``
(no decay, no momentum, no step count), in ``optx.optim`` and in the functional API, jitted,
with no recompile when the same leaves are None again.

Every optimizer of the registry (but LBFGS, whose closure gives every gradient) runs the same
schedule of missing gradients in torch and optx: the second parameter gets gradients only from
step 3 on (torch creates its state lazily then, so its step count starts there) and the third
misses step 4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity import grad_fn, make_params, max_rel_error
from registry import OPTIMIZERS

import optx
import optx.optim as O

STEPS = 5
INFOS = [pytest.param(i, id=i.name) for i in OPTIMIZERS if not i.needs_closure]


def _present(k: int, i: int) -> bool:
    return not ((i == 1 and k < 2) or (i == 2 and k == 4))


def _grads(params, k):
    return [g if _present(k, i) else None for i, g in enumerate(grad_fn(params, k))]


def _patterns(n: int) -> int:
    """How many patterns of present gradients the schedule gives ``n`` parameters."""
    return len({tuple(_present(k, i) for i in range(n)) for k in range(STEPS)})


def _config(info):
    shapes = info.parity_shapes or ((2, 3), (4,), (3, 2))
    if info.matrices_only:
        shapes = ((3, 2), (2, 4), (3, 3))
    return info.variants or {}, make_params(1, shapes)


def _torch_run(info, kw, p0):
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in p0]
    opt = info.torch_cls(ps, **kw)
    traj = []
    for k in range(STEPS):
        for p, g in zip(ps, _grads([p.detach().numpy() for p in ps], k)):
            p.grad = None if g is None else torch.tensor(g)
            if g is not None and info.sparse_grads:
                p.grad = p.grad.to_sparse()
        opt.step()
        traj.append([p.detach().numpy().copy() for p in ps])
    return traj, opt


def _tol(info):
    return 1e-2 if info.name == "muon" else info.parity_tol


@pytest.mark.parametrize("info", INFOS)
def test_adapter_skips_none_grads_as_torch(info):
    kw, p0 = _config(info)
    t_traj, topt = _torch_run(info, kw, p0)
    opt = getattr(O, info.torch_name)([jnp.asarray(p) for p in p0], **kw)
    traj = []
    for k in range(STEPS):
        g = _grads([np.asarray(p) for p in opt.params], k)
        opt.step([None if x is None else jnp.asarray(x) for x in g])
        traj.append([np.asarray(p) for p in opt.params])
    assert max_rel_error(traj, t_traj) <= _tol(info)
    # torch's per-parameter steps (and which parameters have state) come out of state_dict.
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sorted(sd["state"]) == sorted(tsd["state"])
    for i, entry in tsd["state"].items():
        if "step" in entry:
            assert float(sd["state"][i]["step"]) == float(entry["step"])
    # One compile per pattern of None leaves.
    assert opt.trace_count == _patterns(len(p0))


@pytest.mark.parametrize("info", INFOS)
def test_functional_update_skips_none_grads_as_torch(info):
    kw, p0 = _config(info)
    t_traj, _ = _torch_run(info, kw, p0)
    tx = info.fn(**kw)
    params = [jnp.asarray(p) for p in p0]
    state = tx.init(params)
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)
        updates, state = tx.update(grads, state, params)
        return optx.apply_updates(params, updates), state

    traj = []
    for k in range(STEPS):
        g = _grads([np.asarray(p) for p in params], k)
        params, state = step(params, state, [None if x is None else jnp.asarray(x) for x in g])
        traj.append([np.asarray(p) for p in params])
    assert max_rel_error(traj, t_traj) <= _tol(info)
    # One per pattern, and one more as the first None switches the state to per-parameter
    # steps (the state's structure changes once).
    assert len(traces) == _patterns(len(p0)) + 1


def test_skipped_parameter_keeps_params_and_state_bitwise():
    params = {"a": jnp.asarray([1.0, -2.0]), "b": jnp.asarray([0.5])}
    opt = O.AdamW(params, lr=0.1, weight_decay=0.5, amsgrad=True)
    opt.step({"a": jnp.ones(2), "b": jnp.ones(1)})
    before = (np.asarray(opt.params["b"]), {k: np.asarray(v) for k, v in
                                             opt.state[opt.params["b"]].items()})
    for _ in range(3):
        opt.step({"a": jnp.ones(2), "b": None})
    after = opt.state[opt.params["b"]]
    np.testing.assert_array_equal(np.asarray(opt.params["b"]), before[0])
    assert set(after) == set(before[1])
    for k, v in before[1].items():
        np.testing.assert_array_equal(np.asarray(after[k]), v)
    assert float(opt.state[opt.params["a"]]["step"]) == 4


def test_never_stepped_parameter_has_no_state_as_torch():
    x, y = jnp.ones(3), jnp.ones(2)
    tx, ty = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    opt, topt = O.Adam([x, y], lr=0.1), torch.optim.Adam([tx, ty], lr=0.1)
    ty.grad = torch.ones(2)
    topt.step()
    opt.step([None, jnp.ones(2)])
    assert list(opt.state_dict()["state"]) == list(topt.state_dict()["state"]) == [1]
    assert len(opt.state) == len(topt.state) == 1
    assert x not in opt.state and y in opt.state
    assert (tx in topt.state) is False
    assert dict(opt.state[x]) == dict(topt.state[tx]) == {}  # a defaultdict's read: empty


def test_none_grads_under_named_params_and_groups():
    opt = O.SGD([{"params": [("w", jnp.ones(2))]},
                 {"params": [("b", jnp.ones(1))], "lr": 0.5}], lr=0.1, momentum=0.9)
    opt.step({"w": jnp.ones(2), "b": None})
    opt.step({"w": jnp.ones(2), "b": jnp.ones(1)})
    np.testing.assert_allclose(np.asarray(opt.params["b"]), [0.5])
    np.testing.assert_allclose(np.asarray(opt.params["w"]), [1 - 0.1 - 0.19] * 2)
