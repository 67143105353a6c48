"""SIGINT and SIGTERM as exceptions that unwind through every ``finally`` and cleanup.

The CLI installs `install`'s handlers: SIGINT raises ``KeyboardInterrupt`` (exit 130) and
SIGTERM raises `Terminated` (exit 143), so that `speechport.fsutil.atomic_directory` removes
its partial directory either way. A library that swallows the exception (a converter that
catches ``BaseException`` around a pass) cannot make the run succeed: the signal is also
recorded, and `check` (called before an output is renamed into place, and between steps)
raises it again.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_received: int | None = None


class Terminated(BaseException):
    """SIGTERM arrived (a ``BaseException``, like ``KeyboardInterrupt``)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = signum
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def install() -> None:
    """Route SIGINT and SIGTERM to exceptions (main thread only; elsewhere a no-op)."""
    global _received
    _received = None
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def received() -> int | None:
    """The signal number received since `install`, if any."""
    return _received


def check() -> None:
    """Raise again a signal that arrived (even if its exception was swallowed)."""
    if _received == signal.SIGINT:
        raise KeyboardInterrupt
    if _received is not None:
        raise Terminated(_received)


def exit_status(signum: int) -> int:
    """The shell's status for a run ended by ``signum``: 128 + the signal number."""
    return 128 + signum
