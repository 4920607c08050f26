"""A racer: one OS process of tests/test_concurrency_processes.py, as a teuthology process is.

Started with a JSON setup (the `maas:` section, the simulator's SSH root, the simulated boot
time), it reads commands as JSON lines on stdin and runs each in a thread of its own, once the
wall-clock time the command names (`at`) has come: a create() (optionally for a paddles lock),
a release() (with the authority the command names), or a `teuthology-maas` command line run
through the CLI's own `run`. Each result is one JSON line on stdout. The process stays alive
until told to quit, as a teuthology supervisor stays alive while its job runs on the node: a
deployment it made is in use as long as it lives.
"""

from __future__ import annotations

import faulthandler
import io
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import teuthology_maas.node.provisioner as provisioner_module
from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import MaasError
from teuthology_maas.node.ownership import Authority, LockHolder
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.testing.simulated_ssh import probe_from_files, verify_ssh_from_files

_out = threading.Lock()


def emit(payload: dict[str, Any]) -> None:
    with _out:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()


def _lock(value: Any) -> LockHolder | None:
    return LockHolder(value[0], value[1]) if value else None


def run(command: dict[str, Any], config: MaasConfig) -> dict[str, Any]:
    kind = command["kind"]
    result: dict[str, Any] = {"id": command["id"], "kind": kind, "pid": os.getpid()}
    delay = command.get("at", 0.0) - time.time()
    if delay > 0:
        time.sleep(delay)
    result["started"] = time.time()
    provisioner = None
    try:
        if kind == "create":
            provisioner = MaasProvisioner(
                command["node"],
                "ubuntu",
                "22.04",
                config=config,
                owner=command.get("owner"),
                lock=_lock(command.get("lock")),
                take_over=bool(command.get("take_over")),
            )
            provisioner.create()
        elif kind == "release":
            provisioner = MaasProvisioner(command["node"], config=config, owner=command["owner"])
            lock = _lock(command.get("lock"))
            provisioner.release(authority=Authority(lock=lock) if lock else None)
        elif kind == "cli":
            from teuthology_maas.cli import run as cli_run

            out, err = io.StringIO(), io.StringIO()
            result["exit"] = cli_run(command["argv"], out, err)
            result["stdout"], result["stderr"] = out.getvalue(), err.getvalue()
        else:
            raise ValueError(f"unknown command {kind!r}")
        result["ok"] = result.get("exit", 0) == 0
    except MaasError as exc:
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug in the library: report it with its traceback
        result.update(ok=False, error=f"BUG {type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())  # fmt: skip
    result["ended"] = time.time()
    if provisioner is not None:
        result["tokens"] = sorted(provisioner.tokens)
    return result


def main() -> None:
    # On SIGUSR1 every thread's stack goes to stderr (the lab's log of this racer): what the
    # harness asks for when a command does not finish.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(threadName)s %(name)s: %(message)s"
    )
    setup = json.loads(sys.argv[1])
    provisioner_module.verify_ssh = verify_ssh_from_files(  # type: ignore[assignment]
        Path(setup["ssh_root"]), boot_time=float(setup.get("boot_time", 0.0))
    )
    provisioner_module.probe_ready = probe_from_files(Path(setup["ssh_root"]))
    config = MaasConfig.from_mapping(setup["maas"])
    emit({"ready": os.getpid()})
    threads = []
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("quit"):
            break
        thread = threading.Thread(target=lambda c=command: emit(run(c, config)), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
