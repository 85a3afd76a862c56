"""Interrupt safety of optx.optim (issue 18.5): a KeyboardInterrupt or exception at any point of
``step()`` leaves ``opt.params`` and ``opt.opt_state`` readable and consistent, with the values from
before the step or after it (never donated, deleted buffers), and the next step continues the
uninterrupted trajectory exactly."""

from __future__ import annotations

import functools
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optx.optim as O
import optx.optim.groups as groups_module
import optx.optim.step as step_module

P0 = {"w": np.array([[0.5, -1.0], [0.25, 2.0]]), "b": np.array([0.1, -0.3])}


def _loss(params):
    return jnp.sum(jnp.sin(params["w"]) ** 2) + jnp.sum((params["b"] - 1.0) ** 2)


def _make():
    return O.Adam({k: jnp.asarray(v) for k, v in P0.items()}, lr=0.1)


@functools.lru_cache(maxsize=1)
def _references():
    opt, out = _make(), []
    for _ in range(4):
        out.append(jax.tree_util.tree_map(np.asarray, opt.params))
        opt.step(_loss)
    return out


def _reference(n):
    return _references()[n]


def _assert_at(opt, n):
    """params and state are readable and equal to the uninterrupted run after n steps, and the
    next step continues it."""
    for leaf in jax.tree_util.tree_leaves((opt.params, opt.opt_state)):
        np.asarray(leaf)  # raises on a deleted buffer
    assert int(opt.opt_state.count) == n
    jax.tree_util.tree_map(np.testing.assert_array_equal,
                           jax.tree_util.tree_map(np.asarray, opt.params), _reference(n))
    opt.step(_loss)
    jax.tree_util.tree_map(np.testing.assert_array_equal,
                           jax.tree_util.tree_map(np.asarray, opt.params), _reference(n + 1))


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupt_in_closure(exc):
    opt = _make()
    opt.step(_loss)
    calls = []

    def closure(params):
        calls.append(1)
        raise exc("interrupted in the closure")

    with pytest.raises(exc):
        opt.step(closure)
    assert calls
    _assert_at(opt, 1)


def test_interrupt_while_tracing_the_update(monkeypatch):
    opt = _make()
    opt.step(_loss)
    original = step_module.apply_updates

    def interrupted(*args):
        raise KeyboardInterrupt

    opt.param_groups[0]["amsgrad"] = True  # a rebuild, so the step is traced again
    monkeypatch.setattr(step_module, "apply_updates", interrupted)
    with pytest.raises(KeyboardInterrupt):
        opt.step(_loss)
    monkeypatch.setattr(step_module, "apply_updates", original)
    opt.param_groups[0]["amsgrad"] = False
    _assert_at(opt, 1)


def test_ctrl_c_right_after_the_jitted_call_returns(monkeypatch):
    """The step donates the old buffers; a Ctrl-C arriving as the jitted call returns is held
    back until the new ones are stored, then raised."""
    opt = _make()
    opt.step(_loss)
    real = opt._compiled
    fired = []

    def compiled(value_fn):
        fn = real(value_fn)

        def run(*args):
            out = fn(*args)
            fired.append(1)
            signal.raise_signal(signal.SIGINT)  # Python raises it at the next bytecode
            return out

        return run

    monkeypatch.setattr(opt, "_compiled", compiled)
    with pytest.raises(KeyboardInterrupt):
        opt.step(_loss)
    assert fired
    monkeypatch.undo()
    _assert_at(opt, 2)  # the interrupted step completed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_the_update_goes_to_a_custom_handler(monkeypatch):
    opt = _make()
    got = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        real = opt._compiled

        def compiled(value_fn):
            fn = real(value_fn)
            return lambda *args: (signal.raise_signal(signal.SIGINT), fn(*args))[1]

        monkeypatch.setattr(opt, "_compiled", compiled)
        opt.step(_loss)  # the handler ran after the step, which completed
        assert got == [signal.SIGINT]
        monkeypatch.undo()
        _assert_at(opt, 1)
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("where", ["pre", "post"])
def test_interrupt_in_a_hook(where):
    opt = _make()
    opt.step(_loss)

    def hook(*args):
        raise KeyboardInterrupt

    handle = (opt.register_step_pre_hook if where == "pre" else opt.register_step_post_hook)(hook)
    with pytest.raises(KeyboardInterrupt):
        opt.step(_loss)
    handle.remove()
    _assert_at(opt, 1 if where == "pre" else 2)


def test_interrupt_while_preparing_hyperparameters(monkeypatch):
    opt = _make()
    opt.step(_loss)

    def interrupted(state, args):
        raise KeyboardInterrupt

    monkeypatch.setattr(groups_module, "with_hyperparams", interrupted)
    opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"] * 1.0  # an edit (a new object)
    with pytest.raises(KeyboardInterrupt):
        opt.step(_loss)
    monkeypatch.undo()
    _assert_at(opt, 1)


def test_lbfgs_interrupt_in_closure_during_line_search_tracing():
    """LBFGS traces the closure again inside its jitted step (its inner iterations)."""
    opt = O.LBFGS([jnp.asarray([1.5, -0.5])], lr=1, max_iter=2)
    traces = []

    def closure(params):
        traces.append(1)
        if len(traces) == 2:  # the second trace: inside the update
            raise KeyboardInterrupt
        return jnp.sum((params[0] - 1.0) ** 4)

    with pytest.raises(KeyboardInterrupt):
        opt.step(closure)
    np.testing.assert_array_equal(np.asarray(opt.params[0]), [1.5, -0.5])
    assert int(opt.opt_state.count) == 0
    ref = O.LBFGS([jnp.asarray([1.5, -0.5])], lr=1, max_iter=2)

    def loss(params):
        return jnp.sum((params[0] - 1.0) ** 4)

    opt.step(loss)
    ref.step(loss)
    np.testing.assert_array_equal(np.asarray(opt.params[0]), np.asarray(ref.params[0]))


def test_a_signal_another_thread_receives_inside_a_commit_runs_its_handler_after_it():
    # A signal is delivered to whichever thread does not block it (JAX's runtime has several),
    # and CPython then runs the Python handler in the main thread, whatever the main thread's
    # mask: blocking signals there does not defer handlers. Here another thread receives one
    # (raise_signal sends it to the calling thread) while the main thread is inside a commit.
    import threading
    import time

    from optx.optim.interrupts import signals_deferred

    class Fired(Exception):
        pass

    def handler(signum, frame):
        raise Fired

    previous = signal.signal(signal.SIGALRM, handler)
    inside_done = False
    try:
        with pytest.raises(Fired):
            with signals_deferred():
                other = threading.Thread(target=signal.raise_signal, args=(signal.SIGALRM,))
                other.start()
                other.join()
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < 0.05:  # bytecodes at which a handler could run
                    pass
                inside_done = True
            for _ in range(1000):  # the re-raised signal's handler runs here at the latest
                pass
        assert inside_done
        assert signal.getsignal(signal.SIGALRM) is handler
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_the_first_compile_runs_before_the_commit():
    # A long first compile is not held back by the commit: a Ctrl-C during it lands at once.
    # The LBFGS update traces the closure inside it: at trace time, no handler is held back.
    from optx.optim import interrupts

    seen = []

    def loss(params):
        seen.append(interrupts.blocked())
        return _loss({"w": params[0], "b": params[1]})

    opt = O.LBFGS([jnp.asarray(P0["w"]), jnp.asarray(P0["b"])], max_iter=2)
    opt.step(loss)
    opt.step(loss)
    assert seen and not any(seen)
