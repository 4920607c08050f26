"""Serving the simulator over HTTP: Werkzeug's threaded WSGI server in a background thread.

Werkzeug is already a dependency and its server is a maintained, threaded HTTP/1.1 server
with keep-alive; it also hands the application the client socket, which is how injected
"dropped connection" faults close a connection without answering.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import socket
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from teuthology_maas.simulator.core import Simulator

log = logging.getLogger(__name__)
# The simulator's clock is looked at least this often (real seconds) ...
TICK = 0.02
# ... and at most this often, even when a transition is due at once.
MIN_TICK = 0.0005


def loopback_address(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    """The family and address to bind for `host`: the name is resolved and every address it
    resolves to must be loopback (a name is not trusted for what it looks like:
    `127.attacker.example.com` may resolve anywhere). ValueError otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(
            f"the simulator only listens on loopback addresses (127.0.0.0/8, ::1); "
            f"{host!r} does not resolve ({exc})"
        ) from None
    found = [(family, str(sockaddr[0])) for family, _, _, _, sockaddr in infos]
    outside = [a for _, a in found if not ipaddress.ip_address(a.split("%", 1)[0]).is_loopback]
    if not found or outside:
        raise ValueError(
            f"the simulator only listens on loopback addresses (127.0.0.0/8, ::1), not "
            f"{host!r} (it resolves to {', '.join(dict.fromkeys(outside)) or 'nothing'})"
        )
    return found[0]


def _listening_socket(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = (
            "; the port is in use: stop what uses it, or choose another port (0: any free one)"
            if exc.errno == errno.EADDRINUSE
            else ""
        )
        raise OSError(
            exc.errno, f"the simulator cannot listen on {address} port {port}: {exc.strerror}{hint}"
        ) from None
    return sock


class _QuietHandler(WSGIRequestHandler):
    """Keep-alive HTTP/1.1; access lines go to our logger at DEBUG, not to stderr."""

    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug('"%s" %s', self.requestline, code)

    def log(self, type: str, message: str, *args: Any) -> None:
        if type == "error":
            log.warning(message, *args)
        else:
            log.debug(message, *args)

    def setup(self) -> None:
        super().setup()
        tracker = getattr(self.server, "connections", None)
        if tracker is not None:
            tracker.add(self.connection)

    def finish(self) -> None:
        tracker = getattr(self.server, "connections", None)
        if tracker is not None:
            tracker.discard(self.connection)
        super().finish()


class ServerHandle:
    """A running simulator server; `stop()` (or leaving the `with` block) shuts it down."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        family, address = loopback_address(host, port)
        self.sim = sim
        # Bound here, on the address checked above (not by name again), so that a busy port
        # is an OSError rather than Werkzeug's SystemExit.
        listening = _listening_socket(family, address, port)
        try:
            self._server: BaseWSGIServer = make_server(
                address,
                port,
                sim.app,
                threaded=True,
                request_handler=_QuietHandler,
                fd=listening.fileno(),
            )
        finally:
            listening.close()  # Werkzeug serves a duplicate of it
        self._server.connections = set()  # type: ignore[attr-defined]
        self.host = f"[{address}]" if family == socket.AF_INET6 else address
        self.port = int(self._server.port)
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"maas-sim:{self.port}",
            daemon=True,
        )
        self._ticker = threading.Thread(
            target=self._tick, name=f"maas-sim-clock:{self.port}", daemon=True
        )
        self._thread.start()
        self._ticker.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/MAAS/"

    @property
    def api_url(self) -> str:
        return self.url + "api/2.0/"

    def _tick(self) -> None:
        # Apply due transitions even when nobody polls, so SSH-backed files appear on time:
        # at the moment they are due, not up to a tick later (at a time factor of 40 a 20 ms
        # tick put a node's SSH up to 0.8 simulated seconds after MAAS said Deployed).
        while not self._stopped.wait(self._pause()):
            try:
                self.sim.settle()
            except Exception:  # never let the ticker die silently
                log.exception("simulator clock tick failed")

    def _pause(self) -> float:
        try:
            return max(MIN_TICK, self.sim.real_seconds_to_next(TICK))
        except Exception:  # never let the ticker die silently
            log.exception("simulator clock tick failed")
            return TICK

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        # Keep-alive connections would otherwise keep being served by their threads.
        for connection in list(self._server.connections):  # type: ignore[attr-defined]
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(timeout=5)
        self._ticker.join(timeout=5)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServerHandle(url={self.url!r})"
