"""Keep API token secrets out of log records, exception texts and reprs.

Every secret the process holds (the token secret of each API key in use) is registered here.
`redact()` scrubs any text we build from material we do not control (response bodies, third
party log records). A logging filter does the same for the loggers of the libraries that sit
between us and the wire: requests-oauthlib logs the signed headers at DEBUG and oauthlib logs
the PLAINTEXT signature (`&` + token secret) at DEBUG, both in their own words.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import quote

REDACTED = "<redacted>"

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
    """`text` with every registered secret replaced by `<redacted>`."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def contains_secret(text: str) -> bool:
    with _lock:
        return any(secret in text for secret in _secrets)


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
