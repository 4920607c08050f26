"""SIGTERM during create(): clean up first, then exit.

Python's default SIGTERM kills the process on the spot, which would leave the node Deploying
and allocated to us with nobody to undo it. While a create() runs in the main thread (where
teuthology, under gevent, runs all of them) and nobody else has claimed SIGTERM, it is turned
into SystemExit, so create()'s clean-up (abort, release) runs before the process exits, as it
does for Ctrl-C. A second SIGTERM gets the default behaviour again: whoever insists wins.
Handlers installed by the application are never replaced.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_STATUS = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM

_lock = threading.Lock()
_users = 0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(EXIT_STATUS)


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit in the main thread (see module doc)."""
    global _users
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers, and only it receives them
        return
    with _lock:
        current = signal.getsignal(signal.SIGTERM)
        ours = current is _exit_on_sigterm or (current is signal.SIG_DFL and _users == 0)
        if ours:
            if current is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _exit_on_sigterm)
            _users += 1
    try:
        yield
    finally:
        if ours:
            with _lock:
                _users -= 1
                if _users == 0 and signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
