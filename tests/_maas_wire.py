"""Helpers for tests that inspect MAAS requests as they go on the wire."""

from __future__ import annotations

import email.parser
import email.policy
from urllib.parse import parse_qsl, unquote, urlsplit

SECRET = "T0kenS3cretT0kenS3cretT0kenS3cre"
API_KEY = f"ConsumerKeyAAAAAAA:TokenKeyBBBBBBBBBB:{SECRET}"
ROOT = "http://maas.test:5240/MAAS/api/2.0/"


def oauth_fields(authorization: str | bytes) -> dict[str, str]:
    """The parameters of an `OAuth k="v", ...` header, values percent-decoded once (as MAAS
    does)."""
    if isinstance(authorization, bytes):
        authorization = authorization.decode("ascii")
    assert authorization.startswith("OAuth "), authorization
    fields: dict[str, str] = {}
    for item in authorization[len("OAuth ") :].split(","):
        name, _, value = item.strip().partition("=")
        assert value.startswith('"') and value.endswith('"'), item
        fields[name] = unquote(value[1:-1])
    return fields


def form_parts(content_type: str | bytes, body: bytes) -> list[tuple[str, str, str | None]]:
    """(name, value, filename) of every part of a multipart/form-data body, parsed with the
    stdlib email parser the way a server would."""
    if isinstance(content_type, bytes):  # requests-oauthlib hands headers on as bytes
        content_type = content_type.decode("latin-1")
    assert content_type.startswith("multipart/form-data"), content_type
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    assert message.is_multipart()
    parts = []
    for part in message.iter_parts():
        assert part.get_content_disposition() == "form-data"
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        parts.append((name, payload.decode("utf-8"), part.get_filename()))
    return parts


def form(request) -> list[tuple[str, str]]:
    """(name, value) pairs of a recorded POST's multipart body; asserts no part is a file."""
    parts = form_parts(request.headers["Content-Type"], request.body)
    assert all(filename is None for _, _, filename in parts), parts
    return [(name, value) for name, value, _ in parts]


def query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def path(url: str) -> str:
    return urlsplit(url).path
