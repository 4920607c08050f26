"""`config_for`: a teuthology config file for a simulator handle, for the command's tests;
`paddles`: the paddles lock-server double with smithi001..006 (unlocked) on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._cli_support import write_config
from teuthology_maas.testing.lockserver import LockServer

PADDLES_DOMAIN = "front.example.com"


@pytest.fixture
def config_for(tmp_path: Path, ssh_keypair: Any) -> Callable[..., Path]:
    """make(handle, lock_server=None, **maas): the file, with the session's SSH key injected
    unless `ssh_keys` is given, and paddles at `lock_server` when given."""

    def make(handle: Any, lock_server: str | None = None, **maas: Any) -> Path:
        maas.setdefault("ssh_keys", [ssh_keypair.public_key])
        top = {"lock_server": lock_server} if lock_server else None
        return write_config(tmp_path, handle, top=top, **maas)

    return make


@pytest.fixture
def paddles() -> Iterator[tuple[LockServer, str]]:
    """(server, url): smithi001..006.front.example.com, type smithi, all unlocked."""
    server = LockServer(
        [{"name": f"smithi00{i}.{PADDLES_DOMAIN}", "machine_type": "smithi"} for i in range(1, 7)]
    )
    handle = server.serve()
    yield server, handle.url
    handle.stop()
