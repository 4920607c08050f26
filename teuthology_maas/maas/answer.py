"""What MAAS answered: the body read under the request's deadline and a size cap, decoded, and
turned into typed errors that carry MAAS's words (redacted, bounded) and no request object.

Size caps, and why these numbers:

* `DEFAULT_MAX_RESPONSE` (64 MiB, `maas: max_response_size`) bounds lists. A machine object
  as MAAS 3.x serialises it (interfaces with their VLANs, block devices with partitions,
  NUMA nodes, hardware info) is 10 to 25 KB for a Ceph test node with 2 NICs and 4 to 8
  disks, so an unfiltered `GET machines/` of a 2,000-machine region is about 50 MB; Ceph's
  own lab has a few hundred machines. Teuthology's own path only asks filtered lists (by
  hostname or system_id, tens of machines at a time: hundreds of KB), the same for events
  (at most 1,000 of ~500 bytes) and boot resources.
* `OBJECT_LIMIT` (4 MiB) bounds an answer that is one object: whoami, version, get_config, a
  machine, the answer to a POST. The largest real machine object (a storage server with 100
  disks and 50 interfaces) is well under 1 MB.
* `ERROR_BODY_LIMIT` (64 KiB): of an error answer only the start is read; its text is shown
  cut to 2,000 characters anyway.

Memory stays near the cap: the body is read in 64 KiB chunks into one buffer, a
Content-Length above the cap is refused before reading, and parsing starts only once the
whole body is in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from teuthology_maas.answers import malformed
from teuthology_maas.errors import (
    MaasAuthError,
    MaasBadRequest,
    MaasConflict,
    MaasHTTPError,
    MaasNotFound,
    MaasPermissionDenied,
    MaasProtocolError,
    MaasServerError,
    NoMachineAvailable,
)
from teuthology_maas.maas.deadline import Deadline
from teuthology_maas.redact import clip, excerpt, redact

MiB = 1024 * 1024
DEFAULT_MAX_RESPONSE = 64 * MiB
OBJECT_LIMIT = 4 * MiB
ERROR_BODY_LIMIT = 64 * 1024
_CHUNK = 64 * 1024
_TEXT_LIMIT = 2000
_DEACTIVATED = "User is not allowed access to this API"


@dataclass(frozen=True)
class Target:
    """What a call is about, for error messages: the op, the machine and the endpoint."""

    method: str
    path: str
    op: str | None = None
    system_id: str | None = None
    base_url: str = ""

    def describe(self) -> str:
        where = self.path + (f"?op={self.op}" if self.op else "")
        return f"{self.method} {where}"

    def endpoint(self) -> str:
        """The call and the region it went to, as errors name it."""
        return f"{self.describe()} at {self.base_url}" if self.base_url else self.describe()


class TooLarge(Exception):
    """The answer passed its size cap (internal: the transport turns it into an error)."""

    def __init__(self, limit: int, seen: int, declared: bool) -> None:
        super().__init__(limit, seen, declared)
        self.limit = limit
        self.seen = seen
        self.declared = declared

    def describe(self) -> str:
        if self.declared:
            return f"a Content-Length of {self.seen} bytes, above the {size_text(self.limit)} cap"
        return f"more than the {size_text(self.limit)} cap allows"


def size_text(size: int) -> str:
    return f"{size / MiB:g} MiB" if size >= MiB else f"{size} bytes"


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: status, headers and the body bytes (cut short for errors)."""

    status_code: int
    reason: str
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


def read(response: requests.Response, deadline: Deadline, limit: int) -> Answer:
    """The whole answer, read under `deadline`; TooLarge past `limit` (errors: cut short)."""
    status = response.status_code
    cap = ERROR_BODY_LIMIT if status >= 300 else limit
    declared = response.headers.get("Content-Length", "").strip()
    if status < 300 and declared.isdigit() and int(declared) > cap:
        raise TooLarge(cap, int(declared), declared=True)
    body = bytearray()
    for chunk in response.iter_content(_CHUNK):
        deadline.check()
        body += chunk
        if len(body) > cap:
            if status >= 300:
                del body[cap:]
                break
            raise TooLarge(cap, len(body), declared=False)
    deadline.check()
    return Answer(status, str(response.reason or ""), response.headers, bytes(body))


def body_text(answer: Answer) -> str:
    text = redact(answer.text.strip())
    if len(text) > _TEXT_LIMIT:
        text = text[:_TEXT_LIMIT] + f"... ({len(text) - _TEXT_LIMIT} more characters)"
    return text


def maas_words(answer: Answer) -> str:
    """MAAS's error body as one readable string (JSON field errors flattened)."""
    text = body_text(answer)
    content_type = answer.headers.get("Content-Type", "")
    if "json" in content_type:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return text
        if isinstance(data, dict):
            parts = []
            for name, messages in data.items():
                items = messages if isinstance(messages, list) else [messages]
                parts.append(f"{name}: {' '.join(str(m) for m in items)}")
            return "; ".join(parts)
    if "html" in content_type:
        return f"<HTML error page, {len(text)} characters>"
    return text


_HTTP_ERRORS: dict[int, type[MaasHTTPError]] = {
    400: MaasBadRequest,
    401: MaasAuthError,
    403: MaasPermissionDenied,
    404: MaasNotFound,
    409: MaasConflict,
    500: MaasServerError,
}

_EMPTY_BODY_HINT = {
    403: "MAAS gave no reason; the machine is locked or owned by another user, or the "
    "operation needs an administrator",
    401: "MAAS rejected the API key (check maas: api_key)",
}


def http_error(answer: Answer, target: Target) -> MaasHTTPError:
    status = answer.status_code
    words = maas_words(answer)
    cls = _HTTP_ERRORS.get(status, MaasServerError if status >= 500 else MaasHTTPError)
    if status == 403 and _DEACTIVATED in words:
        cls = MaasAuthError
    if status == 409 and target.op == "allocate":
        cls = NoMachineAvailable
    shown = words or f"(empty body: {_EMPTY_BODY_HINT.get(status, 'MAAS gave no message')})"
    if 300 <= status < 400:
        location = clip(answer.headers.get("Location", "nowhere"), 300)
        shown = f"redirected to {location}; check maas: api_url (MAAS API calls never redirect)"
    subject = f" for machine {target.system_id}" if target.system_id else ""
    reason = clip(answer.reason, 80)
    message = f"MAAS {target.describe()}{subject} failed: HTTP {status} {reason}: {shown}"
    return cls(message, system_id=target.system_id, http_status=status, maas_message=words)


def protocol_error(target: Target, problem: str, *, field: str | None = None) -> MaasProtocolError:
    return MaasProtocolError(
        f"MAAS {target.endpoint()} answered {problem}",
        endpoint=target.endpoint(),
        field=field,
        problem=problem,
        system_id=target.system_id,
    )


def decode(answer: Answer, target: Target, expect_json: bool) -> Any:
    if not expect_json:
        return answer.text
    if answer.status_code == 204 or not answer.content:
        return None
    problem: str | None = None
    try:
        return json.loads(answer.content)
    except RecursionError:
        problem = "JSON nested too deeply to parse"
    except ValueError:  # not JSON, not UTF-8, or an integer of thousands of digits
        content_type = excerpt(answer.headers.get("Content-Type", "no Content-Type"), 80)
        problem = (
            f"HTTP {answer.status_code} with non-JSON content ({content_type}): "
            f"{body_text(answer)[:200]}"
        )
    raise malformed(problem)
