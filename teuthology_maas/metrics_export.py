"""Reading the metrics back out: the exposition text Prometheus scrapes, from the files the
processes of a host wrote (multiprocess mode), for `teuthology-maas metrics` when teuthology's
own exporter is not the one serving them.

Only our families (`teuthology_maas_*`) are exported: teuthology's own metrics in the same
directory are teuthology-exporter's to serve, and serving them twice would count them twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from teuthology_maas.errors import ConfigError, MissingExtra
from teuthology_maas.metrics import INSTALL_HINT, MULTIPROC_ENV, PREFIX

__all__ = ["TEUTHOLOGY_DIR", "default_directory", "exposition", "registry_for", "serve"]

# Where teuthology's processes record: teuthology/exporter.py sets PROMETHEUS_MULTIPROC_DIR to
# this when it is imported, whatever the environment said.
TEUTHOLOGY_DIR = Path("~/.cache/teuthology-exporter")


def default_directory() -> Path:
    """$PROMETHEUS_MULTIPROC_DIR, else teuthology's directory."""
    given = os.environ.get(MULTIPROC_ENV)
    return Path(given) if given else TEUTHOLOGY_DIR.expanduser()


class _Ours:
    """A collector passing on only our families of another collector's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def collect(self) -> Iterator[Any]:
        for family in self.inner.collect():
            if family.name.startswith(PREFIX):
                yield family


def registry_for(directory: Path) -> Any:
    """A registry holding our metrics as written by every process into `directory`."""
    try:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector
    except ImportError as exc:
        raise MissingExtra(f"metrics need prometheus_client: {INSTALL_HINT}") from exc
    if not directory.is_dir():
        raise ConfigError(
            f"no metrics directory {directory}: teuthology creates it when teuthology-exporter "
            f"runs; processes record into it when {MULTIPROC_ENV} names it (docs/metrics.md)",
            key=MULTIPROC_ENV,
        )
    registry = CollectorRegistry(auto_describe=False)
    collector = MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(_Ours(collector))
    return registry


def exposition(directory: Path) -> bytes:
    """The text format Prometheus scrapes, as of now."""
    from prometheus_client import generate_latest

    return bytes(generate_latest(registry_for(directory)))


def serve(directory: Path, port: int, address: str = "0.0.0.0") -> Any:
    """Serve /metrics on `port` from a thread; returns the server (`.shutdown()` stops it)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=address, registry=registry_for(directory))
    return server
