"""Where and as whom to log in to a node over SSH (`SSHTarget.resolve`).

Where to connect comes from the config's `ssh_config` file (HostName, Port, User, IdentityFile,
IdentitiesOnly, ProxyCommand, ConnectTimeout), then `ssh_user` / `ssh_private_key`.

Nothing that came from a job reaches ssh or paramiko as an option: the node name is checked
as a hostname (so `%h` in a lab's `ProxyCommand ssh -W %h:%p jump` expands to a hostname and
nothing else), and so are the host, user and port the ssh_config maps it to.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paramiko

from teuthology_maas import names
from teuthology_maas.errors import ConfigError, InvalidNodeName

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "SSHSettings", "SSHTarget"]

DEFAULT_CONNECT_TIMEOUT = 30.0
_LOGIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")


class SSHSettings(Protocol):
    """The MaasConfig attributes this module reads."""

    @property
    def ssh_user(self) -> str: ...
    @property
    def ssh_private_key(self) -> str | None: ...
    @property
    def ssh_config(self) -> str | None: ...


@dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to log in. `name` is the node as teuthology names it; `hostname` and
    `port` are what is actually dialled (they differ when an ssh_config maps them)."""

    name: str
    hostname: str
    port: int = 22
    user: str = "ubuntu"
    key_filenames: tuple[str, ...] = ()
    identities_only: bool = False
    proxy_command: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @classmethod
    def resolve(cls, fqdn: str, cfg: SSHSettings) -> SSHTarget:
        """Apply the config's ssh_config file (if any) to `fqdn`; its User and IdentityFile
        win over ssh_user, and ssh_private_key is tried before its IdentityFiles. A short name
        gets the config's lab_domain, as teuthology names nodes by FQDN."""
        fqdn = names.parse_node_name(fqdn).host
        lab_domain = getattr(cfg, "lab_domain", None)
        if lab_domain and "." not in fqdn:
            fqdn = names.parse_node_name(f"{fqdn}.{lab_domain}").host
        options = _lookup_ssh_config(cfg.ssh_config, fqdn)
        keys: list[str] = []
        if cfg.ssh_private_key:
            keys.append(str(Path(cfg.ssh_private_key).expanduser()))
        identity_files = options.get("identityfile") or []
        for identity in [identity_files] if isinstance(identity_files, str) else identity_files:
            path = Path(identity).expanduser()
            # OpenSSH skips IdentityFile entries that do not exist; so do we, loudly.
            if path.is_file():
                keys.append(str(path))
            else:
                log.warning("ssh_config IdentityFile %s for %s does not exist; skipped", path, fqdn)
        try:
            port = int(options.get("port", 22))
            connect_timeout = float(options.get("connecttimeout", DEFAULT_CONNECT_TIMEOUT))
        except ValueError as exc:
            raise ConfigError(
                f"ssh_config {cfg.ssh_config} for {fqdn}: {exc}; expected a numeric Port and "
                "ConnectTimeout",
                key="ssh_config",
            ) from None
        hostname = str(options.get("hostname", fqdn))
        user = str(options.get("user") or cfg.ssh_user)
        _check_dialled(cfg.ssh_config, fqdn, hostname, user, port)
        return cls(
            name=fqdn,
            hostname=hostname,
            port=port,
            user=user,
            key_filenames=tuple(dict.fromkeys(keys)),
            identities_only=str(options.get("identitiesonly", "no")).lower() == "yes",
            proxy_command=str(options["proxycommand"]) if options.get("proxycommand") else None,
            connect_timeout=connect_timeout,
        )

    def describe(self) -> str:
        where = f"{self.user}@{self.name}"
        if (self.hostname, self.port) != (self.name, 22):
            where += f" ({self.hostname} port {self.port})"
        return where


def _check_dialled(source: str | None, fqdn: str, hostname: str, user: str, port: int) -> None:
    """What is dialled must be a hostname or address, a login name and a port: never
    something ssh (run by a ProxyCommand) could read as an option."""
    problem = None
    if not _is_address(hostname) and not _is_hostname(hostname):
        problem = f"HostName {hostname[:100]!r} is not a hostname or address"
    if not _LOGIN.fullmatch(user):
        problem = f"user {user!r} is not a login name"
    if not 0 < port < 65536:
        problem = f"port {port} is not a TCP port"
    if problem is not None:
        where = f"ssh_config {source}" if source else "maas: ssh_user"
        raise ConfigError(
            f"{where} for {fqdn}: {problem}; refused, it would reach ssh as an option",
            key="ssh_config",
        )


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_hostname(text: str) -> bool:
    try:
        return "@" not in text and bool(names.parse_node_name(text).host == text.rstrip("."))
    except InvalidNodeName:
        return False


def _lookup_ssh_config(path: str | None, host: str) -> Mapping[str, Any]:
    if not path:
        return {}
    file = Path(path).expanduser()
    try:
        config = paramiko.SSHConfig.from_path(str(file))
        return dict(config.lookup(host))
    except (OSError, UnicodeDecodeError, paramiko.ConfigParseError) as exc:
        raise ConfigError(
            f"cannot use ssh_config {file}: {exc}; expected a readable OpenSSH client config",
            key="ssh_config",
        ) from None
