"""The simulator's machines as nodes that answer over SSH by name (`teuthology-maas simulator
--with-nodes`).

One loopback sshd per machine (teuthology_maas.testing.sshd), serving the files the simulator
writes when the machine is deployed (the keys from its user_data, its os-release, cloud-init's
sentinel); an ssh_config mapping `<host>` and `<host>.<lab_domain>` to each; the paddles lock
server double; and a teuthology config file pointing at all of them. With that file in
TEUTHOLOGY_CONFIG, `teuthology-maas deploy`, `release`, `reconcile` and the library's
`MaasProvisioner` (create, is_ready, release) work as they do in a lab.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from teuthology_maas.testing.sshd import SSHD_PATH, SSHDFleet

LAB_DOMAIN = "sim.test"  # .test never resolves in real DNS: only the ssh_config reaches them


class NodesUnavailable(RuntimeError):
    """The loopback nodes cannot be started (no sshd on this machine)."""


class MachineLike(Protocol):
    """What is read of a machine of the simulator's inventory (a MachineSpec)."""

    @property
    def hostname(self) -> str: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def pool(self) -> str: ...


def machine_types_of(machines: Iterable[MachineLike]) -> list[str]:
    """The machine types the written config names: each machine's first tag, or its pool."""
    kinds: dict[str, None] = {}
    for machine in machines:
        if machine.tags:
            kinds[machine.tags[0]] = None
        elif machine.pool and machine.pool != "default":
            kinds[machine.pool] = None
    return list(kinds)


@dataclass
class NodesLab:
    """The nodes, the lock server double and the config around one simulator."""

    workdir: Path
    owned: bool  # a temporary directory of our own, removed by stop()
    fleet: SSHDFleet
    lab_domain: str = LAB_DOMAIN
    paddles: Any = None  # LockServerHandle once started
    config_path: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    @classmethod
    def start(cls, hostnames: Sequence[str], workdir: str | None) -> NodesLab:
        """Start an sshd per machine (`port_of` tells its port, for the simulator to show the
        machine at 127.0.0.1)."""
        if not os.access(SSHD_PATH, os.X_OK):
            raise NodesUnavailable(
                f"{SSHD_PATH} not found: --with-nodes needs Debian's openssh-server (as root: "
                "scripts/ensure-system-packages, or apt-get install openssh-server)"
            )
        owned = workdir is None
        root = Path(tempfile.mkdtemp(prefix="teuthology-maas-sim-")) if owned else Path(
            str(workdir)
        ).expanduser().absolute()
        root.mkdir(parents=True, exist_ok=True)
        fleet = SSHDFleet(list(hostnames), root / "nodes", workdir=root)
        lab = cls(root, owned, fleet)
        try:
            fleet.start()
        except BaseException:
            lab.stop()
            raise
        return lab

    def port_of(self, hostname: str) -> int:
        return self.fleet.port_of(hostname)

    @property
    def ssh_root(self) -> Path:
        return self.fleet.ssh_root

    @property
    def ssh_config_path(self) -> Path:
        return self.fleet.ssh_config_path

    def serve_paddles(self, machines: Sequence[MachineLike]) -> str:
        """Start the paddles lock server double with every machine as an unlocked node."""
        from teuthology_maas.testing.lockserver import LockServer

        kinds = machine_types_of(machines)
        nodes = []
        for machine in machines:
            kind = next((t for t in machine.tags if t in kinds), machine.pool)
            nodes.append({"name": f"{machine.hostname}.{self.lab_domain}", "machine_type": kind})
        self.paddles = LockServer(nodes).serve()
        return str(self.paddles.url)

    def write_config(self, *, api_url: str, api_key: str, machine_types: list[str],
                     lock_server: str) -> Path:
        """The teuthology config file for the command, the library and teuthology."""
        document: dict[str, Any] = {
            "lab_domain": self.lab_domain,
            "lock_server": lock_server,
            "maas": {
                "api_url": api_url,
                "api_key": api_key,
                "machine_types": machine_types,
                "ssh_config": str(self.ssh_config_path),
                "ssh_keys": [self.fleet.public_key],
                "ssh_private_key": str(self.fleet.private_key_path),
                "poll_interval": 2,
                "poll_min_interval": 0.5,
                "ssh_timeout": 120,
            },
        }
        path = self.workdir / "teuthology.yaml"
        path.write_text(
            "# Written by `teuthology-maas simulator --with-nodes`; valid while it runs.\n"
            + yaml.safe_dump(document, sort_keys=False),
            encoding="utf-8",
        )
        self.config_path = path
        return path

    def describe(self) -> Mapping[str, Any]:
        return {
            "workdir": str(self.workdir),
            "config": str(self.config_path) if self.config_path else None,
            "ssh_config": str(self.ssh_config_path),
            "lock_server": str(self.paddles.url) if self.paddles is not None else None,
            "lab_domain": self.lab_domain,
            "nodes": {host: self.fleet.port_of(host) for host in self.fleet.hostnames},
        }

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.paddles is not None:
            self.paddles.stop()
        self.fleet.stop()
        if self.owned:
            shutil.rmtree(self.workdir, ignore_errors=True)
