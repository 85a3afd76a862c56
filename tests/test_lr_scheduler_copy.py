"""Copies of a scheduler (``copy.deepcopy``, pickle) step on exactly as the original, as torch's.

A scheduler holds its optimizer. The first tests copy the scheduler's own state alone: the
optimizer is mapped to a second optimizer of the same state (deepcopy's memo, pickle's
persistent ids), so they exercise every scheduler attribute, members of composites included.
The last ones copy the whole object, optimizer included, as torch users do; they need the
optimizer's own deepcopy and pickle.
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.optim.lr_scheduler as TL
from scheduler_cases import CASES, groups, optimizers
from torch.optim import swa_utils as TS

from optx.optim import lr_scheduler as L
from optx.optim import swa_utils as OS


def _steps(opt, sched, n):
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(n):
            opt._opt_called = True
            sched.step()
            out.append((sched.get_last_lr(), groups(opt)))
    return out


def _twin(cls, opt):
    """A second optimizer with ``opt``'s groups (lrs and the keys schedulers add)."""
    twin, _ = optimizers(cls)
    twin.load_state_dict(opt.state_dict())
    return twin


def _pickle_with(obj, opt, replacement):
    """pickle round trip of ``obj`` with ``opt`` left out and ``replacement`` put in its place."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            return "optimizer" if o is opt else None

    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid):
            return replacement

    buffer = io.BytesIO()
    Pickler(buffer).dump(obj)
    buffer.seek(0)
    return Unpickler(buffer).load()


COPIES = {
    "deepcopy": lambda sched, opt, twin: copy.deepcopy(sched, {id(opt): twin}),
    "pickle": lambda sched, opt, twin: _pickle_with(sched, opt, twin),
}


def _copy_then_compare(name, how):
    cls, build = CASES[name]
    opt, t_opt = optimizers(cls)
    sched, t_sched = build(L, OS, opt), build(TL, TS, t_opt)
    _steps(opt, sched, 5)
    _steps(t_opt, t_sched, 5)
    twin = _twin(cls, opt)
    copied = COPIES[how](sched, opt, twin)
    assert copied.optimizer is twin
    for member in getattr(copied, "_schedulers", []):
        assert member.optimizer is twin and member not in sched._schedulers
    want = _steps(opt, sched, 12)
    assert _steps(twin, copied, 12) == want == _steps(t_opt, t_sched, 12)


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("name", list(CASES))
def test_copied_scheduler_steps_on_as_the_original(name, how):
    _copy_then_compare(name, how)


@pytest.mark.parametrize("how", list(COPIES))
def test_reduce_lr_on_plateau_copies(how):
    opt, _ = optimizers()
    sched = L.ReduceLROnPlateau(opt, factor=0.5, patience=1, min_lr=[1e-3, 0.0])
    metrics = [1.0, 2.0, 3.0, 4.0, 0.5, 5.0, 6.0, 7.0, 8.0, 0.1, 9.0]
    for m in metrics[:3]:
        sched.step(m)
    twin = _twin("SGD", opt)
    copied = COPIES[how](sched, opt, twin)
    for m in metrics[3:]:
        sched.step(m)
        copied.step(m)
        assert (copied.best, copied.num_bad_epochs, copied.cooldown_counter,
                copied.get_last_lr(), groups(twin)) == (
            sched.best, sched.num_bad_epochs, sched.cooldown_counter, sched.get_last_lr(),
            groups(opt))


def test_lambda_lr_with_a_lambda_does_not_pickle_as_in_torch():
    """torch cannot pickle a LambdaLR holding a lambda either; a module-level function works
    (the LambdaLR case above)."""
    errors = []
    for M, opt in zip((L, TL), optimizers()):
        sched = M.LambdaLR(opt, lambda e: 0.9**e)
        with pytest.raises((pickle.PicklingError, AttributeError)) as info:
            _pickle_with(sched, opt, opt)
        errors.append(type(info.value))
        copy.deepcopy(sched, {id(opt): opt})  # deepcopy shares the function: fine in both
    assert errors[0] is errors[1]


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("name", ["StepLR", "SequentialLR", "OneCycleLR"])
def test_whole_scheduler_with_its_optimizer_copies(name, how):
    """``copy.deepcopy(sched)`` / ``pickle.loads(pickle.dumps(sched))``, as in torch: the copy
    holds its own copy of the optimizer and steps on as the original."""
    cls, build = CASES[name]
    opt, _ = optimizers(cls)
    sched = build(L, OS, opt)
    _steps(opt, sched, 5)
    copied = copy.deepcopy(sched) if how == "deepcopy" else pickle.loads(pickle.dumps(sched))
    assert copied.optimizer is not opt
    want = _steps(opt, sched, 12)
    assert _steps(copied.optimizer, copied, 12) == want
    # The step the scheduler wrapped (torch's order warning) steps the copy, not the original.
    before = [np.asarray(p) for p in jax.tree_util.tree_leaves(opt.params)]
    copied.optimizer.step(jax.tree_util.tree_map(jnp.ones_like, copied.optimizer.params))
    for a, b in zip(before, jax.tree_util.tree_leaves(opt.params)):
        np.testing.assert_array_equal(a, b)
    assert any(np.any(np.asarray(p) != a) for p, a in
               zip(jax.tree_util.tree_leaves(copied.optimizer.params), before))


def test_scheduler_warnings_point_at_the_callers_line():
    import warnings

    import jax.numpy as jnp

    import optx.optim as O
    from optx.optim.lr_scheduler import ReduceLROnPlateau, StepLR

    opt = O.SGD([jnp.ones(2)], lr=0.1)
    sched, plateau = StepLR(opt, 1), ReduceLROnPlateau(opt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched.step()  # before opt.step(): torch's order warning
        sched.step(3)  # the deprecated epoch argument
        plateau.step(1.0, 3)
    assert [w.filename for w in caught] == [__file__] * 3
