"""Dispatcher-path fixtures: teuthology-schedule / teuthology-suite -> beanstalkd ->
teuthology-dispatcher -> one teuthology-supervisor per job, all stock teuthology 1.3.0, against
the MAAS simulator (fast timings), the paddles double and sandboxed loopback sshd nodes.

One beanstalkd serves a module (each lab uses a tube of its own: the tube is the machine type,
unique per lab, so labs never see each other's jobs); the simulator, paddles, nodes and the
dispatcher are each test's own, and every process a lab started is ended by PID when the test
ends, pass or fail (teuthology_maas.testing.dispatcher_lab says what it takes).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._maas_view import MaasView
from teuthology_maas.testing.dispatcher_lab import Beanstalkd, DispatcherLab
from teuthology_maas.testing.fast_timings import FAST_SCALE, FAST_TIMINGS
from teuthology_maas.testing.lockserver import LockServer
from teuthology_maas.testing.sshd import SSHDFleet

LAB_DOMAIN = "dispatch.test"
OWNER = "scheduled_e2e@control"  # what teuthology-schedule/-suite record as the job's owner
# Host paths a job's commands would change if a node were not sandboxed.
HOST_WATCH = ("/home/ubuntu", "/etc/sudoers", "/etc/sudoers.orig.teuthology", "/etc/sudoers.d",
              "/etc/sysctl.conf", "/proc/sys/kernel/core_pattern")


class GatedClock:
    """Simulated time that stands still until `open()`, then runs `factor` times real time:
    deployments started before the gate opens are all in flight at once, provably."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._start = time.time()
        self._opened: float | None = None
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            if self._opened is None:
                return self._start
            return self._start + (time.monotonic() - self._opened) * self.factor

    def open(self) -> None:
        with self._lock:
            if self._opened is None:
                self._opened = time.monotonic()


def host_fingerprint() -> dict[str, str]:
    """What the host's watched paths hold (a digest per file, the names in a directory)."""
    found = {}
    for name in HOST_WATCH:
        path = Path(name)
        if path.is_dir():
            found[name] = " ".join(sorted(p.name for p in path.iterdir()))
        elif path.exists():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[name] = "absent"
    return found


@dataclass
class DispatchLab(MaasView):
    """One test's world: the dispatcher lab plus the stand-ins it talks to."""

    mode: str
    lab: DispatcherLab
    maas: Any  # maas_sim_factory handle
    fleet: SSHDFleet
    paddles: LockServer
    hostnames: list[str]

    def fqdn(self, hostname: str) -> str:
        return f"{hostname}.{LAB_DOMAIN}"

    def release_erase_flags(self) -> dict[str, set[str]]:
        """Per hostname, the erase flags (form fields set true) of its last release request."""
        hostnames = {self.sim.system_id(h): h for h in self.hostnames}
        flags: dict[str, set[str]] = {}
        for r in self.sim.requests(op="release", method="POST"):
            if r.system_id in hostnames:
                flags[hostnames[r.system_id]] = {
                    name for name in ("erase", "quick_erase", "secure_erase")
                    if (r.param(name) or "").lower() in ("true", "1", "on", "yes")}
        return flags


@pytest.fixture(scope="module")
def beanstalkd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Beanstalkd]:
    queue = Beanstalkd(tmp_path_factory.mktemp("beanstalkd")).start()
    yield queue
    queue.stop()


@pytest.fixture
def host_unchanged() -> Iterator[None]:
    """Fails the test if a job's commands changed the host (nodes must be sandboxed)."""
    before = host_fingerprint()
    yield
    assert host_fingerprint() == before


@pytest.fixture
def dispatch_lab(
    tmp_path: Path,
    e2e_support: Any,
    beanstalkd: Beanstalkd,
    maas_sim_factory: Callable[..., Any],
    ssh_keypair: Any,
    host_unchanged: None,
) -> Iterator[Callable[..., DispatchLab]]:
    """`dispatch_lab(mode, machines=3, suites=None, clock=None, timings=None,
    **maas_overrides)`; `timings` change the simulator's FAST_TIMINGS (e.g. node_timeout)."""
    cleanups: list[Callable[[], None]] = []  # run last first
    leftovers: list[int] = []

    def stop_lab(lab: DispatcherLab) -> None:
        lab.stop()
        leftovers.extend(lab.lab.processes())

    def build(mode: str, machines: int = 3, suites: Any = None, clock: Any = None,
              timings: Any = None, **maas_overrides: Any) -> DispatchLab:
        from teuthology_maas.simulator import ScaledClock

        machine_type = f"e2e{uuid.uuid4().hex[:8]}"  # its own beanstalk tube
        hostnames = [f"smithi{i:03d}" for i in range(1, machines + 1)]
        ssh_root = tmp_path / "ssh-root"
        fleet = SSHDFleet.started(hostnames, ssh_root, workdir=tmp_path / "sshd",
                                  keypair=ssh_keypair, sandbox=True)
        paddles = LockServer(
            {"name": f"{h}.{LAB_DOMAIN}", "machine_type": machine_type} for h in hostnames)
        cleanups.append(fleet.stop)
        handle = paddles.serve()
        cleanups.append(handle.stop)
        maas = maas_sim_factory(
            inventory_dict={
                "machines": [{"hostname": h, "tags": [machine_type], "pool": machine_type,
                              "ssh_port": fleet.port_of(h)} for h in hostnames],
                "timings": {**FAST_TIMINGS, **(timings or {})},
            },
            clock=clock or ScaledClock(FAST_SCALE), ssh_root=ssh_root)
        lab = DispatcherLab.create(
            tmp_path / "lab", e2e_support, queue=beanstalkd, machine_type=machine_type,
            suites=suites, mode=mode, lab_domain=LAB_DOMAIN, lock_server=handle.url,
            ssh_key=fleet.private_key_path, ssh_config=fleet.ssh_config_path,
            maas={"api_url": maas.api_url, "api_key": maas.key_for("teuthology"),
                  "machine_types": [machine_type], "ssh_keys": [fleet.public_key],
                  "erase": "quick", "poll_interval": 0.2, "poll_min_interval": 0.05,
                  "ssh_timeout": 60, **maas_overrides})
        cleanups.append(lambda: stop_lab(lab))
        return DispatchLab(mode, lab, maas, fleet, paddles, hostnames)

    yield build
    for cleanup in reversed(cleanups):
        cleanup()
    assert leftovers == [], f"processes of the lab still running after stop(): {leftovers}"
