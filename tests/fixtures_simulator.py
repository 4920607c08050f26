"""pytest fixtures for the MAAS simulator: `maas_sim` and `maas_sim_factory`.

`maas_sim` is a served simulator with 6 Ready machines smithi001..smithi006 (tag and pool
"smithi", amd64/generic) on a ScaledClock fast enough that a deployment takes well under a
second of real time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from teuthology_maas.simulator import Clock, Inventory, ScaledClock, ServerHandle, Simulator

# 1000 simulated seconds per real second: the default 600 s deployment takes 0.6 s.
DEFAULT_TIME_FACTOR = 1000.0
DEFAULT_USER = "teuthology"


def default_inventory() -> dict[str, Any]:
    return {
        "machines": [
            {
                "hostname": f"smithi{i:03d}",
                "tags": ["smithi"],
                "pool": "smithi",
                "architecture": "amd64/generic",
            }
            for i in range(1, 7)
        ]
    }


@dataclass
class MaasSimHandle:
    """A served simulator as tests use it."""

    sim: Simulator
    server: ServerHandle
    user: str = DEFAULT_USER
    _clients: list[MaasHttp] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_url(self) -> str:
        return self.server.api_url

    @property
    def api_key(self) -> str:
        return self.sim.api_key(self.user)

    def key_for(self, username: str) -> str:
        return self.sim.api_key(username)

    def config(self, **overrides: Any) -> Any:
        """A MaasConfig pointing at this simulator as `teuthology`, polling fast."""
        from teuthology_maas.config import MaasConfig

        section: dict[str, Any] = {
            "api_url": self.url,
            "api_key": self.api_key,
            "machine_types": ["smithi"],
            "poll_interval": 0.1,
            "poll_min_interval": 0.02,
            "http_timeout": 10,
            **overrides,
        }
        return MaasConfig.from_mapping(section)

    def http(self, username: str | None = DEFAULT_USER) -> MaasHttp:
        """A signed MAAS-wire client for `username` (None: unsigned), closed with the handle."""
        client = MaasHttp(self.api_url, self.key_for(username) if username else None)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self.server.stop()


@pytest.fixture
def maas_sim_factory() -> Iterator[Callable[..., MaasSimHandle]]:
    """`maas_sim_factory(inventory_dict=None, clock=None, ssh_root=None)` -> a served handle."""
    handles: list[MaasSimHandle] = []

    def make(
        inventory_dict: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        ssh_root: str | Path | None = None,
    ) -> MaasSimHandle:
        inventory = Inventory.from_mapping(
            default_inventory() if inventory_dict is None else inventory_dict
        )
        sim = Simulator(
            inventory, clock=clock or ScaledClock(DEFAULT_TIME_FACTOR), ssh_root=ssh_root
        )
        handle = MaasSimHandle(sim, sim.serve())
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.stop()


@pytest.fixture
def maas_sim(maas_sim_factory: Callable[..., MaasSimHandle]) -> MaasSimHandle:
    return maas_sim_factory()


@pytest.fixture
def manual_sim(maas_sim_factory: Callable[..., MaasSimHandle]) -> MaasSimHandle:
    """The default inventory on a ManualClock: nothing moves until `.sim.clock.advance()`."""
    from teuthology_maas.simulator import ManualClock

    return maas_sim_factory(clock=ManualClock())


# -- a small MAAS-wire HTTP client for the simulator's own tests --------------------------


def maas_multipart(fields: Sequence[tuple[str, str | bytes]]) -> tuple[bytes, str]:
    """Encode form fields the way maascli/python-libmaas do: every part base64
    transfer-encoded, under a quoted boundary containing '='. Returns (body, content_type)."""
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    message = MIMEMultipart("form-data")
    for name, value in fields:
        part = (
            MIMEApplication(value)
            if isinstance(value, bytes)
            else MIMEText(value, "plain", "utf-8")
        )
        part.add_header("Content-Disposition", "form-data", name=name)
        message.attach(part)
    raw = message.as_bytes()
    _, _, body = raw.partition(b"\n\n")
    body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    content_type = f'multipart/form-data; boundary="{message.get_boundary()}"'
    return body, content_type


class MaasHttp:
    """Signs every request like the official clients (OAuth PLAINTEXT, fresh nonce)."""

    def __init__(self, api_url: str, api_key: str | None) -> None:
        import requests

        self.api_url = api_url
        self.api_key = api_key
        self.session = requests.Session()

    def auth_header(self, *, nonce: str | None = None, timestamp: int | None = None) -> str:
        import time
        import uuid
        from urllib.parse import quote

        assert self.api_key is not None
        consumer_key, token_key, secret = self.api_key.split(":")
        params = {
            "oauth_nonce": nonce or uuid.uuid4().hex,
            "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
            "oauth_version": "1.0",
            "oauth_signature_method": "PLAINTEXT",
            "oauth_consumer_key": consumer_key,
            "oauth_token": token_key,
            "oauth_signature": quote("&" + secret, safe=""),
        }
        return 'OAuth realm="OAuth", ' + ", ".join(f'{k}="{v}"' for k, v in params.items())

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        fields: Sequence[tuple[str, str | bytes]] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        sign: bool = True,
    ) -> Any:
        all_headers = dict(headers or {})
        if sign and self.api_key is not None:
            all_headers.setdefault("Authorization", self.auth_header())
        if fields is not None:
            data, all_headers["Content-Type"] = maas_multipart(fields)
        return self.session.request(
            method, self.api_url + path, params=params, data=data, headers=all_headers, timeout=10
        )

    def get(self, path: str, params: Any = None, **kwargs: Any) -> Any:
        return self.request("GET", path, params=params, **kwargs)

    def post(self, path: str, op: str | None = None, fields: Any = (), **kwargs: Any) -> Any:
        params = {"op": op} if op else None
        return self.request("POST", path, params=params, fields=list(fields), **kwargs)

    def close(self) -> None:
        self.session.close()


# -- python-libmaas in its own virtualenv ---------------------------------------------------

LIBMAAS_VERSION = "0.6.8"
LIBMAAS_VENV_ENV = "TEUTHOLOGY_MAAS_LIBMAAS_VENV"


def _libmaas_works(python: Path) -> bool:
    import subprocess

    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import maas.client, maas.client.viscera.machines, distutils"],
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def libmaas_python() -> Path:
    """The python of a virtualenv with python-libmaas 0.6.8 (+ setuptools for distutils on
    3.12), created once if missing at $TEUTHOLOGY_MAAS_LIBMAAS_VENV or ./.venv-libmaas."""
    import os
    import subprocess
    import sys

    default = Path(__file__).resolve().parent.parent / ".venv-libmaas"
    venv = Path(os.environ.get(LIBMAAS_VENV_ENV) or default)
    python = venv / "bin" / "python"
    if not _libmaas_works(python):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"python-libmaas=={LIBMAAS_VERSION}", "setuptools"],
            check=True,
            timeout=600,
        )  # fmt: skip
        assert _libmaas_works(python), f"python-libmaas is not importable in {venv}"
    return python
