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

No state of this module can be left behind by an exception. A handler may run and raise at any
bytecode of ``__enter__`` and ``__exit__`` themselves (for a signal not yet swapped, or already
put back), so nothing here is a counter or flag that such an exception could leave set: whether
a commit is nested is read from the installed handlers themselves (a recording handler whose
commit is running means an outer commit defers that signal), and a recording handler knows its
commit from the commit's frame, which must be on the stack. One that an exception left installed
(its commit's ``__enter__`` cut short twice over) finds its commit gone: it puts the handler it
replaced back and runs it, and the next commit replaces it too.
"""

from __future__ import annotations

import _signal
import functools
import signal
import sys
import threading
from _thread import get_ident as _get_ident
from itertools import compress
from types import FrameType
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_UNCATCHABLE = {getattr(signal, n, None) for n in ("SIGKILL", "SIGSTOP")}
_SIGNALS = tuple(int(s) for s in signal.valid_signals() if s not in _UNCATCHABLE)
# The C functions: `signal.getsignal`/`signal.signal` convert to and from enum members, several
# microseconds a call, which every step would pay once per signal.
_getsignal: Callable[[int], Any] = _signal.getsignal
_setsignal: Callable[[int, Any], Any] = _signal.signal
# Compared with _thread.get_ident() (C), where threading.current_thread() is Python code.
_MAIN_ID = threading.main_thread().ident
# The handlers the last commit found, and those of them that are Python callables.
_last_scan: list[Any] = [None, []]


def _on_stack(target: FrameType, frame: FrameType | None) -> bool:
    while frame is not None:
        if frame is target:
            return True
        frame = frame.f_back
    return False


class _Commit:
    """One outermost commit: the frame running it (None once it ends) and the signals that
    arrived inside it."""

    __slots__ = ("frame", "received")

    def __init__(self, frame: FrameType) -> None:
        self.frame: FrameType | None = frame
        self.received: list[int] = []

    def running(self, frame: FrameType | None) -> bool:
        """Whether the commit is running in the stack of ``frame``."""
        return self.frame is not None and _on_stack(self.frame, frame)


class _Deferred:
    """The handler a commit installs in place of ``handler``: records its signal while the
    commit runs; left behind by one that an exception cut short, runs ``handler``."""

    __slots__ = ("commit", "handler")

    def __init__(self, commit: _Commit, handler: Callable[..., Any]) -> None:
        self.commit, self.handler = commit, handler

    def __call__(self, signum: int, frame: FrameType | None) -> Any:
        if self.commit.running(frame if frame is not None else sys._getframe(1)):
            self.commit.received.append(signum)
            return None
        if _getsignal(signum) is self:
            _setsignal(signum, self.handler)
        return self.handler(signum, frame)


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


def _reraise(received: list[int]) -> None:
    """Raises each recorded signal again: its handler runs now, outside the commit."""
    for sig in dict.fromkeys(received):
        signal.raise_signal(sig)


class signals_deferred:
    """``with signals_deferred(): ...``: a Python signal handler whose signal arrives inside the
    block runs when it ends. A class, not a generator: entering and leaving are cheap. Nested
    blocks defer to the outermost one."""

    __slots__ = ("_commit", "_swapped")

    def __enter__(self) -> None:
        self._commit: _Commit | None = None
        if _get_ident() != _MAIN_ID:
            return
        frame = sys._getframe(1)
        commit = _Commit(frame)
        swapped: list[tuple[int, Any]] = []
        self._commit, self._swapped = commit, swapped
        try:
            # The handlers, and which are Python callables (SIG_DFL and SIG_IGN are ints), read
            # in C loops: a Python loop over the 60-odd signals cost every step microseconds.
            handlers = list(map(_getsignal, _SIGNALS))
            if handlers != _last_scan[0]:  # C comparison, by identity first: usually equal
                _last_scan[:] = handlers, list(compress(zip(_SIGNALS, handlers),
                                                        map(callable, handlers)))
            for sig, handler in _last_scan[1]:
                if type(handler) is _Deferred:
                    if handler.commit.running(frame):
                        continue  # an outer commit defers it
                    while type(handler) is _Deferred:  # left behind: replaced as what it holds
                        handler = handler.handler
                # Listed first: a handler that runs right after the swap and raises still finds
                # it restored below.
                swapped.append((sig, handler))
                _setsignal(sig, _Deferred(commit, handler))
        except BaseException:
            # A handler of a signal not yet swapped raised: the commit never starts.
            try:
                _restore(swapped)
            finally:
                commit.frame = None
                _reraise(commit.received)
            raise

    def __exit__(self, *exc: Any) -> None:
        commit = self._commit
        if commit is None:
            return
        try:
            # A signal whose handler is already back may run it and raise here: _restore still
            # puts back the others; one not yet back is recorded and raised below.
            _restore(self._swapped)
        finally:
            commit.frame = None
            if commit.received:
                _reraise(commit.received)


def blocked() -> bool:
    """Whether the calling thread is inside :class:`signals_deferred` (handlers held back)."""
    if _get_ident() != _MAIN_ID:
        return False
    frame = sys._getframe(1)
    return any(isinstance(h, _Deferred) and h.commit.running(frame)
               for h in map(_getsignal, _SIGNALS))


def deferring_signals(method: F) -> F:
    """``method`` run inside :class:`signals_deferred`: a signal handler's exception lands
    before or after it, never halfway through its writes (a scheduler's step writes every
    group's ``lr``, then its own counters)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with signals_deferred():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
