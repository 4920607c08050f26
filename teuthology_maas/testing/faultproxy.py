"""A loopback HTTP proxy that breaks connections on purpose.

MAAS's own fault injection (the simulator's `faults`) answers with HTTP errors; what it cannot
do is the transport failing around a request: the connection reset before the request reached
MAAS, or after MAAS applied it but before the answer came back, a response slower than the
client's read timeout, or the region being down altogether. This proxy sits between the client
and the simulator (or any loopback HTTP server) and does exactly those things, one rule at a
time, so a test can tell "never applied" from "applied, answer lost".

Each request is forwarded on its own upstream connection (`Connection: close`) so the proxy
always knows where one exchange ends; the client side keeps its connection alive as usual.
Only loopback addresses (127.0.0.0/8) are accepted on either side.
"""

from __future__ import annotations

import ipaddress
import random
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

FaultAction = Literal[
    "reset_before",  # RST the client connection; the request never reaches upstream
    "reset_after",  # forward, let upstream apply it, then RST instead of answering
    "close_before",  # close cleanly (FIN) without forwarding
    "close_after",  # forward, then close cleanly without answering
    "delay_before",  # wait `delay` seconds, then forward and answer
    "delay_after",  # forward at once, wait `delay` seconds, then answer
    "hang",  # hold the connection open, never forward, never answer
    "gateway_after",  # forward (upstream applies it), answer `status` (504) as a gateway would
]
_ACTIONS: frozenset[str] = frozenset(FaultAction.__args__)  # type: ignore[attr-defined]
_MAX_HEADER_BYTES = 256 * 1024


@dataclass
class ProxyFault:
    """One rule: requests matching method/path/op get `action`, `times` times (None: always)."""

    action: FaultAction
    method: str | None = None
    path: str | None = None
    op: str | None = None
    times: int | None = 1
    delay: float = 0.0
    status: int = 504
    probability: float = 1.0
    hits: int = 0

    def matches(self, method: str, path: str, op: str | None) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is not None and self.path not in path:
            return False
        return self.op is None or self.op == op


@dataclass(frozen=True)
class ProxyRecord:
    """What the proxy did with one request."""

    method: str
    path: str
    op: str | None
    action: str  # "forward" or a FaultAction
    forwarded: bool
    status: int | None
    time: float


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    wants_close: bool = field(default=False)


class ProxyError(Exception):
    """The proxy was misused (a non-loopback address, an unknown action)."""


def _require_loopback(host: str) -> None:
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError) as exc:
        raise ProxyError(f"cannot resolve {host!r} to a loopback address: {exc}") from exc
    if not address.is_loopback:
        raise ProxyError(f"{host!r} is {address}, not a loopback address (127.0.0.0/8)")


class FaultProxy:
    """Forward HTTP from a loopback port to `upstream_host:upstream_port`, with faults.

    Use as a context manager, or call `start()` / `stop()`. `url_for(url)` rewrites a URL of
    the upstream server so it goes through the proxy. With `tls_context` the proxy serves
    HTTPS to the client (and plain HTTP upstream): a TLS front for certificate tests.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        upstream_timeout: float = 60.0,
        seed: int | None = None,
    ) -> None:
        _require_loopback(upstream_host)
        _require_loopback(listen_host)
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.port = listen_port
        self.tls_context = tls_context
        self.upstream_timeout = upstream_timeout
        self.log: list[ProxyRecord] = []
        self._faults: list[ProxyFault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()
        self._refusing = False
        self._random = random.Random(seed)

    @classmethod
    def for_url(cls, url: str, **kwargs: object) -> FaultProxy:
        """A proxy in front of the server that `url` points at."""
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ProxyError(f"upstream must be a plain http:// URL, got {url!r}")
        return cls(parts.hostname, parts.port or 80, **kwargs)  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._stopping.clear()
        self._listen()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._close_listener()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            _abort(client)
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def scheme(self) -> str:
        return "https" if self.tls_context is not None else "http"

    def url_for(self, url: str) -> str:
        """`url` (of the upstream server) rewritten to go through this proxy."""
        parts = urlsplit(url)
        netloc = f"{self.listen_host}:{self.port}"
        return urlunsplit((self.scheme, netloc, parts.path, parts.query, parts.fragment))

    # -- faults ------------------------------------------------------------------------------

    def add(
        self,
        action: FaultAction,
        *,
        method: str | None = None,
        path: str | None = None,
        op: str | None = None,
        times: int | None = 1,
        delay: float = 0.0,
        status: int = 504,
        probability: float = 1.0,
    ) -> ProxyFault:
        """Apply `action` to the next `times` requests matching method, path substring and op
        (each matching request with `probability`, drawn from the proxy's seeded generator)."""
        if action not in _ACTIONS:
            raise ProxyError(f"unknown proxy action {action!r}; expected one of {sorted(_ACTIONS)}")
        if delay < 0:
            raise ProxyError(f"delay must be >= 0 seconds, got {delay}")
        if not 0.0 <= probability <= 1.0:
            raise ProxyError(f"probability must be within [0, 1], got {probability}")
        fault = ProxyFault(action, method, path, op, times, delay, status, probability)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def refuse_connections(self) -> None:
        """Stop listening (clients get ECONNREFUSED) and drop every open connection: the
        region is down."""
        with self._lock:
            self._refusing = True
            clients = list(self._clients)
        self._close_listener()
        for client in clients:
            _abort(client)

    def accept_connections(self) -> None:
        """Listen again on the same port: the region is back."""
        with self._lock:
            self._refusing = False
        self._listen()

    @contextmanager
    def outage(self) -> Iterator[None]:
        self.refuse_connections()
        try:
            yield
        finally:
            self.accept_connections()

    def records(self, *, method: str | None = None, op: str | None = None) -> list[ProxyRecord]:
        with self._lock:
            return [
                r
                for r in self.log
                if (method is None or r.method == method) and (op is None or r.op == op)
            ]

    # -- internals ---------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"faultproxy:{self.port}", daemon=True
        )
        self._accept_thread.start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select([listener], [], [], 0.2)
                if not readable:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):
                return  # the listener was closed: outage or stop
            threading.Thread(target=self._serve_client, args=(client,), daemon=True).start()

    def _serve_client(self, raw: socket.socket) -> None:
        client: socket.socket = raw
        with self._lock:
            if self._refusing:
                _abort(raw)
                return
            self._clients.add(raw)
        try:
            if self.tls_context is not None:
                try:
                    client = self.tls_context.wrap_socket(raw, server_side=True)
                except (OSError, ssl.SSLError):
                    return  # the client rejected our certificate: that is the test's point
                with self._lock:
                    self._clients.add(client)
            reader = _Reader(client)
            while not self._stopping.is_set():
                request = reader.read_request()
                if request is None:
                    return
                if not self._exchange(client, request):
                    return
                if request.wants_close:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._clients.discard(raw)
                self._clients.discard(client)
            with suppress(OSError):
                client.close()

    def _pick_fault(self, method: str, path: str, op: str | None) -> ProxyFault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path, op):
                    continue
                if fault.probability < 1.0 and self._random.random() >= fault.probability:
                    continue
                fault.hits += 1
                return fault
        return None

    def _record(self, request: _Request, action: str, forwarded: bool, status: int | None) -> None:
        path, op = _path_and_op(request.target)
        with self._lock:
            self.log.append(
                ProxyRecord(request.method, path, op, action, forwarded, status, time.time())
            )

    def _exchange(self, client: socket.socket, request: _Request) -> bool:
        """Handle one request; False when the client connection is finished."""
        path, op = _path_and_op(request.target)
        fault = self._pick_fault(request.method, path, op)
        action = fault.action if fault is not None else "forward"
        if action in ("reset_before", "close_before"):
            self._record(request, action, False, None)
            _drop(client, reset=action == "reset_before")
            return False
        if action == "hang":
            self._record(request, action, False, None)
            _hold_until_closed(client, self._stopping)
            return False
        if action == "delay_before" and fault is not None:
            self._stopping.wait(fault.delay)
        response, status = self._forward(request)
        if action != "gateway_after":
            self._record(request, action, True, status)
        if action in ("reset_after", "close_after") or response is None:
            _drop(client, reset=action == "reset_after")
            return False
        if action == "delay_after" and fault is not None:
            self._stopping.wait(fault.delay)
        if action == "gateway_after" and fault is not None:
            body = f"fault proxy: gateway gave up waiting (upstream answered {status})".encode()
            response = _response_bytes(
                fault.status, "Gateway Timeout", [], body, request.wants_close
            )
            self._record(request, action, True, fault.status)
        client.sendall(response)
        return True

    def _forward(self, request: _Request) -> tuple[bytes | None, int | None]:
        try:
            upstream = socket.create_connection(self.upstream, timeout=self.upstream_timeout)
        except OSError:
            body = b"fault proxy: upstream unreachable"
            return _response_bytes(502, "Bad Gateway", [], body, request.wants_close), 502
        raw = b""
        with upstream:
            try:
                upstream.sendall(_request_bytes(request))
                while chunk := upstream.recv(65536):
                    raw += chunk
            except OSError:
                pass  # upstream dropped the connection: pass on what (if anything) it said
        try:
            status, reason, headers, body = _parse_response(raw)
        except (ValueError, IndexError):
            return None, None  # no answer at all: the client gets no answer either
        return _response_bytes(status, reason, headers, body, request.wants_close), status


class _Reader:
    """Reads whole HTTP/1.1 requests from a client socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def _read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionResetError("client closed mid-body")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionResetError("client closed mid-line")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read_request(self) -> _Request | None:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEADER_BYTES or not self._fill():
                return None
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("iso-8859-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        pairs = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        lookup = {name.lower(): value for name, value in pairs}
        if lookup.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int(self._read_line().split(b";")[0], 16):
                body += self._read_exact(size)
                self._read_line()
            while self._read_line():
                pass  # trailers
        else:
            body = self._read_exact(int(lookup.get("content-length", "0")))
        wants_close = lookup.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        return _Request(method, target, version, pairs, body, wants_close)


def _path_and_op(target: str) -> tuple[str, str | None]:
    parts = urlsplit(target)
    ops = parse_qs(parts.query).get("op")
    return parts.path, (ops[0] if ops else None)


_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "proxy-connection",
}


def _request_bytes(request: _Request) -> bytes:
    lines = [f"{request.method} {request.target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
    lines += [f"Content-Length: {len(request.body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("iso-8859-1") + request.body


def _parse_response(raw: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    status_parts = lines[0].split(" ", 2)
    status = int(status_parts[1])
    reason = status_parts[2] if len(status_parts) > 2 else ""
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    lookup = {k.lower(): v for k, v in headers}
    if lookup.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2 :]
    elif "content-length" in lookup:
        body = rest[: int(lookup["content-length"])]
    else:
        body = rest
    return status, reason, headers, body


def _response_bytes(
    status: int, reason: str, headers: list[tuple[str, str]], body: bytes, close: bool
) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP]
    lines += [f"Content-Length: {len(body)}", f"Connection: {'close' if close else 'keep-alive'}"]
    return ("\r\n".join([*lines, "", ""])).encode("iso-8859-1") + body


def _abort(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees ECONNRESET, as when a region dies."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with suppress(OSError):
        sock.close()


def _drop(sock: socket.socket, *, reset: bool) -> None:
    if reset:
        _abort(sock)
        return
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


def _hold_until_closed(sock: socket.socket, stopping: threading.Event) -> None:
    while not stopping.is_set():
        try:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable and not sock.recv(65536):
                return
        except (OSError, ValueError):
            return
