"""What probably went wrong when MAAS cannot be talked to, and what to change: the hints the
doctor gives, also given by every other command when its first request fails the same way."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from teuthology_maas.errors import MaasNotFound


def is_tls_problem(exc: BaseException) -> bool:
    """Whether `exc` (or anything it wraps) is a TLS failure."""
    seen: BaseException | None = exc
    while seen is not None:
        text = f"{type(seen).__name__} {seen}"
        if re.search(r"SSL|TLS|certificate", text, re.IGNORECASE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def tls_hint(exc: BaseException) -> str:
    text = str(exc)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return ("https:// to a port that speaks plain HTTP: MAAS serves http on 5240, and "
                "https on 5443 only once `maas config-tls enable` was run; fix the scheme or "
                "port of maas.api_url")
    return ("set maas.verify (or ca_bundle) to the CA bundle that signed MAAS's certificate, "
            "or check that the port speaks HTTPS (MAAS: 5443) and the scheme of api_url "
            "matches")


def api_url_hint(exc: BaseException, api_url: str) -> str | None:
    """A fix for a request that failed because `api_url` is not MAAS's API, or None."""
    if isinstance(exc, MaasNotFound) and "/MAAS/" not in urlsplit(api_url).path:
        return (f"maas.api_url {api_url} has no /MAAS/ in its path: MAAS's API lives under "
                "/MAAS/, e.g. http://maas.example.com:5240/MAAS/")
    if "plain HTTP request was sent to HTTPS port" in str(exc):
        return "http:// to a port that speaks HTTPS: use https:// in maas.api_url"
    if is_tls_problem(exc):
        return tls_hint(exc)
    return None
