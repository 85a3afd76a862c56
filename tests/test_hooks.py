"""torch.optim's optimizer hooks in optx.optim (issue 15.6): the same hooks registered on a torch
optimizer and on its optx port are called in the same order with the same arguments, and their
return values act the same."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.optim.optimizer as torch_optimizer_module

import optx.optim as O
import optx.optim.optimizer as optx_optimizer_module

torch.set_default_dtype(torch.float64)
# torch losses are read with float(), as torch code does.
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

W0 = np.array([0.5, -1.5])


def _torch():
    w = torch.tensor(W0, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)

    def closure_factory(scale):
        def closure():
            opt.zero_grad()
            loss = scale * torch.sum(w**2)
            loss.backward()
            return loss
        return closure

    return opt, closure_factory, lambda: w.detach().numpy().copy()


def _optx():
    opt = O.SGD([jnp.asarray(W0)], lr=0.1)

    def closure_factory(scale):
        return lambda params: scale * jnp.sum(params[0] ** 2)

    return opt, closure_factory, lambda: np.asarray(opt.params[0]).copy()


SIDES = {"torch": (_torch, torch_optimizer_module), "optx": (_optx, optx_optimizer_module)}


def _describe(args, kwargs):
    # What a hook sees, framework-neutral: the optimizer first, then which arguments.
    return (type(args[0]).__name__, len(args), sorted(kwargs))


def _step_hook_log(side):
    make, module = SIDES[side]
    opt, closure, params = make()
    log = []
    handles = [
        module.register_optimizer_step_pre_hook(
            lambda o, a, k: log.append(("global-pre", _describe(a, k)))),
        module.register_optimizer_step_post_hook(
            lambda o, a, k: log.append(("global-post", _describe(a, k)))),
    ]
    try:
        handles.append(opt.register_step_pre_hook(
            lambda o, a, k: log.append(("pre1", o is opt, _describe(a, k)))))

        def swap_closure(o, a, k):
            log.append(("pre2", _describe(a, k)))
            return (a[0],), {"closure": closure(2.0)}

        handles.append(opt.register_step_pre_hook(swap_closure))
        handles.append(opt.register_step_post_hook(
            lambda o, a, k: log.append(("post1", _describe(a, k), params().tolist()))))
        loss = float(opt.step(closure(1.0)))
        log.append(("loss", loss))
        handles[3].remove()  # swap_closure
        handles[3].remove()  # twice is harmless
        log.append(("loss", float(opt.step(closure=closure(1.0)))))
        for h in handles:
            h.remove()
        log.append(("loss", float(opt.step(closure(1.0)))))
    finally:
        for h in handles:
            h.remove()
    return log


def test_step_hooks_order_arguments_and_returned_args_match_torch():
    torch_log = _step_hook_log("torch")
    optx_log = _step_hook_log("optx")
    torch_log = [tuple(x.replace("SGD", "?") if isinstance(x, str) else x for x in e)
                 for e in torch_log]
    optx_log = [tuple(x.replace("SGD", "?") if isinstance(x, str) else x for x in e)
                for e in optx_log]
    assert len(optx_log) == len(torch_log)
    for a, b in zip(optx_log, torch_log):
        assert a[0] == b[0]
        if a[0] == "loss":
            assert a[1] == pytest.approx(b[1], rel=1e-12)
        elif a[0] == "post1":
            assert a[1] == b[1] and np.allclose(a[2], b[2], rtol=1e-12)
        else:
            assert a == b


def test_step_pre_hook_may_replace_grads():
    opt = O.SGD([jnp.asarray(W0)], lr=0.1)
    opt.register_step_pre_hook(lambda o, a, k: ((a[0], [jnp.ones(2)]), k))
    opt.step([jnp.zeros(2)])
    np.testing.assert_allclose(np.asarray(opt.params[0]), W0 - 0.1)


@pytest.mark.parametrize("side", ["torch", "optx"])
def test_step_pre_hook_bad_return_raises(side):
    make, _ = SIDES[side]
    opt, closure, _ = make()
    opt.register_step_pre_hook(lambda o, a, k: "nope")
    with pytest.raises(RuntimeError, match=r"must return None or a tuple of \(new_args, "
                                           r"new_kwargs\), but got nope\."):
        opt.step(closure(1.0))


def _state_dict_hook_log(side):
    make, _ = SIDES[side]
    opt, closure, _ = make()
    opt.step(closure(1.0))
    log = []
    opt.register_state_dict_pre_hook(lambda o: log.append("pre-a"))
    opt.register_state_dict_pre_hook(lambda o: log.append("pre-b"), prepend=True)
    opt.register_state_dict_post_hook(lambda o, sd: log.append(("post-a", sorted(sd))))

    def replace(o, sd):
        log.append("post-b")
        return {**sd, "extra": 1}

    h = opt.register_state_dict_post_hook(replace, prepend=True)
    sd = opt.state_dict()
    log.append(("result", sorted(sd)))
    h.remove()
    log.append(("result", sorted(opt.state_dict())))

    # load_state_dict hooks: the pre-hook sees a shallow copy and may return a new dict.
    sd = opt.state_dict()
    sd["param_groups"] = [dict(g) for g in sd["param_groups"]]

    def pre_a(o, state_dict):
        log.append(("lpre-a", state_dict is sd))
        new = dict(state_dict)
        new["param_groups"] = [{**g, "lr": 0.25} for g in state_dict["param_groups"]]
        return new

    opt.register_load_state_dict_pre_hook(pre_a)
    opt.register_load_state_dict_pre_hook(
        lambda o, state_dict: log.append(("lpre-b", state_dict is sd)), prepend=True)
    opt.register_load_state_dict_post_hook(
        lambda o: log.append(("lpost-a", o.param_groups[0]["lr"])))
    opt.register_load_state_dict_post_hook(lambda o: log.append("lpost-b"), prepend=True)
    opt.load_state_dict(sd)
    log.append(("lr", opt.param_groups[0]["lr"], sd["param_groups"][0]["lr"]))
    return log


def test_state_dict_and_load_state_dict_hooks_match_torch():
    assert _state_dict_hook_log("optx") == _state_dict_hook_log("torch")


def test_handles_work_as_context_managers_and_global_hooks_are_shared():
    seen = []
    opts = [O.SGD([jnp.ones(1)], lr=0.1), O.Adam({"w": jnp.ones(2)})]
    with optx_optimizer_module.register_optimizer_step_post_hook(
            lambda o, a, k: seen.append(type(o).__name__)):
        opts[0].step([jnp.ones(1)])
        opts[1].step({"w": jnp.ones(2)})
    opts[0].step([jnp.ones(1)])
    assert seen == ["SGD", "Adam"]
    assert isinstance(opts[0].register_step_pre_hook(lambda *a: None),
                      optx_optimizer_module.RemovableHandle)


def test_subclass_step_runs_hooks_once():
    """A subclass overriding step and calling super().step runs each hook once per step.
    (torch runs them twice once an instance of the parent class has been created, because it
    patches each instantiated class's step; optx does not copy that.)"""

    class Mine(O.SGD):
        def step(self, closure=None):
            return super().step(closure)

    opt = Mine([jnp.ones(2)], lr=0.1)
    O.SGD([jnp.ones(1)], lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append(type(a[0]).__name__))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.step([jnp.ones(2)])
    assert calls == ["Mine", "post"]
