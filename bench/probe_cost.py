"""What one SSH probe costs the process that runs it, and how many one process gets through.

`make bench` stands a file check in for the probe (`testing.simulated_ssh`); this measures the
real one, `teuthology_maas.node.ssh.probe_ready`, against real sshd servers on loopback (Debian's
openssh-server, started here as the tests start them): a paramiko login with our key, then
`test -e` of the cloud-init sentinel. Three kinds of node: one that has finished (ready), one
that lets us in but has not finished (the sentinel is missing), one whose sshd is not up yet
(connection refused). For each, the wall time and the CPU time of this process per probe (the
node that is not ready keeps its connection after the first probe, as the probe does);
then the rate with `PROBES_IN_FLIGHT` probes at once (the fleet poller's cap per process), in
OS threads (CPU time is what bounds it: paramiko's key exchange runs in Python).

Printed, not asserted; the sshd side's CPU is not counted (on a lab it is the node's). A
command's wall time includes the server running the user's shell, which reads that user's
~/.bashrc: a slow one (pyenv's init, say) shows in every probe here, while a stock Ubuntu
node's returns at once for a non-interactive shell. "login alone" shows the part that is ours.

    .venv/bin/python bench/probe_cost.py [--probes N] [--concurrent N]
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from teuthology_maas.config import MaasConfig
from teuthology_maas.fleet.poller import PROBES_IN_FLIGHT
from teuthology_maas.node.ssh import _connect, probe_ready
from teuthology_maas.node.ssh_kept import probe_connections
from teuthology_maas.node.ssh_target import SSHTarget
from teuthology_maas.testing.sshd import SSHDFleet


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(name: str, probe: Callable[[], bool], count: int, expected: bool) -> None:
    wrong = 0
    wall0, cpu0 = time.monotonic(), cpu_seconds()
    for _ in range(count):
        wrong += probe() != expected
    wall, cpu = time.monotonic() - wall0, cpu_seconds() - cpu0
    print(f"{name:<34} {1000 * wall / count:8.1f} ms wall {1000 * cpu / count:8.1f} ms CPU"
          f"   ({count} probes, {wrong} answered wrongly)")  # fmt: skip
    if wrong:
        raise SystemExit(f"{name}: {wrong} of {count} probes did not answer {expected}")


def measure_concurrent(probe: Callable[[], bool], count: int, width: int) -> None:
    left = list(range(count))
    lock = threading.Lock()
    ready = 0

    def worker() -> None:
        nonlocal ready
        while True:
            with lock:
                if not left:
                    return
                left.pop()
            answered = probe()
            with lock:
                ready += answered

    threads = [threading.Thread(target=worker) for _ in range(width)]
    wall0, cpu0 = time.monotonic(), cpu_seconds()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.monotonic() - wall0, cpu_seconds() - cpu0
    print(f"{width} at once (ready nodes)               {count / wall:8.1f} probes/s "
          f"{100 * cpu / wall:6.0f} % of a core   ({count} probes, {ready} ready)")
    if ready != count:
        raise SystemExit(f"{count - ready} of {count} concurrent probes did not answer ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=40, help="probes per kind (default 40)")
    parser.add_argument("--concurrent", type=int, default=200,
                        help="probes in the run with several at once (default 200)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="probe-cost-") as tmp:
        root = Path(tmp)
        fleet = SSHDFleet.started(["done", "busy"], root / "ssh", workdir=root / "sshd")
        try:
            for hostname in ("done", "busy"):
                fleet.install_key(hostname)
            fleet.mark_boot_finished("done")
            config = MaasConfig.from_mapping({
                "api_url": "http://127.0.0.1:5240/MAAS/", "api_key": "a:b:c",
                "ssh_config": str(fleet.ssh_config_path), "ssh_keys": [fleet.public_key],
                "ssh_private_key": str(fleet.private_key_path),
            })  # fmt: skip
            refused = free_port()
            (root / "refused.conf").write_text(
                f"Host down down.*\n    HostName 127.0.0.1\n    Port {refused}\n"
                f"    User {fleet.user}\n    IdentityFile {fleet.private_key_path}\n"
            )
            down = MaasConfig.from_mapping({
                "api_url": "http://127.0.0.1:5240/MAAS/", "api_key": "a:b:c",
                "ssh_config": str(root / "refused.conf"),
                "ssh_private_key": str(fleet.private_key_path),
            })  # fmt: skip
            print(f"python {sys.version.split()[0]}; sshd on loopback; "
                  f"probe = login with our key + test -e {config.sentinel_file}")  # fmt: skip
            measure("ready (finished node)", lambda: probe_ready("done", config), args.probes,
                    True)  # fmt: skip
            measure("not ready (connection kept)", lambda: probe_ready("busy", config),
                    args.probes, False)  # fmt: skip
            measure("not up (connection refused)", lambda: probe_ready("down", down),
                    args.probes, False)  # fmt: skip
            target = SSHTarget.resolve("busy", config)
            measure("login alone (key exchange + auth)",
                    lambda: _connect(target, timeout=5.0).close() is None, args.probes,
                    True)  # fmt: skip
            measure_concurrent(lambda: probe_ready("done", config), args.concurrent,
                               PROBES_IN_FLIGHT)  # fmt: skip
        finally:
            probe_connections.close()
            fleet.stop()


if __name__ == "__main__":
    main()
