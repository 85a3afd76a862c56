"""torch's ``TestOptimRenewed`` hook cases, run on torch and on ``optx.optim`` with the same
calls (issue 26.6); configurations from torch's ``optim_db`` (``renewed.py``).

Ported: ``test_state_dict_pre_hook``, ``test_state_dict_post_hook``,
``test_state_dict_pre_post_hook``, ``test_load_state_dict_pre_hook_and_prepend``,
``test_load_state_dict_post_hook``, ``test_load_state_dict_pre_post_hook`` (every optimizer:
they build it and take or load a state_dict; those that fail today loop over the optimizers
in one test), and ``test_step_pre_hook``, ``test_step_post_hook``, ``test_step_all_hooks``
(global hooks too) on SGD and Adam: the hooks wrap the one generic step, and every optimizer
would cost a compile each. torch steps these with no gradients; here the gradients are zeros,
so that only the hooks are under test (``test_torch_renewed_steps`` has the steps without
gradients).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch.optim.optimizer as torch_optimizer_module
from renewed import NAMES, Pair, fresh, make_params, mode, pick

import optx.optim.optimizer as optx_optimizer_module


def _state_dict_pre_hook(optimizer):
    optimizer.state["test"] = 1


def _state_dict_post_hook(optimizer, state_dict):
    if "test" in state_dict["state"]:
        state_dict["state"].pop("test")
        state_dict["ran_state_dict_pre_hook"] = True
    else:
        state_dict["ran_state_dict_pre_hook"] = False
    return state_dict


def _load_state_dict_pre_hook1(optimizer, state_dict):
    state_dict["param_groups"][0]["lr"] = 0.002


def _load_state_dict_pre_hook2(optimizer, state_dict):
    my_state_dict = copy.deepcopy(state_dict)
    my_state_dict["param_groups"][0]["lr"] = 0.003
    return my_state_dict


def _load_state_dict_post_hook(optimizer):
    optimizer.state["ran_load_state_dict_pre_hook2"] = optimizer.param_groups[0]["lr"] == 0.003
    optimizer.state["ran_load_state_dict_post_hook"] = True


def _every_optimizer(turn):
    """Fresh torch and optx optimizers of every kind: the hook tests run them all in one test
    each, as the hooks are the adapter's alike for every optimizer."""
    for name in NAMES:
        yield from fresh(name, turn)


def test_state_dict_pre_hook():
    for opt in _every_optimizer(0):
        opt.register_state_dict_pre_hook(_state_dict_pre_hook)
        assert opt.state_dict()["state"]["test"] == 1


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_post_hook(name):
    for opt in fresh(name, 1):
        opt.register_state_dict_post_hook(_state_dict_post_hook)
        assert opt.state_dict()["ran_state_dict_pre_hook"] is False


def test_state_dict_pre_post_hook():
    for opt in _every_optimizer(2):
        opt.register_state_dict_pre_hook(_state_dict_pre_hook)
        opt.register_state_dict_post_hook(_state_dict_post_hook)
        state_dict = opt.state_dict()
        assert "test" not in state_dict["state"]
        assert state_dict["ran_state_dict_pre_hook"] is True


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_pre_hook_and_prepend(name):
    for opt in fresh(name, 3):
        state_dict = opt.state_dict()
        opt.register_load_state_dict_pre_hook(_load_state_dict_pre_hook1)
        opt.load_state_dict(state_dict)
        assert opt.param_groups[0]["lr"] == 0.002
        opt.register_load_state_dict_pre_hook(_load_state_dict_pre_hook2, prepend=True)
        opt.load_state_dict(state_dict)
        # hook1 runs last and overrides hook2's 0.003
        assert opt.param_groups[0]["lr"] == 0.002


def test_load_state_dict_post_hook():
    for opt in _every_optimizer(4):
        opt.register_load_state_dict_post_hook(_load_state_dict_post_hook)
        opt.load_state_dict(opt.state_dict())
        assert not opt.state["ran_load_state_dict_pre_hook2"]  # a tensor for a tensor lr
        assert opt.state["ran_load_state_dict_post_hook"] is True


def test_load_state_dict_pre_post_hook():
    for opt in _every_optimizer(5):
        opt.register_load_state_dict_pre_hook(_load_state_dict_pre_hook2)
        opt.register_load_state_dict_post_hook(_load_state_dict_post_hook)
        opt.load_state_dict(opt.state_dict())
        assert opt.state["ran_load_state_dict_pre_hook2"]
        assert opt.state["ran_load_state_dict_post_hook"] is True


HOOKED = ["SGD", "Adam"]  # hooks wrap the one generic step, which LBFGS does not override


def _hooked_steps(pair, n):
    pair.run(n, lambda ps: [np.zeros_like(p) for p in ps])


def _count_hook_calls(name, register, start, turn):
    """torch's test: a hook adds 2 to a counter at each of two steps, then, removed, not."""
    with mode(name, 3):
        pair = Pair(name, make_params(), **pick(name, turn)[1])
        data = {"torch": start, "optx": start}

        def hook_for(side):
            def hook(opt, args, kwargs):
                data[side] += 2
            return hook

        handles = [getattr(pair.torch, register)(hook_for("torch")),
                   getattr(pair.optx, register)(hook_for("optx"))]
        _hooked_steps(pair, 2)
        assert data == {"torch": start + 4, "optx": start + 4}
        for h in handles:
            h.remove()
        _hooked_steps(pair, 1)
        assert data == {"torch": start + 4, "optx": start + 4}
        pair.check()


@pytest.mark.parametrize("name", HOOKED)
def test_step_post_hook(name):
    _count_hook_calls(name, "register_step_post_hook", 2, 7)


@pytest.mark.parametrize("name", HOOKED)
def test_step_pre_hook(name):
    _count_hook_calls(name, "register_step_pre_hook", 5, 8)


@pytest.mark.parametrize("name", HOOKED)
def test_step_all_hooks(name):
    def log(data, value):
        return lambda opt, args, kwargs: data.append(value)

    with mode(name, 3):
        pair = Pair(name, make_params(), **pick(name, 9)[1])
        sgd = Pair("SGD", make_params(1))
        data = {"torch": [], "optx": []}
        handles = []
        for side, module in (("torch", torch_optimizer_module), ("optx", optx_optimizer_module)):
            handles += [module.register_optimizer_step_pre_hook(log(data[side], 0)),
                        module.register_optimizer_step_post_hook(log(data[side], 5))]
            for opt in (getattr(pair, side), getattr(sgd, side)):
                handles += [opt.register_step_pre_hook(log(data[side], 1)),
                            opt.register_step_post_hook(log(data[side], 2))]
        try:
            _hooked_steps(pair, 1)
            assert data["torch"] == data["optx"] == [0, 1, 2, 5]
            _hooked_steps(sgd, 1)
            assert data["torch"] == data["optx"] == [0, 1, 2, 5] * 2
            _hooked_steps(pair, 1)
            assert data["torch"] == data["optx"] == [0, 1, 2, 5] * 3
        finally:
            for h in handles:
                h.remove()
        _hooked_steps(pair, 1)
        _hooked_steps(sgd, 1)
        assert data["torch"] == data["optx"] == [0, 1, 2, 5] * 3
        pair.check()
