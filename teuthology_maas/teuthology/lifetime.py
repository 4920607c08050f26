"""Process lifetime, owned by the host: signals, the interpreter exiting, stopping create()s.

The library's node code only cleans up after its own exceptions; whoever owns the process
decides what a signal or an exit means for the create() attempts running in it. The hosts are
the teuthology adapter (every teuthology process that reimages) and the `teuthology-maas`
entry point; an application that runs create() in its own threads can be one too, by running
them inside `hosting()`. There is one mechanism (`stop`): every running attempt
(`teuthology_maas.node.attempts`) is asked to stop, wherever it runs; each raises at its next
check point (a status wait wakes at least twice a second, an SSH attempt, a MAAS action), or at
once in a gevent greenlet, which is killed; its own clean-up then aborts or releases the node;
and `stop` waits (bounded) for all of them.

* Signals (SIGTERM, SIGHUP, SIGINT), while `hosting()` is active and unless the application
  installed a handler of its own: every attempt in another thread or greenlet is stopped and
  waited for; then the process exits with the signal's status (143, 129) or KeyboardInterrupt.
  An attempt running in the main thread itself gets the exception directly. A second signal
  gets the default action at once: whoever insists wins. Under gevent the handler is a gevent
  signal handler (its own greenlet), so it never runs inside a random greenlet.
* teuthology's own handler is the exception (`teuthology.exit.Exiter`, which a supervisor has
  on SIGTERM while it reimages: its console_log task installs it). That handler runs its
  handlers and then kills the process with the signal's default action, which would leave our
  deployments Deploying. `hosting()` takes such a signal over like a default one, and calls
  teuthology's handler at exit, once every attempt has cleaned up: its handlers still run and
  the process still ends by the signal. Any other handler of the application stays in charge.
* Exit: an exit hook stops the attempts still running (a gevent process that exits would
  otherwise drop their greenlets mid-deploy), then runs the host's own exit callbacks (the
  adapter releases nodes it deployed that paddles no longer shows locked). Exit hooks run when
  Python 3.12 no longer lets a native thread start, and gevent's default resolver runs
  getaddrinfo in a native thread pool: the hook first makes gevent resolve in the calling
  greenlet (`resolve_without_threads`).
* Without a host (a plain script calling create() in worker threads), signals keep Python's
  defaults: SIGINT interrupts the main thread only, SIGTERM and SIGHUP end the process on the
  spot. The node is then left as the attempt had it, stamped with the attempt's process;
  docs/lifecycle.md says what `teuthology-maas reconcile` and the next create() do with it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from teuthology_maas.node.attempts import Attempt, running_attempts

__all__ = ["at_exit", "hosting", "resolve_without_threads", "stop", "stop_node"]

log = logging.getLogger("teuthology_maas.teuthology.lifetime")

# How long one attempt may take to clean up once stopped (abort, forensics, release request).
STOP_TIMEOUT = 360.0
HANDLED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

_lock = threading.RLock()
_users = 0
_installed: dict[int, Any] = {}  # signum -> the previous handler (or the gevent watcher)
_signalled: set[int] = set()
# Signals taken over from teuthology's Exiter: signum -> its handler while installed; the signal
# the process must end by once its attempts are cleaned up (None: none such came).
_exiters: dict[int, Any] = {}
_end_by: list[int] = []
_exit_callbacks: list[Callable[[], None]] = []
_atexit_registered = False


def _patched_gevent() -> Any:
    """The gevent module when this process runs on gevent's hub (teuthology patches sockets,
    and threads unless its API server needs native ones), else None."""
    gevent = sys.modules.get("gevent")
    monkey = sys.modules.get("gevent.monkey")
    if gevent is None or monkey is None:
        return None
    patched = monkey.is_module_patched("threading") or monkey.is_module_patched("socket")
    return gevent if patched else None


def _killable(runner: Any) -> bool:
    return callable(getattr(runner, "kill", None)) and callable(getattr(runner, "join", None))


def _exception_for(signum: int | None, attempt: Attempt) -> BaseException:
    if _killable(attempt.runner):
        # A gevent greenlet ends quietly on GreenletExit (teuthology.parallel does not take it
        # for a failure); any other exception would reach the main greenlet first.
        from gevent import GreenletExit

        stop: BaseException = GreenletExit()
        return stop
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(128 + (signum or signal.SIGTERM))


def stop(
    targets: list[Attempt] | None = None,
    *,
    signum: int | None = None,
    timeout: float = STOP_TIMEOUT,
    why: str = "stopping",
) -> list[Attempt]:
    """Ask every attempt in `targets` (default: all running, except the caller's own) to
    stop, and wait until each has cleaned up or `timeout` seconds passed. Returns those that
    had not finished in time."""
    here = threading.get_ident()
    current = _current_greenlet()
    chosen = [
        a
        for a in (running_attempts() if targets is None else targets)
        if not (a.thread == here and (a.runner is None or a.runner is current))
    ]
    for attempt in chosen:
        if not attempt.interrupt(_exception_for(signum, attempt)):
            continue
        log.warning("%s: %s its create() (deployment %s)", attempt.name, why, attempt.token[:12])
        if _killable(attempt.runner) and attempt.runner is not current:
            try:
                attempt.runner.kill(attempt.stopping_with, block=False)
            except Exception:  # a dead or foreign greenlet: the flag still stops it
                log.debug("could not kill the greenlet of %s", attempt.name, exc_info=True)
    deadline = time.monotonic() + timeout
    late = []
    for attempt in chosen:
        remaining = max(0.0, deadline - time.monotonic())
        if _killable(attempt.runner) and attempt.runner is not current:
            attempt.runner.join(remaining)  # cooperative, whatever threading is patched to
        else:
            attempt.done.wait(remaining)
        if not attempt.done.is_set():
            late.append(attempt)
    for attempt in late if timeout > 0 else ():  # 0: not waiting here (a signal handler)
        log.error("%s: its create() did not finish cleaning up within %.0f s", attempt.name,
                  timeout)  # fmt: skip
    return late


def stop_node(name_matches: Callable[[str], bool], *, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the create() of a node (`name_matches` its name) running in this process in
    another thread or greenlet, and wait for its clean-up. False when there was none."""
    targets = [a for a in running_attempts() if name_matches(a.name)]
    if not targets:
        return False
    stop(targets, timeout=timeout, why="stopping its reimage still running in this process:")
    return True


def _current_greenlet() -> Any:
    greenlet = sys.modules.get("greenlet")
    return greenlet.getcurrent() if greenlet is not None else None


# -- signals -----------------------------------------------------------------------------------


def _exit_for(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else SystemExit(128 + signum)


def _insist(signum: int) -> None:
    """A second signal: the default action, now."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _first(signum: int) -> bool:
    """Record a signal; False when one came before (the sender insists: default action)."""
    with _lock:
        again = bool(_signalled)
        _signalled.add(signum)
        exiter = _exiters.get(signum)
        if not again and exiter is not None:
            _end_by.append(signum)
    if again:
        _insist(signum)
        return False
    running = running_attempts()
    if running:
        log.warning("%s: cleaning up %d deployment(s) in flight, then exiting",
                    signal.Signals(signum).name, len(running))  # fmt: skip
    return True


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """A plain signal handler (main thread, no gevent)."""
    if not _first(signum):
        return
    why = f"{signal.Signals(signum).name}:"
    here = threading.get_ident()
    if any(a.thread == here for a in running_attempts()):
        # create() runs in this very thread: the exception starts its clean-up; the others
        # are stopped now and waited for at exit.
        stop(signum=signum, timeout=0.0, why=why)
    else:
        stop(signum=signum, why=why)
    _run_teuthology_handlers(signum, frame)
    raise _exit_for(signum)


def _on_gevent_signal(signum: int) -> None:
    """Under gevent: runs in a greenlet of its own. Every attempt's greenlet is killed (its
    clean-up starts at once); the SystemExit raised here reaches the main greenlet, and the
    exit hook waits for every clean-up before the process ends. (Waiting here instead would
    race the main greenlet, which resumes as soon as the killed greenlets end.)"""
    if not _first(signum):
        return
    stop(signum=signum, timeout=0.0, why=f"{signal.Signals(signum).name}:")
    _run_teuthology_handlers(signum, None)
    raise _exit_for(signum)


def _run_teuthology_handlers(signum: int, frame: FrameType | None) -> None:
    """For a signal taken over from teuthology's Exiter: run the Exiter's handlers now, as it
    would have (the console_log task's kills its console loggers). Its last step, ending the
    process by the signal, waits for the attempts' clean-up (`_at_exit`)."""
    exiter = _exiters.get(signum)
    if exiter is None:
        return
    log.debug("%s: running teuthology's %d signal handler(s)", signal.Signals(signum).name,
              len(exiter.handlers))  # fmt: skip
    for handler in list(exiter.handlers):
        if signum not in getattr(handler, "signals", (signum,)):
            continue
        try:
            handler.func(signum, frame)
        except Exception:  # one failing handler must not keep the others (or us) from running
            log.exception("teuthology's handler %r of %s failed", handler,
                          signal.Signals(signum).name)  # fmt: skip


def _is_default(signum: int) -> bool:
    handler = signal.getsignal(signum)
    if signum == signal.SIGINT:
        return handler is signal.default_int_handler
    return handler is signal.SIG_DFL


def _teuthology_exiter(handler: object) -> Any:
    """The teuthology Exiter whose default_handler `handler` is, else None. That handler runs
    the Exiter's `handlers` (each has `func(signum, frame)` and `signals`), then ends the
    process with the signal's default action (teuthology/exit.py, 1.3.0)."""
    exiter_class = getattr(sys.modules.get("teuthology.exit"), "Exiter", None)
    owner = getattr(handler, "__self__", None)
    if (
        isinstance(exiter_class, type)
        and isinstance(owner, exiter_class)
        and getattr(handler, "__func__", None) is getattr(exiter_class, "default_handler", None)
        and isinstance(getattr(owner, "handlers", None), list)
    ):
        return owner
    return None


def _install() -> None:
    gevent = _patched_gevent()
    for signum in HANDLED:
        exiter = _teuthology_exiter(signal.getsignal(signum))
        if exiter is not None:
            _exiters[signum] = exiter  # taken over: see _run_teuthology_handlers
        elif not _is_default(signum):
            continue  # the application's own handler stays in charge
        try:
            if gevent is not None:
                _installed[signum] = gevent.signal_handler(signum, _on_gevent_signal, signum)
            else:
                _installed[signum] = signal.signal(signum, _on_signal)
        except ValueError:
            _exiters.clear()
            return  # not the main OS thread: only it may set handlers (and gets signals)


def _uninstall() -> None:
    _signalled.clear()
    _exiters.clear()
    for signum, previous in list(_installed.items()):
        if hasattr(previous, "cancel"):
            previous.cancel()
            # libev puts SIG_DFL back when its last watcher of a signal stops, whatever Python
            # had installed (teuthology's Exiter; default_int_handler for SIGINT): give the
            # handler Python still records back to the OS.
            try:
                signal.signal(signum, signal.getsignal(signum))
            except (ValueError, TypeError):  # not the main OS thread; not set from Python
                log.debug("could not restore the handler of signal %d", signum, exc_info=True)
        elif signal.getsignal(signum) is _on_signal:
            signal.signal(signum, previous)
        del _installed[signum]


@contextmanager
def hosting() -> Iterator[None]:
    """Within the block, this process is a host for create() attempts: signals and exit stop
    them with their clean-up (see the module docstring). Nestable; thread-safe."""
    global _users
    with _lock:
        if _users == 0:
            _install()
        _users += 1
        _register_exit_hook()
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _uninstall()


# -- exit --------------------------------------------------------------------------------------


def at_exit(callback: Callable[[], None]) -> None:
    """Run `callback` when the process exits, after the running attempts were stopped."""
    with _lock:
        if callback not in _exit_callbacks:
            _exit_callbacks.append(callback)
        _register_exit_hook()


def _register_exit_hook() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_at_exit)
        _atexit_registered = True


def _at_exit() -> None:
    """Stop every create() still running, all at once, and wait for their clean-up; then the
    host's callbacks; then, for a signal taken over from teuthology's Exiter, the end it gives
    the process."""
    if running_attempts():
        resolve_without_threads()
        stop(why="process exiting:")
    with _lock:
        callbacks = list(_exit_callbacks)
    for callback in callbacks:
        resolve_without_threads()
        try:
            callback()
        except Exception:  # an exit hook must not hide the others (or the exit status)
            log.exception("teuthology_maas: clean-up at exit failed")
    _end_by_signal()


def _end_by_signal() -> None:
    """For a signal taken over from teuthology's Exiter, end the process the way the Exiter
    does, now that the attempts are cleaned up: the signal's default action (so this comes
    last: the exit hooks registered before this module's do not run, as under the Exiter)."""
    with _lock:
        signum = _end_by[0] if _end_by else None
        _end_by.clear()
    if signum is None:
        return
    log.info("%s: deployments cleaned up; ending the process by the signal, as teuthology's "
             "handler does", signal.Signals(signum).name)  # fmt: skip
    for handler in logging.getLogger().handlers:
        handler.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


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
    except (ImportError, AttributeError, RuntimeError):
        log.debug("could not switch gevent to a blocking resolver", exc_info=True)
