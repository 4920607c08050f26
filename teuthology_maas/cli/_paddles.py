"""Where the CLI finds teuthology's lock server; `teuthology.paddles` reads it."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from teuthology_maas.cli._common import Context
from teuthology_maas.errors import ConfigError
from teuthology_maas.teuthology.paddles import PaddlesNode, PaddlesReader

__all__ = ["lock_server_from_config", "paddles_nodes"]


def add_lock_server_option(
    parser: argparse.ArgumentParser,
    help: str = "paddles URL (default: lock_server from the teuthology config file)",
) -> None:
    """`--lock-server URL`; without it, `lock_server_from_config` finds paddles."""
    parser.add_argument("--lock-server", metavar="URL", help=help)


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


def paddles_nodes(
    ctx: Context, url: str | None, machine_types: Sequence[str]
) -> dict[str, PaddlesNode]:
    """paddles' nodes of `machine_types` by short hostname, from `url` or the config's
    lock_server (ConfigError when there is none)."""
    with PaddlesReader(
        url or lock_server_from_config(ctx.config_file()), timeout=ctx.config().http_timeout
    ) as reader:
        return {node.hostname: node for node in reader.nodes(machine_types)}
