"""Issue 33.1: real signals at every line of a commit, many trials in one process.

The injector trusts nothing of optx: it counts line events of optx's code itself
(``sys.settrace``) and, at the k-th, sends a real signal (``pthread_kill`` to the main thread, or
``os.kill`` from another thread, which the kernel may hand to any thread). CPython then runs the
signal's Python handler in the main thread, at that line, whatever handler is installed there:
the user's (raising ``KeyboardInterrupt`` or ``SystemExit``) or one optx installed to defer it.
Trial after trial in the same process and on the same optimizer, so that whatever one trial
leaves behind (a handler, a counter) shows in the next. After each trial:

* the optimizer's params and state are readable and bitwise the ones from before the call or the
  ones an uninterrupted call gives (all groups old or all new for ``load_state_dict``);
* the signal was not lost (its handler ran before the call returned) and the handlers are the
  user's again;
* the next call works (it is the next trial).

Also a training loop under a SIGALRM timer whose handler raises ``SystemExit``.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import optx
import optx.optim as O

OPTX_DIR = str(Path(optx.__file__).parent)


class Alarm(SystemExit):
    """What the SIGALRM handler raises: a preemption's ``SystemExit``."""


def _alarm(signum, frame):
    raise Alarm("preempted")


class SignalAtLine:
    """``with SignalAtLine(k, sig, from_thread):`` sends ``sig`` at the k-th line event of optx's
    code (counted here); ``fired`` says whether it did (the call had k lines or more)."""

    def __init__(self, k: int, sig: int, from_thread: bool):
        self.k, self.sig, self.from_thread, self.fired = k, sig, from_thread, False

    def _trace(self, frame, event, arg):
        if self.fired or not frame.f_code.co_filename.startswith(OPTX_DIR):
            return None
        return self._line

    def _line(self, frame, event, arg):
        if self.fired:
            return None
        if event == "line":
            self.k -= 1
            if self.k < 0:
                self.fired = True
                if self.from_thread:
                    t = threading.Thread(target=os.kill, args=(os.getpid(), self.sig))
                    t.start()
                    t.join()
                else:
                    signal.pthread_kill(threading.main_thread().ident, self.sig)
                time.sleep(0)  # the handler runs by now, at this line of optx's code
        return self._line

    def __enter__(self):
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)


class Handlers:
    """SIGINT: Python's default handler (KeyboardInterrupt); SIGALRM: :func:`_alarm`."""

    def __enter__(self):
        self.previous = (signal.signal(signal.SIGINT, signal.default_int_handler),
                         signal.signal(signal.SIGALRM, _alarm))
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGINT, self.previous[0])
        signal.signal(signal.SIGALRM, self.previous[1])

    @staticmethod
    def intact() -> bool:
        return (signal.getsignal(signal.SIGINT) is signal.default_int_handler
                and signal.getsignal(signal.SIGALRM) is _alarm)


def _leaves(opt):
    """params and state as numpy arrays; raises on a deleted buffer."""
    return [np.asarray(x) for x in jax.tree_util.tree_leaves((opt.params, opt.opt_state))]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


def _grads(params):
    # Not jax.tree_util.tree_map: it turns an exception raised inside it (the alarm's) into
    # another one.
    return {k: jnp.sin(3.0 * p) + 0.1 for k, p in params.items()}


def _adam():
    return O.Adam({"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(2)}, lr=0.1)


def _interrupted(call, k, sig, from_thread):
    """Runs ``call`` with ``sig`` sent at its k-th optx line: (fired, raised, error) where
    error is an exception other than the handler's."""
    raised = error = None
    with SignalAtLine(k, sig, from_thread) as inj:
        try:
            call()
            for _ in range(100):  # bytecodes at which a handler still pending would run
                pass
        except (KeyboardInterrupt, Alarm) as e:
            raised = e
        except Exception as e:  # noqa: BLE001 - a loss, reported below
            error = e
    return inj.fired, raised, error


def _attack(make_call, check, lines):
    """A trial for each k of ``lines`` until a call runs to its end before its k-th line;
    SIGINT and SIGALRM, from this thread and another, in turn. Returns (trials, losses)."""
    losses: list[str] = []
    trials = 0
    with Handlers():
        for k in lines:
            sig = (signal.SIGINT, signal.SIGALRM)[trials % 2]
            call, before = make_call()
            fired, raised, error = _interrupted(call, k, sig, from_thread=trials % 4 >= 2)
            trials += 1
            if error is not None:
                losses.append(f"line {k}: {type(error).__name__}: {error}")
            if fired and raised is None:
                losses.append(f"line {k}: the signal was lost")
            if not Handlers.intact():
                losses.append(f"line {k}: handlers not restored: "
                              f"{signal.getsignal(signal.SIGINT)!r}")
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGALRM, _alarm)
            problem = check(before)
            if problem:
                losses.append(f"line {k}: {problem}")
            if not fired:
                break
    return trials, losses


def test_real_signal_at_every_line_of_a_warm_adam_step():
    opt, expected = _adam(), _adam()
    for o in (opt, expected):
        o.step(_grads(o.params))  # warm: compiled
    state = {"expected": _leaves(expected)}

    def make_call():
        before = _leaves(opt)
        g = _grads(opt.params)
        return (lambda: opt.step(g)), before

    def check(before):
        try:
            after = _leaves(opt)
        except RuntimeError as e:  # 'Array has been deleted'
            return f"lost: {e}"
        if _same(after, before):
            return None
        expected.step(_grads(expected.params))
        state["expected"] = _leaves(expected)
        return None if _same(after, state["expected"]) else "neither the old nor the new values"

    trials, losses = _attack(make_call, check, range(100_000))
    print(f"adam step: {trials} trials, {len(losses)} losses")
    assert trials > 50  # every line of the step, and the first trial past its end
    assert not losses, (len(losses), trials, losses[:5])
    opt.step(_grads(opt.params))  # still steps, and on the uninterrupted trajectory
    expected.step(_grads(expected.params))
    assert _same(_leaves(opt), _leaves(expected))


def _sd_leaves(sd):
    groups = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
    return groups, {i: {k: np.asarray(v) for k, v in s.items()} for i, s in sd["state"].items()}


def _sd_equal(a, b):
    ga, sa = a
    gb, sb = b
    return ga == gb and sa.keys() == sb.keys() and all(
        sa[i].keys() == sb[i].keys() and all(np.array_equal(sa[i][k], sb[i][k]) for k in sa[i])
        for i in sa)


def test_real_signal_at_every_line_of_a_two_group_load_state_dict():
    def make():
        return O.Adam([{"params": [jnp.linspace(-1.0, 1.0, 4)]},
                       {"params": [jnp.ones(3)], "lr": 0.01}], lr=0.1)

    opt, other = make(), make()
    opt.step([[jnp.ones(4)], [jnp.ones(3)]])
    for _ in range(2):
        other.step([[jnp.full(4, 0.5)], [jnp.full(3, -0.5)]])
    a, b = opt.state_dict(), other.state_dict()
    b["param_groups"][0]["lr"] = 0.3
    b["param_groups"][1]["lr"] = 0.02  # each group differs between a and b
    views = {"a": _sd_leaves(a), "b": _sd_leaves(b)}

    def make_call():
        now = _sd_leaves(opt.state_dict())
        target = b if _sd_equal(now, views["a"]) else a
        return (lambda: opt.load_state_dict(target)), now

    def check(before):
        try:
            now = _sd_leaves(opt.state_dict())
            _leaves(opt)  # readable
        except Exception as e:  # noqa: BLE001
            return f"broken: {type(e).__name__}: {e}"
        if _sd_equal(now, views["a"]) or _sd_equal(now, views["b"]):
            return None
        return "half-loaded"

    # A load runs ~2000 lines of optx code (validation loops over every leaf), counted here
    # first: every line of its last 15% (where it installs what it validated) and every 15th
    # line before keep the test at ten seconds.
    counter = SignalAtLine(10**9, signal.SIGINT, False)
    call, _ = make_call()
    with counter:
        call()
    total = 10**9 - counter.k
    lines = [*range(0, total * 85 // 100, 15), *range(total * 85 // 100, total + 1)]
    trials, losses = _attack(make_call, check, lines)
    print(f"load_state_dict: {trials} trials, {len(losses)} losses")
    assert trials > 300
    assert not losses, (len(losses), trials, losses[:5])
    opt.step([[jnp.zeros(4)], [jnp.zeros(3)]])  # usable
    _leaves(opt)


def test_sigalrm_raising_systemexit_in_a_training_loop():
    """A timer fires at random times in a training loop; its handler raises SystemExit (as a
    cluster's preemption handler does); the loop catches it, checks, and goes on."""
    rng = random.Random(0)
    opt, expected = _adam(), _adam()
    for o in (opt, expected):
        o.step(_grads(o.params))
    t0 = time.perf_counter()
    for _ in range(5):
        opt.step(_grads(opt.params))
        expected.step(_grads(expected.params))
    jax.block_until_ready(opt.params)
    window = (time.perf_counter() - t0) / 5 * 3  # three steps' time
    alarms = losses = 0
    with Handlers():
        while alarms < 60:
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-5, window))
                while True:  # train until preempted
                    opt.step(_grads(opt.params))
            except Alarm:
                alarms += 1
            try:
                after = _leaves(opt)
            except RuntimeError:  # 'Array has been deleted'
                losses += 1
                break
            while int(expected.opt_state.count) < int(opt.opt_state.count):
                expected.step(_grads(expected.params))
            losses += not _same(after, _leaves(expected))
            losses += not Handlers.intact()
    print(f"training loop: {alarms} alarms, {losses} losses")
    assert losses == 0 and alarms == 60
    opt.step(_grads(opt.params))
    expected.step(_grads(expected.params))
    assert _same(_leaves(opt), _leaves(expected))


def test_a_commit_cut_short_leaves_nothing_that_outlives_it():
    """``__enter__`` run and ``__exit__`` never (what two exceptions in a row inside the block's
    own code would leave): once the frame that entered is gone, each signal runs its own
    handler, the next commit still defers signals to its end and puts the user's handlers
    back."""
    from optx.optim.interrupts import signals_deferred

    def send(sig):
        signal.pthread_kill(threading.main_thread().ident, sig)

    def cut_short():
        signals_deferred().__enter__()

    with Handlers():
        for sig, exc in ((signal.SIGINT, KeyboardInterrupt), (signal.SIGALRM, Alarm)):
            cut_short()
            try:
                send(sig)
                for _ in range(10):
                    pass
                raise AssertionError(f"signal {sig} ran no handler")
            except exc:
                pass
            cut_short()
            inside = False
            try:
                with signals_deferred():
                    send(sig)
                    for _ in range(10):
                        pass
                    inside = True
                raise AssertionError(f"signal {sig} lost in a commit")
            except exc:
                assert inside
            assert Handlers.intact()
