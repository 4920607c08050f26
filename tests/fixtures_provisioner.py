"""`lab`: a simulated MAAS (over loopback HTTP) whose machines are backed by real loopback sshd
servers, plus a MaasConfig/MaasClient wired to both, for the provisioner's tests."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from teuthology_maas.config import MaasConfig
from teuthology_maas.endpoint import forget_endpoints
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.simulator import ScaledClock
from teuthology_maas.testing.fast_timings import FAST_SCALE, FAST_TIMINGS
from teuthology_maas.testing.sshd import KeyPair, SSHDFleet


@dataclass
class Lab:
    handle: Any  # the maas_sim handle: .sim, .url, .config(), .key_for()
    config: MaasConfig
    client: MaasClient
    ssh: SSHDFleet | None = None
    clients: list[MaasClient] = field(default_factory=list)

    @property
    def sim(self) -> Any:
        return self.handle.sim

    def provisioner(
        self,
        name: str = "smithi001",
        os_type: str = "ubuntu",
        os_version: str = "22.04",
        *,
        config: MaasConfig | None = None,
        client: MaasClient | None = None,
        **kwargs: Any,
    ) -> MaasProvisioner:
        return MaasProvisioner(
            name,
            os_type,
            os_version,
            config=config or self.config,
            client=client or self.client,
            **kwargs,
        )

    def reconfigured(self, **overrides: Any) -> MaasConfig:
        """The lab's config with some `maas:` keys changed (ssh wiring kept)."""
        return self.handle.config(**{**self._ssh_overrides(), **overrides})

    def client_as(self, username: str) -> MaasClient:
        config = self.handle.config(api_key=self.handle.key_for(username))
        client = MaasClient.from_config(config)
        self.clients.append(client)
        return client

    def state(self, hostname: str) -> dict[str, Any]:
        """The machine as MAAS (the admin) sees it now."""
        return dict(self.sim.machine(hostname))

    def mark(self) -> int:
        return len(self.sim.request_log)

    def posts(self, hostname: str | None = None, since: int = 0) -> list[str]:
        """The ops of state-changing requests since `mark()`, optionally for one machine (plus
        collection-level ones such as allocate, which MAAS addresses by form field)."""
        system_id = self.state(hostname)["system_id"] if hostname else None
        return [
            str(record.op)
            for record in list(self.sim.request_log)[since:]
            if record.method in ("POST", "PUT", "DELETE")
            and (system_id is None or record.system_id in (system_id, None))
        ]

    def _ssh_overrides(self) -> dict[str, Any]:
        if self.ssh is None:
            return {}
        return {
            "ssh_config": str(self.ssh.ssh_config_path),
            "ssh_keys": [self.ssh.public_key],
            "ssh_private_key": str(self.ssh.private_key_path),
        }


@pytest.fixture
def lab_factory(
    maas_sim_factory: Callable[..., Any],
    sshd_fleet: Callable[..., SSHDFleet],
    ssh_keypair: KeyPair,
    tmp_path: Path,
) -> Iterator[Callable[..., Lab]]:
    """`lab_factory(machines, *, ssh=True, images=None, timings=None, **maas_overrides)`.

    `machines` are inventory entries (hostname, status, owner, ...); with `ssh` each gets a
    loopback sshd and the config points the library at it (ssh_config, keys)."""
    labs: list[Lab] = []

    def make(
        machines: Sequence[Mapping[str, Any]] = ({"hostname": "smithi001"},),
        *,
        ssh: bool = True,
        images: Sequence[Mapping[str, Any]] | None = None,
        timings: Mapping[str, Any] | None = None,
        clock: Any = None,
        **overrides: Any,
    ) -> Lab:
        ssh_root = tmp_path / f"ssh-root-{len(labs)}"
        ssh_root.mkdir()
        entries = [dict(m) for m in machines]
        fleet_ = sshd_fleet([m["hostname"] for m in entries], ssh_root) if ssh else None
        for entry in entries:
            entry.setdefault("architecture", "amd64/generic")
            if fleet_ is not None:
                entry.setdefault("ssh_port", fleet_.port_of(entry["hostname"]))
        inventory: dict[str, Any] = {
            "machines": entries,
            "timings": {**FAST_TIMINGS, **(timings or {})},
        }
        if images is not None:
            inventory["images"] = list(images)
        handle = maas_sim_factory(
            inventory, clock=clock or ScaledClock(FAST_SCALE), ssh_root=ssh_root
        )
        lab = Lab(handle=handle, config=None, client=None, ssh=fleet_)  # type: ignore[arg-type]
        defaults = {
            "deploy_timeout": 20.0,
            "release_timeout": 20.0,
            "abort_timeout": 10.0,
            "ssh_timeout": 10.0,
            "lookup_retries": 1,
            # Without sshd the key is never used, but the templates need one to inject.
            "ssh_keys": [ssh_keypair.public_key],
        }
        lab.config = handle.config(**{**defaults, **lab._ssh_overrides(), **overrides})
        lab.client = MaasClient.from_config(lab.config)
        lab.clients.append(lab.client)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        for client in lab.clients:
            client.close()
    # Each test has its own simulator: pollers must not outlive it.
    forget_endpoints()


@contextmanager
def interrupt_after(
    seconds: float, exc_type: type[BaseException] = KeyboardInterrupt
) -> Iterator[None]:
    """Raise `exc_type` in the main thread after `seconds`, as SIGINT/SIGTERM handlers do."""

    def handler(signum: int, frame: object) -> None:
        raise exc_type()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
