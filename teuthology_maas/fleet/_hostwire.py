"""The host-sharing wire: one JSON object per line over a unix socket, and what travels in it.

Messages (`op` names what it is; `id` ties answers to a request of the same connection):

    follower -> leader   wait {id, system_id, args, probe?}   cancel {id}   kick
                         configure {fast, slow}   lookup {id, hostname}   probed {id, ready}
    leader -> follower   change {id, machine}   done {id, machine}   failed {id, error}
                         found {id, machines}   probe {id}

`args` are the poller's wait() arguments as JSON (statuses as numbers, sets as lists), passed
on as they are: the leader's own StatusPoller decides what they mean. A machine travels as
MAAS's JSON object and is parsed and validated again on arrival (`Machine.from_json`), like
any MAAS answer; a line that is not a JSON object with an `op`, or longer than MAX_LINE, is
dropped with a log line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Mapping
from typing import Any

from teuthology_maas import errors
from teuthology_maas.errors import MaasError, MaasProtocolError
from teuthology_maas.models import Machine

log = logging.getLogger("teuthology_maas.fleet.hostshare")

# A machine object is a few kB; a lookup answers a handful of them.
MAX_LINE = 4 * 1024 * 1024
_RECV = 65536

# The errors a leader may hand to a follower's wait or lookup, by name; anything else arrives
# as a plain MaasError with its text.
_ERRORS: dict[str, type[MaasError]] = {
    cls.__name__: cls
    for cls in (
        errors.MaasError, errors.MaasTimeout, errors.MachineNotFound, errors.MaasHTTPError,
        errors.MaasAuthError, errors.MaasPermissionDenied, errors.MaasNotFound,
        errors.MaasBadRequest, errors.MaasServerError, errors.MaasUnavailable,
        errors.MaasProtocolError,
    )
}  # fmt: skip
_ERROR_FIELDS = ("machine", "system_id", "status", "maas_message")


class WireError(OSError):
    """The other end broke the framing (a line past MAX_LINE): the connection is dropped."""


def excerpt(data: bytes) -> str:
    return repr(data[:80]) + (f" ... ({len(data)} bytes)" if len(data) > 80 else "")


def decode(line: bytes) -> dict[str, Any] | None:
    """One message, or None (logged) when the line is not one."""
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        log.warning("host sharing: dropped a malformed message: %s", excerpt(line))
        return None
    return message


def to_json(value: Any) -> Any:
    """Wait arguments as JSON: statuses (IntEnum) as numbers, sets and tuples as lists."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, set | frozenset | tuple | list):
        return (
            sorted(to_json(v) for v in value)
            if isinstance(value, set | frozenset)
            else [to_json(v) for v in value]
        )
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    raise TypeError(f"cannot send {type(value).__name__} to the host's poller")


def machine_to_json(machine: Machine) -> dict[str, Any]:
    raw = machine.raw
    return raw if raw else {
        "system_id": machine.system_id, "hostname": machine.hostname,
        "status": int(machine.status), "status_name": machine.status_name,
        "status_message": machine.status_message,
    }  # fmt: skip


def machine_from_json(data: Any) -> Machine | None:
    """A machine from the wire, validated as a MAAS answer is; None (logged) when invalid."""
    try:
        return Machine.from_json(data)
    except MaasProtocolError as exc:
        log.warning("host sharing: dropped an invalid machine from the leader: %s", exc)
        return None


def error_to_json(exc: BaseException) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, MaasError):
        fields.update({name: getattr(exc, name) for name in _ERROR_FIELDS})
        fields["http_status"] = exc.http_status
    return fields


def error_from_json(data: Any) -> MaasError:
    """The leader's error, rebuilt (only known kinds; text and fields checked for type)."""
    if not isinstance(data, dict):
        return MaasError("the host's shared poller failed without saying why")
    kind = _ERRORS.get(str(data.get("kind")), MaasError)
    message = data.get("message") if isinstance(data.get("message"), str) else ""
    fields = {name: data[name] for name in _ERROR_FIELDS if isinstance(data.get(name), str)}
    status = data.get("http_status")
    if isinstance(status, int) and not isinstance(status, bool):
        fields["http_status"] = status
    if kind is errors.MaasTimeout:
        fields["last_status"] = fields.pop("status", None)
    if str(data.get("kind")) not in _ERRORS:
        message = f"the host's shared poller failed: {data.get('kind')!s:.60}: {message}"
    return kind(message or "the host's shared poller failed", **fields)


class Channel:
    """One connection: whole lines out (one writer at a time), whole messages in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._buffer = b""
        self.closed = False

    def send(self, message: Mapping[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self._send_lock:
            self.sock.sendall(data)

    def send_quietly(self, message: Mapping[str, Any]) -> bool:
        try:
            self.send(message)
            return True
        except OSError:
            return False

    def receive(self) -> dict[str, Any] | None:
        """The next valid message; None when the other end closed. Malformed lines are
        dropped (logged); a line past MAX_LINE raises WireError."""
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                message = decode(line)
                if message is not None:
                    return message
                continue
            if len(self._buffer) > MAX_LINE:
                raise WireError(f"a message longer than {MAX_LINE} bytes")
            chunk = self.sock.recv(_RECV)
            if not chunk:
                return None
            self._buffer += chunk

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
