"""A loopback HTTP server that plays a hostile (or broken) MAAS.

Per request, `script(request)` picks a behaviour: an answer dripped a byte at a time (headers
or body), no answer at all, hundreds of megabytes (declared, chunked, close-delimited or a
gzip bomb), or JSON of the wrong shape. When the script returns None the request is forwarded
to `upstream` (the simulator), so a whole create() can meet a single hostile answer; a
behaviour may also forward first (MAAS applies the request) and then misbehave.

Every answer closes its connection, so one connection carries one request.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import socket
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

MiB = 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    forwarded: bool = False
    applied_status: int | None = None  # upstream's status when forwarded

    @property
    def op(self) -> str | None:
        return dict(self.query).get("op")


Behaviour = Callable[["HostileServer", socket.socket, Request], None]


def _send(conn: socket.socket, data: bytes) -> None:
    conn.sendall(data)


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'X')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(
    status: int = 200, body: Any = None, content_type: str = "application/json"
) -> Behaviour:
    """A complete answer; `body` bytes as they are, anything else as JSON."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    def behave(server: HostileServer, conn: socket.socket, request: Request) -> None:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(data)))]
        _send(conn, _head(status, headers) + data)

    return behave


def drip_headers(interval: float = 0.05) -> Behaviour:
    """The status line, then a header one byte at a time, forever."""

    def behave(server: HostileServer, conn: socket.socket, request: Request) -> None:
        _send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: ")
        while not server.stopped.wait(interval):
            _send(conn, b"a")

    return behave


def drip_body(interval: float = 0.05) -> Behaviour:
    """Complete headers announcing a body that then comes one byte at a time, forever."""

    def behave(server: HostileServer, conn: socket.socket, request: Request) -> None:
        headers = [("Content-Type", "application/json"), ("Content-Length", "100000")]
        _send(conn, _head(200, headers) + b"[")
        while not server.stopped.wait(interval):
            _send(conn, b" ")

    return behave


def hang() -> Behaviour:
    """Read the request, answer nothing, keep the connection open."""

    def behave(server: HostileServer, conn: socket.socket, request: Request) -> None:
        server.stopped.wait()

    return behave


def huge(
    size: int, *, declared: bool = False, chunked: bool = False, gzip: bool = False
) -> Behaviour:
    """`size` bytes of a JSON list, as fast as the client reads: with a Content-Length
    (`declared`), chunked, or delimited by closing; `gzip`: a small compressed body that
    inflates to `size` bytes."""
    block = b'{"system_id": "abc123", "status": 4}, ' * 1700  # ~64 KiB

    def behave(server: HostileServer, conn: socket.socket, request: Request) -> None:
        headers = [("Content-Type", "application/json")]
        if gzip:
            body = _gzip_bomb(size)
            headers += [("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))]
            _send(conn, _head(200, headers) + body)
            return
        if declared:
            headers.append(("Content-Length", str(size)))
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        _send(conn, _head(200, headers))
        sent = 0
        while sent < size and not server.stopped.is_set():
            piece = block[: size - sent]
            _send(conn, b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
        if chunked:
            _send(conn, b"0\r\n\r\n")

    behave.prepare = lambda: _gzip_bomb(size) if gzip else None  # type: ignore[attr-defined]
    return behave


@functools.cache
def _gzip_bomb(size: int) -> bytes:
    """A gzip body of about size/1000 bytes that inflates to `size` bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    spaces = b" " * MiB
    parts = [packer.compress(b"[")]
    parts += [packer.compress(spaces) for _ in range(size // MiB)]
    return b"".join(parts) + packer.flush()


def forward_then(behaviour: Behaviour) -> Behaviour:
    """Forward the request upstream (MAAS applies it), throw the real answer away, and answer
    with `behaviour` instead."""

    def behave(server: HostileServer, conn: socket.socket, request: Request) -> None:
        server.forward(request)
        behaviour(server, conn, request)

    return behave


@dataclass
class HostileServer:
    upstream: str | None = None
    script: Callable[[Request], Behaviour | None] = field(default=lambda request: None)

    def __post_init__(self) -> None:
        self.requests: list[Request] = []
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="hostile-maas").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/MAAS/"

    def matching(self, method: str, op: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method and (op is None or r.op == op)]

    def close(self) -> None:
        self.stopped.set()
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # ---- serving ----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
        try:
            request = self._read(conn)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
            behaviour = self.script(request)
            if behaviour is None:
                behaviour = self._forward_answer if self.upstream else answer(404, {"x": "no"})
            behaviour(self, conn, request)
        except OSError:
            pass  # the client hung up: what a hostile server would see too
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _read(self, conn: socket.socket) -> Request | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk or len(data) > MiB:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        url = urlsplit(target)
        query = parse_qsl(url.query, keep_blank_values=True)
        return Request(method, url.path, query, headers, body)

    def forward(self, request: Request) -> http.client.HTTPResponse:
        """Send `request` to the upstream and return its (fully read) answer."""
        assert self.upstream is not None
        parts = urlsplit(self.upstream)
        upstream = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        target = request.path + ("?" + urlencode(request.query) if request.query else "")
        headers = {
            name: value
            for name, value in request.headers.items()
            if name not in ("host", "connection", "accept-encoding")
        }
        upstream.request(request.method, target, body=request.body or None, headers=headers)
        response = upstream.getresponse()
        response.data = response.read()  # type: ignore[attr-defined]
        upstream.close()
        request.forwarded = True
        request.applied_status = response.status
        return response

    def _forward_answer(self, server: HostileServer, conn: socket.socket, request: Request) -> None:
        response = self.forward(request)
        data = response.data  # type: ignore[attr-defined]
        headers = [
            ("Content-Type", response.getheader("Content-Type", "application/json")),
            ("Content-Length", str(len(data))),
        ]
        retry_after = response.getheader("Retry-After")
        if retry_after:
            headers.append(("Retry-After", retry_after))
        _send(conn, _head(response.status, headers) + data)

