"""Finding and ending the processes a test lab started, by PID, even after they detached.

teuthology's dispatcher starts each supervisor in a new session, a supervisor starts the job's
`teuthology` process and a detached `teuthology-results`; when their parents exit they are
re-parented and no process tree leads to them any more. Every process a lab starts inherits
its environment, so the lab marks that environment with a value of its own, and
`marked_processes` finds exactly those processes (Linux: /proc/<pid>/environ), never anyone
else's. `end_processes` then ends them one PID at a time: SIGTERM, a bounded wait, SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["alive", "descendants", "die_with_parent", "end_processes", "marked_processes"]


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, finished but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def marked_processes(variable: str, value: str) -> list[int]:
    """The PIDs of live processes whose environment has `variable=value` (not this one)."""
    needle = f"{variable}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in environment and alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def descendants(pid: int) -> list[int]:
    """The PIDs of `pid`'s children, theirs, and so on (Linux: from /proc/<pid>/stat), even
    those that started sessions of their own, which a process-group signal misses."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        children = parents.get(pending.pop(), [])
        found += children
        pending += children
    return found


def end_processes(pids: Iterable[int], *, grace: float = 10.0) -> list[int]:
    """SIGTERM each PID, wait up to `grace` seconds for all, SIGKILL the rest. Returns the
    PIDs that had to be killed."""
    pending = [pid for pid in dict.fromkeys(pids) if alive(pid)]
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
        pending = [pid for pid in pending if alive(pid)]
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pending


def die_with_parent() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGTERM the child when the process that started it dies,
    so a killed test run leaves no servers behind. Only from the main thread: the signal
    follows the starting thread, and a worker thread may end long before the child should."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return hook
