"""Issue 30.1, 30.4, 30.5: preemption-safe steps.

An exception raised by a signal handler (Ctrl-C's KeyboardInterrupt, a cluster's SIGTERM handler
raising SystemExit, a timeout's custom exception) at any point of ``step``, ``load_state_dict``,
``add_param_group`` or a scheduler's ``step`` leaves the optimizer usable with the values from
before or after (never deleted buffers, never a half-loaded group) and never leaves a signal
blocked or a handler replaced. Two attacks:

* every line: ``sys.settrace`` raises at the n-th line event of optx's code, for every n until
  the call completes, where a signal handler could run (signals not blocked);
* random times: ``SIGALRM`` fires at random during a loop of steps, its handler raising.

Then an emergency checkpoint, loaded in a fresh process, continues torch's trajectory. Also:
gradients that are parameter arrays (``opt.step(opt.params)``), and step counts that saturate.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from registry import OPTIMIZERS

import optx
import optx.optim as O
from optx.optim import interrupts
from optx.optim.lr_scheduler import StepLR

OPTX_DIR = str(Path(optx.__file__).parent)
EXCEPTIONS = [KeyboardInterrupt, SystemExit, type("Preempted", (Exception,), {})]


class Injected:
    """``with Injected(n, exc):`` raises ``exc`` at the n-th line event of optx's code at which
    signals are not blocked; ``fired`` says whether it did."""

    def __init__(self, n: int, exc: type[BaseException]):
        self.n, self.exc, self.fired = n, exc, False

    def _trace(self, frame, event, arg):
        if not frame.f_code.co_filename.startswith(OPTX_DIR):
            return None
        return self._line

    def _line(self, frame, event, arg):
        if event == "line" and not self.fired and not interrupts.blocked():
            self.n -= 1
            if self.n < 0:
                self.fired = True
                raise self.exc("injected")
        return self._line

    def __enter__(self):
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)


def _grads(params):
    return jax.tree_util.tree_map(lambda p: jnp.sin(3.0 * p) + 0.1, params)


def _loss(params):
    return sum(jnp.sum(jnp.cos(p) ** 2 + 0.05 * p ** 2) for p in jax.tree_util.tree_leaves(params))


def _snapshot(opt):
    leaves = jax.tree_util.tree_leaves((opt.params, opt.opt_state))
    assert not any(x.is_deleted() for x in leaves if isinstance(x, jax.Array))
    return [np.asarray(x) for x in leaves]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


def _make(kind):
    if kind == "adam":
        return O.Adam({"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(2)}, lr=0.1)
    if kind == "adam-groups":
        return O.Adam([{"params": [jnp.linspace(-1.0, 1.0, 4)]},
                       {"params": [jnp.ones(3)], "lr": 0.01}], lr=0.1)
    return O.LBFGS([jnp.linspace(-1.0, 1.0, 5)], lr=0.5, max_iter=3)


def _step(opt, kind):
    return opt.step(_loss) if kind == "lbfgs" else opt.step(_grads(opt.params))


def _check_signals():
    assert not interrupts.blocked()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("kind", ["adam", "adam-groups", "lbfgs"])
@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: e.__name__)
def test_exception_at_every_line_of_step(kind, exc):
    opt = _make(kind)
    _step(opt, kind)  # compiled
    expected = _make(kind)
    _step(expected, kind)
    trials = n = 0
    while True:
        before = _snapshot(opt)
        with Injected(trials, exc) as inj, contextlib.suppress(exc):
            _step(opt, kind)
        _check_signals()
        after = _snapshot(opt)
        if _same(after, before):
            assert inj.fired
        else:  # the step completed: it must equal the uninterrupted one
            _step(expected, kind)
            assert _same(after, _snapshot(expected)), (kind, trials)
            n += 1
        if not inj.fired:
            break
        trials += 1
    assert trials > 20 and n >= 1
    _step(opt, kind)  # still usable
    _step(expected, kind)
    assert _same(_snapshot(opt), _snapshot(expected))


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: e.__name__)
def test_exception_at_every_line_of_load_state_dict_and_add_param_group(exc):
    opt = _make("adam-groups")
    _step(opt, "adam-groups")
    other = _make("adam-groups")
    for _ in range(2):
        _step(other, "adam-groups")
    a, b = opt.state_dict(), other.state_dict()
    b["param_groups"][1]["lr"] = 0.02
    # A load runs ~1600 lines of optx code (validation loops over every leaf): every 5th line
    # keeps the test at a few seconds; the step and scheduler tests take every line.
    trials = 0
    while True:  # loads a and b in turn, an exception at the n-th line of each load
        before = opt.state_dict()
        target = b if _same_sd(before, a) else a
        with Injected(5 * trials, exc) as inj, contextlib.suppress(exc):
            opt.load_state_dict(target)
        _check_signals()
        got = opt.state_dict()
        assert _same_sd(got, before) or _same_sd(got, target), trials
        assert len(opt.param_groups) == len(opt._slots) == 2
        if not inj.fired:
            break
        trials += 1
    _step(opt, "adam-groups")  # usable
    trials_add = 0
    while True:
        opt = _make("adam-groups")
        n = len(opt.param_groups)
        with Injected(trials_add, exc) as inj, contextlib.suppress(exc):
            opt.add_param_group({"params": [jnp.zeros(2)], "lr": 0.5})
        _check_signals()
        assert len(opt.param_groups) in (n, n + 1)
        assert len(opt._slots) == len(opt.param_groups)
        if not inj.fired:
            break
        trials_add += 1
    groups = [[jnp.ones(4)], [jnp.ones(3)]] + [[jnp.ones(2)]] * (len(opt.param_groups) - 2)
    opt.step(groups)  # usable
    assert trials > 20 and trials_add > 10


def _same_sd(a, b):
    if a["param_groups"] != b["param_groups"] or a["state"].keys() != b["state"].keys():
        return False
    return all(np.array_equal(np.asarray(a["state"][i][k]), np.asarray(v))
               for i in b["state"] for k, v in b["state"][i].items())


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: e.__name__)
def test_exception_at_every_line_of_a_scheduler_step(exc):
    trials = 0
    while True:
        opt = O.SGD([{"params": [jnp.ones(2)]}, {"params": [jnp.ones(1)], "lr": 0.5}], lr=0.1)
        sched = StepLR(opt, step_size=1, gamma=0.5)
        before = ([g["lr"] for g in opt.param_groups], sched.last_epoch, sched._step_count)
        with Injected(trials, exc) as inj, contextlib.suppress(exc):
            sched.step()
        _check_signals()
        now = ([g["lr"] for g in opt.param_groups], sched.last_epoch, sched._step_count)
        assert now in (before, ([0.05, 0.25], 1, 2)), (trials, now)
        if not inj.fired:
            break
        trials += 1
    assert trials >= 3  # the lines before and after the deferred commit


def _handler_raising(exc):
    def handler(signum, frame):
        raise exc("preempted")

    return handler


@pytest.mark.parametrize("kind", ["adam", "lbfgs"])
def test_signals_at_random_times(kind):
    """SIGALRM at random times during steps; its handler raises. 150 trials per exception,
    each alarm drawn up to 1.2 times the duration of a step a third optimizer has just taken
    (so that, on a loaded machine too, alarms land all along a step, and some after it)."""
    rng = random.Random(0)
    opt, expected, probe = _make(kind), _make(kind), _make(kind)
    for o in (opt, expected, probe):
        _step(o, kind)
    previous = signal.getsignal(signal.SIGALRM)
    completed = interrupted = trials = 0
    try:
        for exc in EXCEPTIONS:
            signal.signal(signal.SIGALRM, _handler_raising(exc))
            for _ in range(150):
                trials += 1
                before = _snapshot(opt)
                # The gradients outside the alarm's window: jax.tree_util.tree_map turns an
                # Exception raised inside it into an UnboundLocalError (its own except clause).
                arg = _loss if kind == "lbfgs" else _grads(opt.params)
                t0 = time.perf_counter()
                probe.step(arg)
                jax.block_until_ready(probe.params)
                window = 1.2 * (time.perf_counter() - t0)
                try:
                    signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-5, window))
                    opt.step(arg)
                    jax.block_until_ready(opt.params)
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a pending alarm runs here
                except exc:
                    interrupted += 1
                    signal.setitimer(signal.ITIMER_REAL, 0)
                _check_signals()
                after = _snapshot(opt)
                if not _same(after, before):
                    _step(expected, kind)
                    assert _same(after, _snapshot(expected))
                    completed += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    print(f"{kind}: {trials} trials, {interrupted} interrupted, {completed} completed")
    assert interrupted > trials // 4 and completed > trials // 20


WORKER = textwrap.dedent("""
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import optx.optim as O
    sd = O.load(sys.argv[1])
    opt = O.Adam({"w": jnp.asarray(sd["params"]["w"])}, lr=0.1)
    opt.load_state_dict(sd["optimizer"])
    for _ in range(3):
        opt.step({"w": jnp.sin(3.0 * opt.params["w"]) + 0.1})
    np.save(sys.argv[2], np.asarray(opt.params["w"]))
""")


def test_emergency_checkpoint_after_preemption_resumes_torchs_trajectory(tmp_path):
    w0 = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    opt = O.Adam({"w": jnp.asarray(w0)}, lr=0.1)
    opt.step({"w": jnp.sin(3.0 * opt.params["w"]) + 0.1})
    previous = signal.getsignal(signal.SIGALRM)
    signal.signal(signal.SIGALRM, _handler_raising(SystemExit))
    steps = 1
    try:
        with pytest.raises(SystemExit):
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            while True:
                opt.step({"w": jnp.sin(3.0 * opt.params["w"]) + 0.1})
                steps += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    steps = int(opt.state[opt.params["w"]]["step"])  # the step in flight completed, or not
    O.save({"params": {"w": np.asarray(opt.params["w"])}, "optimizer": opt.state_dict()},
           tmp_path / "emergency.optx")
    out = tmp_path / "w.npy"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", WORKER, str(tmp_path / "emergency.optx"), str(out)],
                   check=True, env=env, timeout=120)
    tw = torch.tensor(w0, requires_grad=True)
    topt = torch.optim.Adam([tw], lr=0.1)
    for _ in range(steps + 3):
        tw.grad = torch.sin(3.0 * tw.detach()) + 0.1
        topt.step()
    np.testing.assert_allclose(np.load(out), tw.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("how", ["params", "same-leaf-twice", "state"])
def test_gradients_that_are_donated_arrays_work_as_torch(how):
    w0 = np.array([1.0, -2.0, 3.0])
    opt = O.SGD([jnp.asarray(w0), jnp.asarray(w0 * 2)], lr=0.1, momentum=0.9)
    tp = [torch.tensor(w0, requires_grad=True), torch.tensor(w0 * 2, requires_grad=True)]
    topt = torch.optim.SGD(tp, lr=0.1, momentum=0.9)
    for _ in range(3):
        if how == "params":  # the gradient of 1/2 |p|^2
            grads = opt.params
        elif how == "same-leaf-twice":
            grads = [opt.params[0], opt.params[0]]
        else:
            grads = [opt.params[0], opt.opt_state.slots["momentum_buffer"][1]]
        for p, g in zip(tp, grads):
            p.grad = torch.tensor(np.asarray(g))
        opt.step(grads)
        topt.step()
    for a, b in zip(opt.params, tp):
        np.testing.assert_array_equal(np.asarray(a), b.detach().numpy())


@pytest.mark.parametrize("info", [pytest.param(i, id=i.name) for i in OPTIMIZERS])
def test_step_count_saturates_instead_of_wrapping(info):
    """A state whose count is 2**31 - 2 takes three more steps: the count stops at 2**31 - 1
    and the parameters stay finite (a wrapped count is negative: NaN bias corrections)."""
    tx = info.fn(**(info.variants or {}))
    shape = (3, 2) if info.matrices_only else (4,)
    params = [jnp.linspace(0.5, 1.5, int(np.prod(shape))).reshape(shape)]
    state = tx.init(params)
    state = state._replace(count=jnp.asarray(2**31 - 2, state.count.dtype))
    extra = {}
    if info.needs_closure:
        extra = {"value": _loss(params), "value_fn": _loss}
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, **extra))
    for _ in range(3):
        grads = [jnp.cos(p) + 0.1 for p in params]
        updates, state = update(grads, state, params)
        params = optx.apply_updates(params, updates)
    assert int(state.count) == 2**31 - 1
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in params)
    # Per-parameter step counts saturate the same way.
    if isinstance(state, optx.OptimizerState):
        _, s2 = tx.update([None], state, params)
        s2 = s2._replace(steps=jnp.full_like(s2.steps, 2**31 - 2))
        for _ in range(2):
            _, s2 = tx.update([jnp.ones(shape)], s2, params)
        assert int(s2.steps[0]) == 2**31 - 1
