"""Custom schedulers written as torch's docs write them: subclass ``LRScheduler`` (or the old
``_LRScheduler``) and override ``get_lr()`` (optionally ``_get_closed_form_lr()``). The same
class body runs on torch's base and on optx's; every observable matches."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import pytest
import torch
import torch.optim.lr_scheduler as TL

import optx.optim as O
from optx.optim import lr_scheduler as L


def define(Base):
    """The user's code, written once; only the base class differs."""

    class Warmup(Base):
        """Absolute: the base lr ramped up over ``warmup`` epochs (reads base_lrs)."""

        def __init__(self, optimizer, warmup, last_epoch=-1):
            self.warmup = warmup
            super().__init__(optimizer, last_epoch)

        def get_lr(self):
            return [base_lr * min(1.0, (self.last_epoch + 1) / self.warmup)
                    for base_lr in self.base_lrs]

    class EveryOther(Base):
        """Chainable: the current group lr times 0.9 on odd epochs (reads param_groups),
        with a closed form for step(epoch)."""

        def __init__(self, optimizer, last_epoch=-1):
            super().__init__(optimizer, last_epoch)

        def get_lr(self):
            if self.last_epoch == 0 or self.last_epoch % 2 == 0:
                return [group["lr"] for group in self.optimizer.param_groups]
            return [group["lr"] * 0.9 for group in self.optimizer.param_groups]

        def _get_closed_form_lr(self):
            return [base_lr * 0.9 ** ((self.last_epoch + 1) // 2) for base_lr in self.base_lrs]

    return Warmup, EveryOther


def _optimizers():
    groups_o = [{"params": jnp.zeros(2)}, {"params": jnp.zeros(1), "lr": 0.03}]
    groups_t = [{"params": [torch.zeros(2)]}, {"params": [torch.zeros(1)], "lr": 0.03}]
    return O.SGD(groups_o, lr=0.1), torch.optim.SGD(groups_t, lr=0.1)


def _same(o_opt, t_opt, o_s, t_s):
    assert o_s.get_last_lr() == t_s.get_last_lr()
    assert [g["lr"] for g in o_opt.param_groups] == [g["lr"] for g in t_opt.param_groups]
    assert getattr(o_s, "last_epoch", None) == getattr(t_s, "last_epoch", None)


def _step_both(o_opt, t_opt, o_s, t_s, *args):
    o_opt._opt_called = True
    t_opt._opt_called = True
    with warnings.catch_warnings(record=True) as o_w:
        warnings.simplefilter("always")
        o_s.step(*args)
    with warnings.catch_warnings(record=True) as t_w:
        warnings.simplefilter("always")
        t_s.step(*args)
    assert [str(w.message) for w in o_w] == [str(w.message) for w in t_w]
    _same(o_opt, t_opt, o_s, t_s)


@pytest.mark.parametrize("base", ["LRScheduler", "_LRScheduler"])
@pytest.mark.parametrize("which", [0, 1], ids=["Warmup", "EveryOther"])
def test_subclass_steps_as_torch(base, which):
    o_cls, t_cls = define(getattr(L, base))[which], define(getattr(TL, base))[which]
    o_opt, t_opt = _optimizers()
    args = (4,) if which == 0 else ()
    o_s, t_s = o_cls(o_opt, *args), t_cls(t_opt, *args)
    _same(o_opt, t_opt, o_s, t_s)
    for _ in range(6):
        _step_both(o_opt, t_opt, o_s, t_s)
    for epoch in (9, 3, 4):  # step(epoch): the deprecation warning, closed form if any
        _step_both(o_opt, t_opt, o_s, t_s, epoch)
    for _ in range(3):
        _step_both(o_opt, t_opt, o_s, t_s)


def test_subclass_order_warning_and_get_lr_warning_as_torch():
    o_cls, t_cls = define(L.LRScheduler)[0], define(TL.LRScheduler)[0]
    o_opt, t_opt = _optimizers()
    o_s, t_s = o_cls(o_opt, 4), t_cls(t_opt, 4)
    # step() before optimizer.step(): torch's warning, on both.
    with warnings.catch_warnings(record=True) as o_w:
        warnings.simplefilter("always")
        o_s.step()
        o_s.get_lr()  # outside step: "please use get_last_lr()" (only from torch's built-ins)
    with warnings.catch_warnings(record=True) as t_w:
        warnings.simplefilter("always")
        t_s.step()
        t_s.get_lr()
    assert [str(w.message) for w in o_w] == [str(w.message) for w in t_w]
    assert len(o_w) == 1


def test_subclass_state_dict_round_trip():
    o_cls, t_cls = define(L.LRScheduler)[1], define(TL.LRScheduler)[1]
    o_opt, t_opt = _optimizers()
    o_s, t_s = o_cls(o_opt), t_cls(t_opt)
    for _ in range(5):
        _step_both(o_opt, t_opt, o_s, t_s)
    o_sd, t_sd = o_s.state_dict(), t_s.state_dict()
    assert o_sd == t_sd
    # Resume into a fresh optimizer and scheduler, on each side, and continue.
    o_opt2, t_opt2 = _optimizers()
    o_opt2.load_state_dict(o_opt.state_dict())
    t_opt2.load_state_dict(t_opt.state_dict())
    o_s2, t_s2 = o_cls(o_opt2), t_cls(t_opt2)
    o_s2.load_state_dict(o_sd)
    t_s2.load_state_dict(t_sd)
    _same(o_opt2, t_opt2, o_s2, t_s2)
    for _ in range(5):
        _step_both(o_opt2, t_opt2, o_s2, t_s2)


@pytest.mark.parametrize("composite", ["SequentialLR", "ChainedScheduler"])
def test_subclass_inside_composites(composite):
    o_w, o_e = define(L.LRScheduler)
    t_w, t_e = define(TL.LRScheduler)
    o_opt, t_opt = _optimizers()

    def build(M, opt, Warmup, EveryOther):
        members = [Warmup(opt, 3), EveryOther(opt), M.ExponentialLR(opt, 0.95)]
        if composite == "SequentialLR":
            return M.SequentialLR(opt, members, milestones=[3, 8])
        return M.ChainedScheduler(members)

    o_s, t_s = build(L, o_opt, o_w, o_e), build(TL, t_opt, t_w, t_e)
    _same(o_opt, t_opt, o_s, t_s)
    for _ in range(15):
        _step_both(o_opt, t_opt, o_s, t_s)
    assert o_s.state_dict() == t_s.state_dict()


def test_base_get_lr_is_not_implemented_as_torch():
    o_opt, t_opt = _optimizers()
    with pytest.raises(NotImplementedError):
        TL.LRScheduler(t_opt)
    with pytest.raises(NotImplementedError):
        L.LRScheduler(o_opt)
