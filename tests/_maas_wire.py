"""Helpers for tests that inspect MAAS requests as they go on the wire."""

from __future__ import annotations

import email.parser
import email.policy
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class FakeMaas:
    """Serves /MAAS/api/2.0/ from `behaviour(method, path, op) -> action` where action is
    ("json", status, body), ("drop",) or ("late", seconds, status, body)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.hold = 0.0
        self.behaviour = lambda method, path, op: (
            "json",
            200,
            {"system_id": "abc123", "hostname": "n1", "status": 9},
        )
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                params = parse_qsl(url.query)
                op = dict(params).get("op")
                with fake.lock:
                    fake.requests.append(
                        {
                            "method": self.command,
                            "path": url.path,
                            "query": params,
                            "headers": dict(self.headers),
                            "body": body,
                            "peer": self.client_address,
                        }
                    )
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.hold:
                        time.sleep(fake.hold)
                    action = fake.behaviour(self.command, url.path, op)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1
                if action[0] == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action[0] == "late":
                    time.sleep(action[1])
                    action = ("json", *action[2:])
                _, status, payload = action
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (read timeout)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/MAAS/"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
