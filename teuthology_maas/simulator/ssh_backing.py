"""Files a loopback sshd harness serves as if they were on the deployed machine.

When a machine reaches Deployed the simulator writes, under `ssh_root/<hostname>/`:
`authorized_keys` (from the cloud-config user_data), `os-release` (the deployed image's) and
`boot-finished` (cloud-init's sentinel). When the machine leaves Deployed they are removed,
so a released machine stops accepting the test key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from teuthology_maas.simulator._images import format_os_release

log = logging.getLogger(__name__)
FILES = ("authorized_keys", "os-release", "boot-finished")


def authorized_keys_from_user_data(user_data: bytes | None) -> list[str]:
    """Top-level ssh_authorized_keys plus those of the users the cloud-config creates."""
    if not user_data:
        return []
    text = user_data.decode("utf-8", errors="replace")
    if not text.lstrip().startswith("#cloud-config"):
        return []
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        log.warning("user_data is not valid YAML; no SSH keys installed: %s", exc)
        return []
    if not isinstance(document, Mapping):
        return []
    keys: list[str] = []

    def take(source: Mapping[str, Any]) -> None:
        for name in ("ssh_authorized_keys", "ssh-authorized-keys"):
            value = source.get(name)
            if isinstance(value, str):
                keys.append(value)
            elif isinstance(value, list):
                keys.extend(str(k) for k in value)

    take(document)
    users = document.get("users")
    if isinstance(users, list):
        for user in users:
            if isinstance(user, Mapping):
                take(user)
    seen: dict[str, None] = {}
    for key in keys:
        seen.setdefault(key.strip(), None)
    return [k for k in seen if k]


class SshBacking:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def directory(self, hostname: str) -> Path:
        return self.root / hostname

    def deployed(
        self,
        hostname: str,
        *,
        user_data: bytes | None,
        os_release: Mapping[str, str],
        at: float,
    ) -> None:
        directory = self.directory(hostname)
        directory.mkdir(parents=True, exist_ok=True)
        keys = authorized_keys_from_user_data(user_data)
        _write(directory / "authorized_keys", "".join(f"{k}\n" for k in keys), mode=0o600)
        _write(directory / "os-release", format_os_release(os_release))
        stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(at))
        _write(directory / "boot-finished", f"42.17 - {stamp} - v. 24.4.1\n")

    def cleared(self, hostname: str) -> None:
        directory = self.directory(hostname)
        for name in FILES:
            (directory / name).unlink(missing_ok=True)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    # Write then rename, so sshd never reads a half-written authorized_keys.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(mode)
    temporary.replace(path)
