"""Loopback sshd fixtures: `ssh_keypair` (one client key for the session) and `sshd_fleet`, a
factory starting a real sshd per hostname (see teuthology_maas.testing.sshd)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from teuthology_maas.testing.sshd import KeyPair, SSHDFleet


@pytest.fixture(scope="session")
def ssh_keypair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return KeyPair.generate(tmp_path_factory.mktemp("ssh-client-key"))


@pytest.fixture
def sshd_fleet(
    tmp_path_factory: pytest.TempPathFactory, ssh_keypair: KeyPair
) -> Iterator[Callable[..., SSHDFleet]]:
    """`sshd_fleet(hostnames, ssh_root, keypair=None) -> SSHDFleet`, stopped after the test."""
    fleets: list[SSHDFleet] = []

    def start(
        hostnames: Iterable[str], ssh_root: Path | str, *, keypair: KeyPair | None = None
    ) -> SSHDFleet:
        fleet = SSHDFleet.started(
            hostnames,
            ssh_root,
            workdir=tmp_path_factory.mktemp("sshd"),
            keypair=keypair or ssh_keypair,
        )
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in fleets:
        fleet.stop()
