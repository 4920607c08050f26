"""Read-only access to teuthology's lock server (paddles) for `reconcile`.

Only GETs: reconcile compares paddles with MAAS but never changes a paddles lock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from teuthology_maas.cli._common import Context, short_hostname
from teuthology_maas.errors import ConfigError, MaasUnavailable


class LockServerUnavailable(MaasUnavailable):
    """The lock server could not be reached or did not answer as paddles does."""


@dataclass(frozen=True)
class PaddlesNode:
    name: str  # the FQDN, as paddles stores it
    machine_type: str | None
    locked: bool
    locked_by: str | None
    description: str | None

    @property
    def hostname(self) -> str:
        return short_hostname(self.name)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PaddlesNode:
        return cls(
            name=str(data.get("name", "")),
            machine_type=data.get("machine_type"),
            locked=bool(data.get("locked")),
            locked_by=data.get("locked_by"),
            description=data.get("description"),
        )


def lock_server_from_config(config_file: Path | None) -> str:
    """teuthology's top-level `lock_server` key from the same file the maas: section came from."""
    if config_file is None or not config_file.is_file():
        raise ConfigError(
            "no lock server: pass --lock-server URL or set lock_server in the teuthology "
            "config file",
            key="lock_server",
        )
    try:
        document = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {config_file}: {exc}", key="lock_server") from None
    url = document.get("lock_server") if isinstance(document, Mapping) else None
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"{config_file} has no lock_server; pass --lock-server URL (e.g. "
            "http://paddles.example.com:8080)",
            key="lock_server",
        )
    return url.strip()


class PaddlesReader:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/") + "/"
        self._timeout = timeout
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        url = self.url + path
        try:
            response = self._session.get(url, params=params, timeout=self._timeout)
        except requests.RequestException as exc:
            raise LockServerUnavailable(f"lock server {self.url} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise LockServerUnavailable(
                f"lock server {self.url}: GET {path} answered {response.status_code}: "
                f"{response.text[:200]}",
                http_status=response.status_code,
            )
        try:
            return response.json()
        except ValueError:
            raise LockServerUnavailable(
                f"lock server {self.url}: GET {path} did not answer JSON; is this paddles?"
            ) from None

    def nodes(self, machine_types: Sequence[str]) -> list[PaddlesNode]:
        params = {"machine_type": "|".join(machine_types)} if machine_types else None
        data = self._get("nodes/", params)
        if not isinstance(data, list):
            raise LockServerUnavailable(f"lock server {self.url}: nodes/ is not a list")
        return [PaddlesNode.from_json(item) for item in data if isinstance(item, Mapping)]

    def node(self, name: str) -> PaddlesNode:
        data = self._get(f"nodes/{name}/")
        if not isinstance(data, Mapping):
            raise LockServerUnavailable(f"lock server {self.url}: nodes/{name}/ is not a node")
        return PaddlesNode.from_json(data)


def paddles_nodes(
    ctx: Context, url: str | None, machine_types: Sequence[str]
) -> dict[str, PaddlesNode]:
    """paddles' nodes of `machine_types` by short hostname, from `url` or the config's
    lock_server (ConfigError when there is none)."""
    reader = PaddlesReader(
        url or lock_server_from_config(ctx.config_file()), timeout=ctx.config().http_timeout
    )
    try:
        return {node.hostname: node for node in reader.nodes(machine_types)}
    finally:
        reader.close()
