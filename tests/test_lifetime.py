"""Process lifetime belongs to the host: teuthology_maas.teuthology.lifetime, used by the
teuthology adapter and the CLI entry point; node code never installs signal handlers or exit
hooks, it only registers its attempts (node/attempts.py) and cleans up after its own
exceptions."""

from __future__ import annotations

import ast
import signal
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
