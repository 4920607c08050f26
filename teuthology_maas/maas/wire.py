"""MAAS's request encoding: form fields, never JSON.

* `op` always travels in the query string (also for POST), as the official CLI sends it.
* GET parameters go in the query string; POST/PUT parameters are `multipart/form-data` form
  fields without a filename (parts with a filename land in Django's request.FILES, which
  MAAS's handlers never read).
* A list becomes the same key repeated; None values are left out.
* Booleans are `true`/`false`: MAAS >= 3.5 parses release's flags with Django's BooleanField,
  for which `0` means *true*; `true`/`false` mean the same to every MAAS parser.
* user_data is standard base64 without newlines (MAAS serves it decoded to cloud-init).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from urllib3.filepost import encode_multipart_formdata

from teuthology_maas.models import NodeStatus

Field = tuple[str, str]


def wire_value(value: Any) -> str:
    """One parameter value as MAAS reads it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, NodeStatus):
        return value.keyword
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def fields(params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> list[Field]:
    """Flatten parameters into (name, value) pairs: lists repeat the key, None is dropped."""
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    result: list[Field] = []
    for name, value in items:
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            ordered = sorted(value) if isinstance(value, set | frozenset) else value
            result.extend((name, wire_value(v)) for v in ordered if v is not None)
        else:
            result.append((name, wire_value(value)))
    return result


def multipart(form: Sequence[Field]) -> tuple[bytes, str]:
    """The body and Content-Type of a multipart/form-data request holding `form`."""
    body, content_type = encode_multipart_formdata(
        list(form), boundary=f"teuthology-maas-{uuid.uuid4().hex}"
    )
    return body, content_type


def encode_user_data(user_data: str | bytes) -> str:
    """Standard base64 (no newlines) of the user data's UTF-8 bytes."""
    raw = user_data.encode("utf-8") if isinstance(user_data, str) else bytes(user_data)
    return base64.b64encode(raw).decode("ascii")


def path_segment(value: str, *, what: str = "system_id") -> str:
    """A value safe to place between two slashes of a resource path."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return quote(value.strip(), safe="")


def csv(values: str | Iterable[str] | None) -> str | None:
    """A list MAAS wants comma-separated in one field (release `scripts`)."""
    if values is None:
        return None
    if isinstance(values, str):
        return values or None
    joined = ",".join(v for v in values if v)
    return joined or None
