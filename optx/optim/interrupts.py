"""Commits that no signal handler can cut in half.

``opt.step`` donates the old params and state to the compiled update and stores the new ones;
``load_state_dict`` and ``add_param_group`` install several groups' values. A Python signal
handler (Ctrl-C's ``KeyboardInterrupt``, a cluster's SIGTERM handler raising ``SystemExit``, a
SIGALRM timeout) runs between any two bytecodes of the main thread and may raise there: between
the donation and the store it would leave deleted buffers behind.

:func:`signals_deferred` blocks every signal for the calling thread (``pthread_sigmask``) around
such a commit; a signal arriving meanwhile stays pending and is delivered, to whatever handler is
installed, as soon as the block ends, so the handler runs after the commit, never inside it, and
no handler is ever replaced. Where ``pthread_sigmask`` does not exist (Windows), SIGINT is held
back by a temporary handler, as before.
"""

from __future__ import annotations

import functools
import signal
import threading
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_HAS_SIGMASK = hasattr(signal, "pthread_sigmask")
_ALL = frozenset(signal.valid_signals()) if _HAS_SIGMASK else frozenset()
_NONE: frozenset[Any] = frozenset()


class signals_deferred:
    """``with signals_deferred(): ...``: signals that arrive inside the block are delivered
    when it ends. A class, not a generator: entering and leaving cost two system calls."""

    __slots__ = ("_old", "_received", "_previous")

    def __enter__(self) -> None:
        if _HAS_SIGMASK:
            # The mask to restore is read before anything is blocked: a handler that runs (and
            # raises) right after the blocking call returns leaves `finally` a mask to restore.
            self._old = signal.pthread_sigmask(signal.SIG_BLOCK, _NONE)
            try:
                signal.pthread_sigmask(signal.SIG_BLOCK, _ALL)
            except BaseException:
                # A handler for a signal that came just before the block ran as the call
                # returned, and raised: __exit__ will not run, so unblock here.
                signal.pthread_sigmask(signal.SIG_SETMASK, self._old)
                raise
            return
        self._previous = None  # pragma: no cover - Windows
        if threading.current_thread() is threading.main_thread():  # pragma: no cover
            self._received: list[Any] = []
            self._previous = signal.signal(
                signal.SIGINT, lambda signum, frame: self._received.append(frame))

    def __exit__(self, *exc: Any) -> None:
        if _HAS_SIGMASK:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old)
            return
        previous = self._previous  # pragma: no cover - Windows
        if previous is None:  # pragma: no cover
            return
        signal.signal(signal.SIGINT, previous)  # pragma: no cover
        if self._received:  # pragma: no cover
            if callable(previous):
                previous(signal.SIGINT, self._received[0])
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


def blocked() -> bool:
    """Whether the calling thread blocks signals now (inside :class:`signals_deferred`); the
    reliability tests inject exceptions only where a handler could run."""
    if not _HAS_SIGMASK:  # pragma: no cover
        return False
    return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, _NONE)


def deferring_signals(method: F) -> F:
    """``method`` run inside :class:`signals_deferred`: a signal handler's exception lands
    before or after it, never halfway through its writes (a scheduler's step writes every
    group's ``lr``, then its own counters)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with signals_deferred():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
