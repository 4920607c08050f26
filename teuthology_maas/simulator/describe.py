"""The describe document (GET /MAAS/api/2.0/describe/), as real MAAS shapes it.

Clients build their bindings from it: python-libmaas names its objects after the handler
names (`MachinesHandler` -> `client.machines`) and sends every call to the handler's `uri`,
which is therefore built from the request's own Host header. Only implemented operations are
described, so a generated client never offers an action the simulator would refuse.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from teuthology_maas.simulator._describe_table import HANDLERS


def describe_document(base_url: str) -> dict[str, Any]:
    """The whole document; `base_url` is scheme://host:port as the client reached us."""
    resources: list[dict[str, Any]] = []
    for anon, auth in HANDLERS:
        anon_json = anon.to_json(base_url) if anon else None
        auth_json = auth.to_json(base_url) if auth else None
        name = auth.name if auth else anon.name if anon else ""
        resources.append({"name": name, "anon": anon_json, "auth": auth_json})
    resources.sort(key=lambda r: str(r["name"]))
    handlers: list[dict[str, Any]] = [r["anon"] for r in resources if r["anon"]]
    handlers += [r["auth"] for r in resources if r["auth"]]
    return {"doc": "MAAS API", "resources": resources, "handlers": handlers, "hash": API_HASH}


def _hash() -> str:
    # Host-independent: hash the document with a placeholder base URL.
    resources = []
    for anon, auth in HANDLERS:
        resources.append(
            {
                "anon": anon.to_json("") if anon else None,
                "auth": auth.to_json("") if auth else None,
            }
        )
    canonical = json.dumps(resources, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode()).hexdigest()


API_HASH = _hash()
