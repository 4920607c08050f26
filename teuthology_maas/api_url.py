"""`maas: api_url`: normalised to the API root, and refused where the signed requests (every
one carries the API key's token secret) must never go: link-local addresses and the cloud
instance-metadata services. No DNS here (configuration never touches the network); the
address actually connected to is checked again by the transport (maas/deadline.py). Plain
http:// to another host is allowed, with a warning once per process (`warn_if_plaintext`).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from teuthology_maas.config_values import Shown, fail

API_SUFFIX = "api/2.0/"

# The warning is the client's (it is given when a client is made for the URL).
log = logging.getLogger("teuthology_maas.maas.client")
_plaintext_warned: set[str] = set()
_plaintext_lock = threading.Lock()


# Cloud instance-metadata services: the signed Authorization header must never reach them.
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, Oracle ...
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)


def forbidden_address(host: str) -> str | None:
    """Why `host` (an address literal or a name) must not receive the API key, or None."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name in METADATA_HOSTS:
        return "a cloud metadata service name"
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata service address"
    if address.is_link_local:
        return "a link-local address"
    return None


def normalize_api_url(value: Any, *, key: str = "api_url") -> str:
    """`http://host:5240/MAAS`, `.../MAAS/`, `.../MAAS/api/2.0` and `.../MAAS/api/2.0/` all
    become `http://host:5240/MAAS/api/2.0/`; repeated slashes in the path collapse to one."""
    if not isinstance(value, str) or not value.strip():
        raise fail(key, value, "the MAAS URL, e.g. http://maas.example.com:5240/MAAS/")
    raw = value.strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(
            key, value, "an http:// or https:// URL with a host, e.g. http://maas:5240/MAAS/"
        )
    if parts.username or parts.password:
        raise fail(key, Shown("a URL with credentials (not shown)"), "a URL without user:password")
    if parts.query or parts.fragment:
        raise fail(key, value, "a URL without ?query or #fragment")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise fail(key, value, "a URL with a numeric port") from None
    forbidden = forbidden_address(parts.hostname)
    if forbidden is not None:
        raise fail(
            key,
            value,
            f"the MAAS region's address, not {forbidden} (every request carries the API key)",
        )
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 2 and segments[-2] == "api":
        if segments[-1] != "2.0":
            raise fail(key, value, "the MAAS API version 2.0 (…/api/2.0/)")
        segments = segments[:-2]
    path = "/" + "".join(f"{s}/" for s in segments) + API_SUFFIX
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


# More region URLs than this is not a MAAS deployment (MAAS HA runs a handful of regions).
MAX_REGION_URLS = 16


def normalize_api_urls(value: Any, *, key: str = "api_url") -> tuple[str, ...]:
    """`api_url` as one URL or a list of the region URLs of one MAAS (HA: same database, same
    key): each normalised and checked like a single one, the error naming which entry (by
    position and value) was wrong; duplicates after normalisation dropped (first wins)."""
    if isinstance(value, str):
        return (normalize_api_url(value, key=key),)
    if not isinstance(value, list | tuple) or isinstance(value, bool):
        raise fail(
            key, value, "the MAAS URL, or a list of the region URLs of one MAAS (HA)"
        )
    if not value:
        raise fail(
            key, Shown("an empty list"), "at least one region URL, e.g. [http://maas:5240/MAAS/]"
        )
    if len(value) > MAX_REGION_URLS:
        raise fail(
            key, Shown(f"a list of {len(value)} URLs"), f"at most {MAX_REGION_URLS} region URLs"
        )
    urls: list[str] = []
    for index, item in enumerate(value):
        url = normalize_api_url(item, key=f"{key}[{index}]")
        if url not in urls:
            urls.append(url)
    return tuple(urls)


def is_loopback(host: str) -> bool:
    """`localhost`, a `.localhost` name or a loopback address literal."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_plaintext(base_url: str) -> None:
    """Once per process and URL: plain http:// to another host sends the signature (the token
    secret itself, with PLAINTEXT signing) in clear text."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or is_loopback(host):
        return
    with _plaintext_lock:
        if base_url in _plaintext_warned:
            return
        _plaintext_warned.add(base_url)
    log.warning(
        "maas: api_url %s is plain http:// to %s: every request carries the API key's token "
        "secret in clear text (PLAINTEXT OAuth); use https:// unless the network path is "
        "trusted",
        base_url,
        host,
    )
