"""End-to-end fixtures: the real teuthology 1.3.0 commands as subprocesses against the MAAS
simulator, the paddles lock server double and one real sshd per machine.

What runs for real and what is adapted (name resolution for ssh-keyscan, and the SSH port
teuthology ignores in its ssh_config) is described in teuthology_maas.testing.teuthology_lab.
Each scenario runs in two modes: "activation" (stock teuthology + our .pth hook) and "in-tree"
(hook off, teuthology's maas.py replaced by the module in docs/in-tree-patch.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._maas_view import MaasView
from teuthology_maas.testing.lockserver import LockServer
from teuthology_maas.testing.teuthology_lab import MODES, Finished, Support, TeuthologyLab

REPO = Path(__file__).resolve().parent.parent
LAB_DOMAIN = "e2e.test"
MACHINE_TYPE = "smithi"
OWNER = "e2e@control"  # teuthology-lock --owner, and paddles' locked_by
# Simulated seconds per real second: MAAS's 10-minute deployment takes a fraction of a second.
TIME_FACTOR = 3000.0

__all__ = ["LAB_DOMAIN", "MACHINE_TYPE", "MODES", "OWNER", "E2ELab", "Finished"]


@dataclass
class E2ELab(MaasView):
    """One scenario's world."""

    mode: str
    lab: TeuthologyLab
    maas: Any  # maas_sim_factory handle: .sim, .api_url, .api_key, .key_for(user)
    fleet: Any  # teuthology_maas.testing.sshd.SSHDFleet
    paddles: LockServer
    hostnames: list[str]

    def fqdn(self, hostname: str) -> str:
        return self.lab.fqdn(hostname)

    def run(self, command: str, *args: str) -> Finished:
        return self.lab.run(command, *args)

    def lock_in_paddles(self, hostname: str, *, owner: str = OWNER,
                        description: str | None = None) -> None:
        self.paddles.add_node(self.fqdn(hostname), MACHINE_TYPE, locked=True, locked_by=owner,
                              description=description)


@pytest.fixture(scope="session")
def e2e_support(tmp_path_factory: pytest.TempPathFactory) -> Support:
    return Support.write(tmp_path_factory.mktemp("e2e-support"),
                         in_tree_doc=REPO / "docs" / "in-tree-patch.md")


@pytest.fixture
def e2e_lab(
    tmp_path: Path,
    e2e_support: Support,
    maas_sim_factory: Callable[..., Any],
    sshd_fleet: Callable[..., Any],
) -> Iterator[Callable[..., E2ELab]]:
    """`e2e_lab(mode, machines=4, machine_fields={hostname: {...}}, maas_user="teuthology",
    **maas_overrides)`: the maas: section uses `maas_user`'s API key."""
    from teuthology_maas.simulator import ScaledClock

    handles: list[Any] = []

    def build(mode: str, machines: int = 4,
              machine_fields: Mapping[str, Mapping[str, Any]] | None = None,
              maas_user: str = "teuthology", **maas_overrides: Any) -> E2ELab:
        hostnames = [f"{MACHINE_TYPE}{i:03d}" for i in range(1, machines + 1)]
        ssh_root = tmp_path / "ssh-root"
        fleet = sshd_fleet(hostnames, ssh_root)
        inventory = {"machines": [
            {"hostname": h, "tags": [MACHINE_TYPE], "pool": MACHINE_TYPE,
             "ssh_port": fleet.port_of(h), **(machine_fields or {}).get(h, {})}
            for h in hostnames
        ]}
        maas = maas_sim_factory(inventory_dict=inventory, clock=ScaledClock(TIME_FACTOR),
                                ssh_root=ssh_root)
        paddles = LockServer(
            {"name": f"{h}.{LAB_DOMAIN}", "machine_type": MACHINE_TYPE} for h in hostnames
        )
        handle = paddles.serve()
        handles.append(handle)
        maas_section = {
            "api_url": maas.api_url,
            "api_key": maas.key_for(maas_user),
            "machine_types": [MACHINE_TYPE],
            "poll_interval": 0.2,
            "poll_min_interval": 0.05,
            "ssh_timeout": 30,
            "ssh_keys": [fleet.public_key],
            "erase": "quick",
            **maas_overrides,
        }
        lab = TeuthologyLab.create(
            tmp_path / "lab", e2e_support, mode=mode, lab_domain=LAB_DOMAIN,
            lock_server=handle.url, maas=maas_section, ssh_key=fleet.private_key_path,
            ssh_config=fleet.ssh_config_path,
        )
        return E2ELab(mode, lab, maas, fleet, paddles, hostnames)

    yield build
    for handle in handles:
        handle.stop()
