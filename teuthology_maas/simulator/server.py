"""Serving the simulator over HTTP: Werkzeug's threaded WSGI server in a background thread.

Werkzeug is already a dependency and its server is a maintained, threaded HTTP/1.1 server
with keep-alive; it also hands the application the client socket, which is how injected
"dropped connection" faults close a connection without answering.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from teuthology_maas.simulator.core import Simulator

log = logging.getLogger(__name__)
_LOOPBACK_PREFIXES = ("127.", "localhost", "::1")


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
        if not host.startswith(_LOOPBACK_PREFIXES):
            raise ValueError(
                f"the simulator only listens on loopback addresses (127.0.0.0/8), not {host!r}"
            )
        self.sim = sim
        self._server: BaseWSGIServer = make_server(
            host, port, sim.app, threaded=True, request_handler=_QuietHandler
        )
        self._server.connections = set()  # type: ignore[attr-defined]
        self.host = host
        self.port = int(self._server.server_port)
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
        # Apply due transitions even when nobody polls, so SSH-backed files appear on time.
        while not self._stopped.wait(0.02):
            try:
                self.sim.settle()
            except Exception:  # never let the ticker die silently
                log.exception("simulator clock tick failed")

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
