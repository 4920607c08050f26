"""Keep API token secrets out of log records, exception texts and reprs.

Every secret the process holds (the token secret of each API key in use) is registered here.
`redact()` scrubs any text we build from material we do not control (response bodies, third
party log records). A logging filter does the same for the loggers of the libraries that sit
between us and the wire: requests-oauthlib logs the signed headers at DEBUG and oauthlib logs
the PLAINTEXT signature (`&` + token secret) at DEBUG, both in their own words.
"""

from __future__ import annotations

import datetime
import logging
import re
import reprlib
import threading
from typing import Any
from urllib.parse import quote

REDACTED = "<redacted>"

# Anything shaped like a MAAS API key (`consumer_key:token_key:token_secret`, MAAS makes them
# 18:18:32 alphanumerics) loses its third field even when no code registered it: a key pasted
# into the wrong config field, or a `maas:` section too malformed to reach the api_key check.
_API_KEY_SHAPE = re.compile(
    r"(?<![A-Za-z0-9])([A-Za-z0-9]{8,64}):([A-Za-z0-9]{8,64}):[A-Za-z0-9]{16,128}(?![A-Za-z0-9])"
)

_lock = threading.Lock()
_secrets: set[str] = set()

# Loggers that can see a signed request. Filters on a logger only apply to records created
# by that very logger (not to records propagating from children), so each module's logger
# is named, and the registry is also scanned for children that exist at install time.
_WATCHED_PREFIXES = ("requests_oauthlib", "oauthlib", "urllib3", "requests")
_WATCHED_LOGGERS = (
    "requests_oauthlib",
    "requests_oauthlib.oauth1_auth",
    "requests_oauthlib.oauth1_session",
    "oauthlib",
    "oauthlib.oauth1",
    "oauthlib.oauth1.rfc5849",
    "oauthlib.oauth1.rfc5849.signature",
    "oauthlib.oauth1.rfc5849.utils",
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.util.retry",
    "requests",
    "teuthology_maas.maas.client",
)


def _variants(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret, safe="~")}


# MAAS generates 32-character token secrets. Scrubbing a very short "secret" (test keys like
# `ck:tk:ts`) out of every message would mangle ordinary words and protect nothing.
MIN_SECRET_LENGTH = 8


def register_secret(secret: str) -> None:
    """Remember a secret so that `redact` and the log filter scrub it from then on (secrets
    shorter than MIN_SECRET_LENGTH are not scrubbed from third-party text)."""
    if len(secret) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets.update(_variants(secret))
    install_log_filter()


def redact(text: str) -> str:
    """`text` with every registered secret, and the secret field of anything shaped like a
    MAAS API key, replaced by `<redacted>`."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if ":" in text:
        text = _API_KEY_SHAPE.sub(rf"\1:\2:{REDACTED}", text)
    return text


def contains_secret(text: str) -> bool:
    with _lock:
        if any(secret in text for secret in _secrets):
            return True
    return ":" in text and _API_KEY_SHAPE.search(text) is not None


class _BoundedRepr(reprlib.Repr):
    """reprlib with bounds on depth, items and string length: a YAML alias bomb (a small
    document whose repr is gigabytes) or a 100 MB string prints as a few hundred characters,
    in time proportional to that, not to the value."""

    def __init__(self) -> None:
        super().__init__(
            maxlevel=3,
            maxtuple=6,
            maxlist=6,
            maxarray=6,
            maxdict=6,
            maxset=6,
            maxfrozenset=6,
            maxdeque=6,
            maxstring=80,
            maxlong=40,
            maxother=60,
        )

    def repr_bytes(self, x: bytes, level: int) -> str:
        text = repr(x[: self.maxstring])
        return text if len(x) <= self.maxstring else text + "..."

    def repr_instance(self, x: Any, level: int) -> str:
        if isinstance(x, float | bool | type(None) | datetime.date | datetime.time):
            return super().repr_instance(x, level)
        # Only a type name for objects we know nothing about: their own repr may be costly.
        return f"<{type(x).__name__}>"


_bounded = _BoundedRepr()
EXCERPT_LIMIT = 200


def clip(text: str, limit: int = EXCERPT_LIMIT) -> str:
    """`text` redacted and cut to `limit` characters (for text that is already words, such as
    an exception's message or a header MAAS sent)."""
    text = redact(text[: limit * 4])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def excerpt(value: Any, limit: int = EXCERPT_LIMIT) -> str:
    """A short, redacted repr of `value` for an error message: bounded in depth, items and
    length whatever the value (MAAS's answers, config values, job input)."""
    text = redact(_bounded.repr(value))
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class SecretFilter(logging.Filter):
    """Rewrites a record whose rendered message holds a registered secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem, not ours
            return True
        if contains_secret(message):
            record.msg = redact(message)
            record.args = None
        if record.exc_text and contains_secret(record.exc_text):
            record.exc_text = redact(record.exc_text)
        return True


_filter = SecretFilter()
_installed: set[str] = set()


def install_log_filter() -> None:
    """Attach the redacting filter to every logger that can see a signed request."""
    names = set(_WATCHED_LOGGERS)
    names.update(
        name
        for name in list(logging.root.manager.loggerDict)
        if name.split(".", 1)[0] in _WATCHED_PREFIXES
    )
    with _lock:
        fresh = names - _installed
        _installed.update(fresh)
    for name in fresh:
        logging.getLogger(name).addFilter(_filter)
