"""The one reader of teuthology's lock server (paddles): lock records, nothing else.

Used by the teuthology adapter (who holds a node, before create() stamps it and before
release() undoes it) and by the CLI (`machines --paddles`, `reconcile`, `inventory`).
Writing node records (not locks) is teuthology.paddles_nodes. It never imports
teuthology, so the CLI reads paddles without switching the process to gevent, and it only
GETs: changing a lock is teuthology's business.

`unlock_refusal` states paddles' own rules for an unlock (paddles/models/nodes.py), so the
adapter can leave MAAS alone when paddles is going to refuse the unlock anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote

import requests

from teuthology_maas.errors import MaasUnavailable

__all__ = ["LockServerUnavailable", "PaddlesNode", "PaddlesReader", "unlock_refusal"]

DEFAULT_TIMEOUT = 30.0


class LockServerUnavailable(MaasUnavailable):
    """The lock server could not be reached or did not answer as paddles does."""


@dataclass(frozen=True)
class PaddlesNode:
    """A node's lock record as paddles keeps it."""

    name: str  # the FQDN, as paddles stores it
    machine_type: str | None
    locked: bool
    locked_by: str | None
    description: str | None

    @property
    def hostname(self) -> str:
        """The short name (MAAS's hostname) of `name`."""
        return self.name.rsplit("@", 1)[-1].split(".", 1)[0]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PaddlesNode:
        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        return cls(
            name=str(data.get("name", "")),
            machine_type=text("machine_type"),
            locked=bool(data.get("locked")),
            locked_by=text("locked_by"),
            description=text("description"),
        )

    def describe_lock(self) -> str:
        """`locked by alice@host (/archive/run/7)` or `not locked`."""
        if not self.locked:
            return "not locked"
        desc = f" ({self.description})" if self.description else ""
        return f"locked by {self.locked_by or '?'}{desc}"


def unlock_refusal(node: PaddlesNode, user: str, description: str | None) -> str | None:
    """Why paddles will refuse `user`'s unlock of `node` sending `description`, in paddles'
    own words; None when paddles will accept it. Paddles refuses an unlock of a node that is
    not locked, an unlock by anyone but `locked_by`, and (when the unlock sends one) a
    description other than the lock's."""
    if not node.locked:
        return "Cannot unlock an already-unlocked node"
    if not user:
        return "Cannot unlock without specifying locked_by"
    if user != node.locked_by:
        return (
            f"Cannot unlock - locked_by values must match (paddles has {node.locked_by!r}, "
            f"the unlock sends {user!r})"
        )
    if description and description != node.description:
        return (
            f"Cannot unlock - description values must match (paddles has "
            f"{node.description!r}, the unlock sends {description!r})"
        )
    return None


class PaddlesSession:
    """One paddles URL and one HTTP session, closed with the object."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url.strip().rstrip("/") + "/"
        self._timeout = timeout
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PaddlesReader(PaddlesSession):
    """GETs against one paddles URL with one session; every failure is LockServerUnavailable."""

    def nodes(self, machine_types: Sequence[str] = ()) -> list[PaddlesNode]:
        """Every node (of `machine_types`, if any are given)."""
        params = {"machine_type": "|".join(machine_types)} if machine_types else None
        data = self._get(("nodes",), params)
        if not isinstance(data, list):
            raise LockServerUnavailable(f"lock server {self.url}: nodes/ is not a list")
        return [PaddlesNode.from_json(item) for item in data if isinstance(item, Mapping)]

    def node(self, name: str) -> PaddlesNode:
        """The lock record of the node named `name` (its FQDN, as paddles names nodes)."""
        data = self._get(("nodes", name))
        if not isinstance(data, Mapping):
            raise LockServerUnavailable(f"lock server {self.url}: nodes/{name}/ is not a node")
        return PaddlesNode.from_json(data)

    def records(self) -> list[dict[str, Any]]:
        """Every node as paddles shows it (all its fields), for `inventory`."""
        data = self._get(("nodes",))
        if not isinstance(data, list):
            raise LockServerUnavailable(f"lock server {self.url}: nodes/ is not a list")
        return [dict(item) for item in data if isinstance(item, Mapping) and item.get("name")]

    def record(self, name: str) -> dict[str, Any]:
        """One node as paddles shows it; LockServerUnavailable (http_status 404) if none."""
        data = self._get(("nodes", name))
        if not isinstance(data, Mapping):
            raise LockServerUnavailable(f"lock server {self.url}: nodes/{name}/ is not a node")
        return dict(data)

    def _get(self, segments: Sequence[str], params: Mapping[str, str] | None = None) -> Any:
        # Each segment is quoted on its own: a node name can never add a path level or a
        # query to the URL, whatever it contains.
        path = "".join(quote(segment, safe="@") + "/" for segment in segments)
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
