"""The signals that stop the ``gpuau`` command: raised where they land, and remembered.

Ctrl-C (SIGINT) and SIGTERM (a batch scheduler's time limit, ``kill``) raise :class:`KeyboardInterrupt` and
:class:`Terminated` from their handler, so that the outputs being written are removed and worker processes stopped
on the way out.  One that lands while a compiled kernel's call returns reaches Python as ``SystemError: ... returned
a result with an exception set``, which a handler of one input's or one stream's failure would take for that
failure (and the batched engine retry its streams alone): those handlers call :func:`reraise`, which finds the
interrupt among the error's causes.  The command's handler also remembers what it raised, and the analysis loops raise
it again between frames and steps (:func:`check`), for an error that does not chain it.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


class Terminated(BaseException):
    """SIGTERM arrived: raised like Ctrl-C's KeyboardInterrupt."""


_raised: "type | None" = None  # KeyboardInterrupt or Terminated, once the command's handler raised it


def handle(signum, frame) -> None:
    """The ``gpuau`` command's SIGINT and SIGTERM handler: raise :class:`KeyboardInterrupt` or :class:`Terminated`,
    and remember it for :func:`check`."""
    global _raised
    _raised = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    raise _raised()


def install() -> None:
    """Make :func:`handle` the process's SIGTERM handler, and its SIGINT handler unless Ctrl-C is ignored (under
    ``nohup`` or ``&``).  The ``gpuau`` command calls it; a library caller keeps its own handlers."""
    signal.signal(signal.SIGTERM, handle)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, handle)


def check() -> None:
    """Raise again the interruption :func:`handle` raised, if it did (a no-op otherwise: library callers)."""
    if _raised is not None:
        raise _raised()


@contextlib.contextmanager
def kept_handlers(*signums: int) -> Iterator[bool]:
    """Put the handlers of ``signums`` back as they were after the block (which may replace them: ``ray.init`` does,
    a worker's start ignores Ctrl-C for a moment); yields whether it can (only the main thread sets handlers).  A
    handler installed outside Python (``getsignal`` gives None) is left alone."""
    main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in signums} if main else {}
    try:
        yield main
    finally:
        for s, handler in handlers.items():
            if handler is not None:
                signal.signal(s, handler)


def wait_through(done: "Callable[[], bool]", step: "Callable[[], None]",
                 on_interrupt: "Callable[[], None] | None" = None) -> None:
    """Call ``step`` until ``done()``, whatever it raises meanwhile (a second Ctrl-C while a thread is waited for whose
    work must end first: ``on_interrupt`` is called for each), then raise the first of those, if any."""
    raised = None
    while not done():
        try:
            step()
        except BaseException as e:
            if on_interrupt is not None:
                on_interrupt()
            raised = raised or e
    if raised is not None:
        raise raised


def reraise(error: BaseException) -> None:
    """Raise the interruption behind ``error``, if there is one, for a handler about to take ``error`` for one
    input's failure: the KeyboardInterrupt or Terminated it was caused by (the SystemError of a kernel's call wraps it,
    once for each call it unwinds through, each caused by the one before: a library caller's Ctrl-C too), or the one
    the command's handler raised (:func:`check`)."""
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, (KeyboardInterrupt, Terminated)):
            raise cause from None
        cause = cause.__cause__
    check()
