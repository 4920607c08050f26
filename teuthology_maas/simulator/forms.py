"""Request parameters: the query string and form bodies as Django would see them.

MAAS clients send multipart bodies whose parts are base64 transfer-encoded under a quoted
boundary containing `=` (python's email package writes them so). Werkzeug's multipart parser
ignores Content-Transfer-Encoding, so multipart is parsed with the stdlib email parser, which
decodes it. Parts carrying a filename go to Django's FILES and are invisible to MAAS handlers,
so they are dropped here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl

MAX_BODY_BYTES = 16 * 1024 * 1024


class FormError(ValueError):
    """The body cannot be parsed; answered with 400 and this text."""


class Params:
    """An ordered multi-valued mapping with Django QueryDict semantics (`get` = last value)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.getlist(name)
        return values[-1] if values else default

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self._items if k == name]

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for key, _ in self._items:
            seen.setdefault(key, None)
        return list(seen)

    def lists(self) -> list[tuple[str, list[str]]]:
        return [(name, self.getlist(name)) for name in self.names()]

    def without(self, *names: str) -> Params:
        return Params(
            (k, v) for k, v in self._items if k not in names and not k.startswith("oauth_")
        )

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def as_lists_dict(self) -> dict[str, list[str]]:
        return dict(self.lists())

    def __contains__(self, name: object) -> bool:
        return any(k == name for k, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"Params({self._items!r})"


class Body:
    """What piston makes of a request body: form fields, or a JSON document."""

    def __init__(
        self,
        form: Params,
        json_data: Any = None,
        is_json: bool = False,
        *,
        urlencoded: bool = False,
    ) -> None:
        self.form = form
        self.json_data = json_data
        self.is_json = is_json
        # Only urlencoded bodies take part in an OAuth HMAC signature base string.
        self.urlencoded = urlencoded


def parse_query(query_string: str) -> Params:
    return Params(parse_qsl(query_string, keep_blank_values=True))


def _multipart(content_type: str, body: bytes) -> Params:
    # The email parser needs the Content-Type header in front of the body to find the boundary.
    message = message_from_bytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if message.defects and not message.is_multipart():
        raise FormError(f"Invalid multipart body: {message.defects[0].__class__.__name__}")
    if not message.is_multipart():
        return Params()
    items: list[tuple[str, str]] = []
    payload = message.get_payload()
    parts = payload if isinstance(payload, list) else []
    for part in parts:
        if not isinstance(part, Message):
            continue
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        raw = part.get_payload(decode=True)
        data = raw if isinstance(raw, bytes) else b""
        charset = part.get_content_charset() or "utf-8"
        try:
            value = data.decode(charset, errors="replace")
        except LookupError:
            value = data.decode("utf-8", errors="replace")
        items.append((name, value))
    return Params(items)


def parse_body(content_type: str | None, body: bytes) -> Body:
    """Parse a POST/PUT body. No body, or no Content-Type, is an empty form."""
    if len(body) > MAX_BODY_BYTES:
        raise FormError(f"Request body too large: {len(body)} bytes (limit {MAX_BODY_BYTES})")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not body.strip() and media_type != "application/json":
        return Body(Params())
    if media_type == "multipart/form-data":
        return Body(_multipart(content_type or "", body))
    if media_type == "application/x-www-form-urlencoded":
        return Body(
            Params(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)),
            urlencoded=True,
        )
    if media_type == "application/json":
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormError(f"Bad Request: the body is not valid JSON ({exc})") from exc
        # piston replaces request.POST by an empty dict for JSON bodies.
        return Body(Params(), json_data=data, is_json=True)
    return Body(Params())
