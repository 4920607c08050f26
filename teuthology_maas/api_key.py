"""`maas: api_key`: a MAAS API key `consumer_key:token_key:token_secret`, parsed and shown
without its secret (registered with `redact` before any validation message can echo it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from teuthology_maas import config_values as values
from teuthology_maas.redact import REDACTED, register_secret

__all__ = ["ApiKey", "redact_api_key", "register_key_secret"]


def register_key_secret(value: Any) -> None:
    """Register the token secret of an api_key before validation echoes anything, so that it
    is redacted wherever it was also pasted (another key, a malformed api_key)."""
    if isinstance(value, str):
        for part in value.strip().split(":")[2:]:
            register_secret(part)


@dataclass(frozen=True)
class ApiKey:
    """A MAAS API key `consumer_key:token_key:token_secret`; the secret never shows in reprs."""

    consumer_key: str
    token_key: str
    token_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        register_secret(self.token_secret)

    @classmethod
    def parse(cls, value: Any, *, key: str = "api_key") -> ApiKey:
        if isinstance(value, ApiKey):
            return value
        if not isinstance(value, str):
            raise values.fail(
                key,
                values.Shown(f"a value of type {type(value).__name__}"),
                "a string consumer_key:token_key:token_secret",
            )
        parts = value.strip().split(":")
        if len(parts) != 3 or not all(parts) or any(c.isspace() for c in value.strip()):
            for part in parts[2:]:
                register_secret(part)
            raise values.fail(
                key,
                redact_api_key(value),
                "consumer_key:token_key:token_secret (three non-empty fields separated by ':'; "
                "copy it from the MAAS UI under your user's API keys)",
            )
        return cls(parts[0], parts[1], parts[2])

    def __repr__(self) -> str:
        return f"ApiKey(consumer_key={self.consumer_key!r}, token_key={self.token_key!r}, token_secret={REDACTED!r})"  # noqa: E501

    def __str__(self) -> str:
        return f"{self.consumer_key}:{self.token_key}:{REDACTED}"


def redact_api_key(value: str) -> values.Shown:
    """How a (possibly malformed) key is shown: the two non-secret fields of a three-field
    key, otherwise only its shape."""
    parts = value.strip().split(":")
    if len(parts) == 3:
        names = ("consumer_key", "token_key", "token_secret")
        empty = [name for name, part in zip(names, parts, strict=True) if not part]
        note = f" (empty: {', '.join(empty)})" if empty else ""
        return values.Shown(repr(f"{parts[0]}:{parts[1]}:{REDACTED}") + note)
    return values.Shown(
        f"a value (redacted) of {len(value.strip())} characters in {len(parts)} "
        "':'-separated field(s)"
    )
