"""Commits that no signal handler can cut in half.

``opt.step`` donates the old params and state to the compiled update and stores the new ones;
``load_state_dict`` and ``add_param_group`` install several groups' values. A Python signal
handler (Ctrl-C's ``KeyboardInterrupt``, a cluster's SIGTERM handler raising ``SystemExit``, a
SIGALRM timeout) runs between any two bytecodes of the main thread and may raise there: between
the donation and the store it would leave deleted buffers behind.

Blocking signals (``pthread_sigmask``) does not hold such a handler back: the kernel hands a
signal the main thread blocks to another thread (JAX's runtime always has some), and CPython then
runs the Python handler in the main thread all the same. So :func:`signals_deferred` swaps the
handlers instead: for the length of the commit, each signal that has a Python handler gets one
that only records it; at the end the handlers are put back and each recorded signal is raised
again (``signal.raise_signal``), so that its own handler runs right after the commit, never
inside it. Signals without a Python handler (default or ignored) run no Python code and are left
alone. Handlers run in the main thread only, so elsewhere there is nothing to defer.
"""

from __future__ import annotations

import _signal
import functools
import signal
import threading
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_UNCATCHABLE = {getattr(signal, n, None) for n in ("SIGKILL", "SIGSTOP")}
_SIGNALS = tuple(int(s) for s in signal.valid_signals() if s not in _UNCATCHABLE)
# The C functions: `signal.getsignal`/`signal.signal` convert to and from enum members, several
# microseconds a call, which every step would pay once per signal.
_getsignal: Callable[[int], Any] = _signal.getsignal
_setsignal: Callable[[int, Any], Any] = _signal.signal
_main = threading.main_thread()
_depth = [0]  # nested commits: the outermost one swaps


def _restore(swapped: list[tuple[int, Any]]) -> None:
    """Puts the handlers back, all of them even if one runs (for a signal already restored)
    and raises between two of them."""
    try:
        while swapped:
            sig, handler = swapped[-1]
            _setsignal(sig, handler)
            swapped.pop()
    except BaseException:
        _restore(swapped)
        raise


class signals_deferred:
    """``with signals_deferred(): ...``: a Python signal handler whose signal arrives inside the
    block runs when it ends. A class, not a generator: entering and leaving are cheap."""

    __slots__ = ("_swapped", "_received")

    def __enter__(self) -> None:
        self._swapped: list[tuple[int, Any]] | None = None
        if threading.current_thread() is not _main:
            return
        _depth[0] += 1
        if _depth[0] > 1:
            return
        received: list[int] = []
        swapped: list[tuple[int, Any]] = []
        self._received, self._swapped = received, swapped

        def record(signum: int, frame: Any) -> None:
            received.append(signum)

        try:
            for sig in _SIGNALS:
                handler = _getsignal(sig)
                if callable(handler):
                    # Listed first: a handler that runs right after the swap and raises still
                    # finds it restored below.
                    swapped.append((sig, handler))
                    _setsignal(sig, record)
        except BaseException:
            _depth[0] -= 1
            _restore(swapped)
            raise

    def __exit__(self, *exc: Any) -> None:
        swapped = self._swapped
        if swapped is None:
            if threading.current_thread() is _main:
                _depth[0] -= 1
            return
        try:
            _restore(swapped)
        finally:
            _depth[0] -= 1
        for sig in dict.fromkeys(self._received):
            signal.raise_signal(sig)  # its handler runs now, after the commit


def blocked() -> bool:
    """Whether the calling thread is inside :class:`signals_deferred` (handlers held back); the
    reliability tests inject exceptions only where a handler could run."""
    return threading.current_thread() is _main and _depth[0] > 0


def deferring_signals(method: F) -> F:
    """``method`` run inside :class:`signals_deferred`: a signal handler's exception lands
    before or after it, never halfway through its writes (a scheduler's step writes every
    group's ``lr``, then its own counters)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with signals_deferred():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
