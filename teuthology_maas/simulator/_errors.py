"""The error responses MAAS gives, as exceptions the handlers raise."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"


class ApiError(Exception):
    """An HTTP error answer: status, body and content type exactly as MAAS sends them."""

    def __init__(
        self,
        status: int,
        body: str = "",
        *,
        content_type: str = TEXT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def form_errors(errors: Mapping[str, Sequence[str]]) -> ApiError:
    """A Django form validation failure: 400 with a JSON {field: [messages]} body."""
    return ApiError(400, json.dumps({k: list(v) for k, v in errors.items()}), content_type=JSON)


def forbidden(message: str = "") -> ApiError:
    # MAAS's permission denials are usually an empty body.
    return ApiError(403, message)


def not_found(message: str = "No Machine matches the given query.") -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)
