"""Interrupted create(): clean up first, then exit.

Python's default SIGTERM kills the process on the spot, which would leave the node Deploying
and allocated to us with nobody to undo it. While a create() runs, and unless the application
has claimed SIGTERM itself, SIGTERM instead ends the process through SystemExit after the
clean-up (abort, release) has run, as Ctrl-C does. A second SIGTERM gets the default
behaviour again: whoever insists wins.

Two worlds:

* plain threads: the handler raises SystemExit in the main thread, which is where create()
  runs when it can be interrupted at all (only the main thread receives signals);
* gevent (teuthology): every create() runs in a greenlet of the main thread, and a plain
  signal handler may run inside any of them, even the hub. So the handler is a gevent signal
  handler (its own greenlet). It raises SystemExit inside every create() in flight; each
  cleans up, waits for the others, and re-raises: gevent hands that SystemExit to the main
  greenlet, and the process exits with every node handled. (Cleaning up later, at
  interpreter shutdown, is unreliable: gevent's resolver cannot start threads then.)

A gevent process that exits (SystemExit from SIGTERM or from anywhere else) would drop the
greenlets still in create(); an exit hook first raises GreenletExit in all of them at once and
waits for their clean-up. Exit hooks run when Python 3.12 no longer lets any native thread
start, and gevent's default resolver runs getaddrinfo in a native thread pool: the hook first
switches gevent to resolving in the calling greenlet (`resolve_without_threads`).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger("teuthology_maas.node.provisioner")

EXIT_STATUS = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM

_lock = threading.Lock()
_users = 0
_gevent_watcher: Any = None
_terminating = False
_stopping: dict[int, bool] = {}  # greenlets SIGTERM stopped -> their clean-up is done
_siblings_done: Any = None
_in_flight: dict[int, tuple[Any, float]] = {}
_atexit_registered = False


def _patched_gevent() -> Any:
    """The gevent module when this process is monkey-patched (teuthology), else None."""
    gevent = sys.modules.get("gevent")
    monkey = sys.modules.get("gevent.monkey")
    if gevent is None or monkey is None:
        return None
    return gevent if monkey.is_module_patched("threading") else None


def _current_greenlet() -> Any:
    """The gevent Greenlet running us, or None (no gevent, or the main greenlet)."""
    gevent = _patched_gevent()
    if gevent is None:
        return None
    current = gevent.getcurrent()
    return current if callable(getattr(current, "kill", None)) else None


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(EXIT_STATUS)


def _gevent_exit_on_sigterm() -> None:
    global _terminating, _siblings_done
    if _terminating:
        os._exit(EXIT_STATUS)  # a second SIGTERM: the sender insists
    _terminating = True
    with _lock:
        running = list(_in_flight.values())
        _stopping.update({id(greenlet): False for greenlet, _ in running})
        _siblings_done = threading.Event()
    if not running:
        raise SystemExit(EXIT_STATUS)  # gevent hands it to the main greenlet
    log.warning("SIGTERM: cleaning up %d deployment(s) in flight, then exiting", len(running))
    # Each create() cleans up, waits for its siblings (wait_for_siblings), then re-raises; the
    # first SystemExit to leave a greenlet ends the process, with every node already handled.
    for greenlet, _ in running:
        greenlet.kill(SystemExit(EXIT_STATUS), block=False)


def wait_for_siblings(timeout: float) -> None:
    """In a create() stopped by SIGTERM, after its clean-up: wait (up to `timeout`) until the
    other create()s stopped with it are cleaned up too, so exiting abandons none of them."""
    greenlet = _current_greenlet()
    with _lock:
        if greenlet is None or id(greenlet) not in _stopping or _siblings_done is None:
            return
        _stopping[id(greenlet)] = True
        done, event = all(_stopping.values()), _siblings_done
    if done:
        event.set()
    else:
        event.wait(timeout)


def _claim() -> bool:
    """Install our SIGTERM handling if SIGTERM is free; True when it is ours to release."""
    global _users, _gevent_watcher
    with _lock:
        if _users > 0:
            _users += 1
            return True
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return False  # the application's own handler stays in charge
        gevent = _patched_gevent()
        try:
            if gevent is not None:
                _gevent_watcher = gevent.signal_handler(signal.SIGTERM, _gevent_exit_on_sigterm)
            else:
                signal.signal(signal.SIGTERM, _exit_on_sigterm)
        except ValueError:
            return False  # not the main OS thread: only it may set handlers (and gets signals)
        _users = 1
        return True


def _unclaim() -> None:
    global _users, _gevent_watcher
    with _lock:
        _users -= 1
        if _users:
            return
        if _gevent_watcher is not None:
            _gevent_watcher.cancel()
            _gevent_watcher = None
        elif signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """Within the block, SIGTERM exits through SystemExit after clean-up (see module doc)."""
    ours = _claim()
    try:
        yield
    finally:
        if ours:
            _unclaim()


@contextmanager
def stopped_at_exit(timeout: float) -> Iterator[None]:
    """Within the block, an exit of a gevent process first stops this greenlet (GreenletExit,
    waiting up to `timeout` for its clean-up)."""
    global _atexit_registered
    greenlet = _current_greenlet()
    if greenlet is None:
        yield
        return
    with _lock:
        _in_flight[id(greenlet)] = (greenlet, timeout)
        if not _atexit_registered:
            atexit.register(_stop_in_flight)
            _atexit_registered = True
    try:
        yield
    finally:
        with _lock:
            _in_flight.pop(id(greenlet), None)


def resolve_without_threads() -> None:
    """Make gevent resolve host names in the calling greenlet instead of its native thread
    pool, which cannot start threads once the interpreter is shutting down ("can't create new
    thread at interpreter shutdown"). For exit hooks only: it blocks the hub while resolving
    (for a loopback or numeric MAAS address, nothing to wait for)."""
    gevent = sys.modules.get("gevent")
    monkey = sys.modules.get("gevent.monkey")
    if gevent is None or monkey is None or not monkey.is_module_patched("socket"):
        return
    try:
        from gevent.resolver.blocking import Resolver

        hub = gevent.get_hub()
        # Set, never read: reading creates the default resolver, and with it the thread pool.
        hub.resolver = Resolver(hub)
    except Exception:
        log.debug("could not switch gevent to a blocking resolver", exc_info=True)


def _stop_in_flight() -> None:
    """Raise GreenletExit in every create() still running, all at once, and wait for their
    clean-up (each bounded by its own timeout)."""
    with _lock:
        running = list(_in_flight.values())
    if not running:
        return
    resolve_without_threads()
    for greenlet, _ in running:
        try:
            greenlet.kill(block=False)
        except Exception:
            log.exception("could not stop a create() still running at exit")
    gevent = _patched_gevent()
    if gevent is not None:
        gevent.joinall([g for g, _ in running], timeout=max(t for _, t in running))
