"""After MAAS says Deployed: prove the node is usable the way teuthology will use it.

Teuthology logs in over SSH right after create() returns (ssh-keyscan, `uname -m`,
/etc/os-release), so create() only succeeds once the same SSH login works and the node runs the
requested OS.
"""

from __future__ import annotations

from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import SSHNotReady
from teuthology_maas.node import ssh


def verify_ssh(fqdn: str, config: MaasConfig, *, timeout: float | None = None) -> dict[str, str]:
    """Wait for SSH (and the sentinel file), then return the node's /etc/os-release."""
    limit = config.ssh_timeout if timeout is None else timeout
    target = ssh.SSHTarget.resolve(fqdn, config)
    try:
        ssh.wait_for_ssh(
            target,
            timeout=limit,
            sentinel_file=config.sentinel_file,
            resolve_grace=config.ssh_resolve_grace,
        )
        return ssh.read_os_release(target, timeout=limit)
    except SSHNotReady:
        raise
    except Exception as exc:
        raise SSHNotReady(
            f"SSH to {fqdn} failed: {type(exc).__name__}: {exc}", machine=fqdn
        ) from exc


def os_mismatch(os_release: dict[str, str], os_type: str, os_version: str) -> str | None:
    """None when the node runs the requested OS, else what it runs instead."""
    if ssh.os_matches(os_release, os_type, os_version):
        return None
    found = f"{os_release.get('ID', '?')} {os_release.get('VERSION_ID', '?')}"
    return (
        f"runs {found} according to /etc/os-release over SSH, not the requested "
        f"{os_type} {os_version}"
    )
