"""Process lifetime belongs to the host: teuthology_maas.teuthology.lifetime, used by the
teuthology adapter and the CLI entry point; node code never installs signal handlers or exit
hooks, it only registers its attempts (node/attempts.py) and cleans up after its own
exceptions."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from teuthology_maas.node import attempts
from teuthology_maas.teuthology import lifetime

PACKAGE = Path(__file__).resolve().parent.parent / "teuthology_maas"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_node_code_owns_no_process_lifetime():
    for path in sorted((PACKAGE / "node").glob("*.py")):
        modules = imported_modules(path)
        assert not any(m.startswith("teuthology_maas.teuthology") for m in modules), path
        assert not {"signal", "atexit"} & modules, path


def test_only_the_hosts_use_lifetime():
    users = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "teuthology_maas.teuthology.lifetime" in imported_modules(path)
    }
    assert users <= {"teuthology/adapter.py", "cli/__init__.py"}, users


def test_hosting_installs_handlers_for_its_duration_and_leaves_the_applications_own():
    own = signal.signal(signal.SIGHUP, lambda signum, frame: None)
    try:
        with lifetime.hosting(), lifetime.hosting():  # nestable
            assert signal.getsignal(signal.SIGTERM) is lifetime._on_signal
            assert signal.getsignal(signal.SIGINT) is lifetime._on_signal
            assert signal.getsignal(signal.SIGHUP) is not lifetime._on_signal
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGHUP, own)


def test_stop_asks_attempts_in_other_threads_and_waits_for_their_clean_up():
    cleaned: list[str] = []
    started = threading.Event()

    def create(name: str, token: str) -> None:
        with attempts.running(token, name) as attempt:
            started.set()
            try:
                while True:  # a wait's check points
                    attempt.check()
                    time.sleep(0.01)
            except SystemExit:
                attempt.cleaning_up()
                time.sleep(0.05)  # the clean-up
                cleaned.append(name)

    worker = threading.Thread(target=create, args=("smithi001", "ab" * 16))
    worker.start()
    assert started.wait(5)
    late = lifetime.stop(signum=signal.SIGTERM, timeout=5)
    worker.join(5)
    assert late == [] and cleaned == ["smithi001"]
    assert attempts.running_attempts() == []


# A teuthology process (gevent) whose SIGTERM teuthology's Exiter holds, as a supervisor's does
# while it reimages (the console_log task around provision.reimage installs it).
EXITER_PROCESS = """
import os, signal, sys
import teuthology  # gevent, as in every teuthology process
import gevent
from teuthology.exit import exiter
from teuthology_maas.node import attempts
from teuthology_maas.teuthology import lifetime

exiter.add_handler(signal.SIGTERM, lambda signum, frame: print("exiter handler", flush=True))

def create():
    with lifetime.hosting(), attempts.running("ab" * 16, "smithi001") as attempt:
        print("deploying", flush=True)
        try:
            while True:
                attempt.check()
                gevent.sleep(0.01)
        except BaseException:
            attempt.cleaning_up()
            gevent.sleep(0.3)  # the abort and release requests
            print("cleaned up", flush=True)
            raise

if sys.argv[1] == "after":
    came_and_went = gevent.spawn(create)
    gevent.sleep(0.2)
    came_and_went.kill(block=True)
    print("hosting over", flush=True)
    gevent.sleep(10)
else:
    gevent.joinall([gevent.spawn(create)])  # the main greenlet waits, as teuthology.parallel
print("not ended by the signal", flush=True)
"""


def _exiter_process(mode: str, until: str) -> tuple[int, list[str]]:
    """Run EXITER_PROCESS, send it SIGTERM once it printed `until`; its exit status and
    every line it printed."""
    process = subprocess.Popen([sys.executable, "-c", EXITER_PROCESS, mode],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    while until not in lines:
        line = process.stdout.readline()
        assert line, lines
        lines.append(line.strip())
    process.send_signal(signal.SIGTERM)
    lines += process.stdout.read().splitlines()
    return process.wait(timeout=60), lines


def test_sigterm_taken_over_from_teuthologys_exiter_cleans_up_then_runs_it():
    returncode, lines = _exiter_process("during", until="deploying")
    # the create() cleaned up; teuthology's handler ran; the process ended by the signal
    assert returncode == -signal.SIGTERM, lines
    assert sorted(lines) == sorted(["deploying", "exiter handler", "cleaned up"]), lines


def test_teuthologys_exiter_is_back_in_charge_after_hosting():
    # gevent's watcher puts SIG_DFL back when it stops; the Exiter must get SIGTERM again
    returncode, lines = _exiter_process("after", until="hosting over")
    assert returncode == -signal.SIGTERM, lines
    assert lines == ["deploying", "cleaned up", "hosting over", "exiter handler"], lines
