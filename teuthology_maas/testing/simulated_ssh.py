"""A stand-in for SSH readiness that reads the simulator's per-node files instead of logging in.

With `ssh_root`, the simulator writes what a login would find on each deployed node:
authorized_keys, boot-finished (the cloud-init sentinel) and os-release.
`verify_ssh_from_files` checks those as `node.ssh.verify_ssh` checks a real node, for runs of
hundreds of nodes where an sshd per node would cost more than the run (the fault matrix, the
soak).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import SSHNotReady

VerifySSH = Callable[..., dict[str, str]]
ProbeReady = Callable[[str, MaasConfig], bool]


def probe_from_files(ssh_root: Path) -> ProbeReady:
    """probe_ready(fqdn, config) over the files under `ssh_root`/<hostname>: True once our key
    is authorized and (when the config names a sentinel file) boot has finished."""

    root = str(ssh_root)

    def probe(fqdn: str, config: MaasConfig) -> bool:
        # Most probes find nothing yet: the cheapest check first (one stat), as a real probe
        # fails fastest on a node that does not answer at all.
        node = os.path.join(root, fqdn.split(".", 1)[0])
        if config.sentinel_file and not os.path.exists(os.path.join(node, "boot-finished")):
            return False
        keys = _read(Path(node, "authorized_keys")) or ""
        return any(key.split()[1] in keys for key in config.ssh_keys)

    return probe


def verify_ssh_from_files(ssh_root: Path, *, boot_time: float = 0.0) -> VerifySSH:
    """verify_ssh(fqdn, config, *, timeout=None, watch=None) over the files under
    `ssh_root`/<hostname>: SSHNotReady until our key is authorized and (when the config names
    a sentinel file) boot has finished; then the node's os-release as a dict. `boot_time`
    (real seconds) is spent first, calling `watch` as the real SSH wait does between its
    attempts, so that the node can change hands while create() waits for SSH."""

    def verify(
        fqdn: str,
        config: MaasConfig,
        *,
        timeout: float | None = None,
        watch: Callable[[], None] | None = None,
    ) -> dict[str, str]:
        deadline = time.monotonic() + boot_time
        while True:
            if watch is not None:
                watch()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, 0.05))
        node = ssh_root / fqdn.split(".", 1)[0]
        keys = _read(node / "authorized_keys") or ""
        if not any(key.split()[1] in keys for key in config.ssh_keys):
            raise SSHNotReady(f"SSH to {fqdn} failed: our key is not authorized", machine=fqdn)
        if config.sentinel_file and _read(node / "boot-finished") is None:
            raise SSHNotReady(f"{fqdn}: {config.sentinel_file} never appeared", machine=fqdn)
        text = _read(node / "os-release")
        if text is None:
            raise SSHNotReady(f"{fqdn}: /etc/os-release is missing", machine=fqdn)
        pairs = (line.partition("=") for line in text.splitlines())
        return {k.strip(): v.strip().strip('"') for k, _, v in pairs if k}

    return verify


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
