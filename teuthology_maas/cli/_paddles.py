"""Where the CLI finds teuthology's lock server; `teuthology.paddles` reads it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from teuthology_maas.errors import ConfigError

__all__ = ["lock_server_from_config"]


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
            "http://paddles.example.com:8080/)",
            key="lock_server",
        )
    return url.strip()
