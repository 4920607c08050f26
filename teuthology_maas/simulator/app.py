"""The WSGI application: MAAS's URL layout, op dispatch, authentication and fault injection.

Werkzeug provides request parsing and the threaded server; routing is done here because
MAAS's rules are peculiar (mandatory trailing slashes with a catch-all 404, the `op` taken
from the query, the form body or an `/op-<name>` path suffix, anonymous handlers that answer
400 rather than 401).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request

from teuthology_maas.simulator._errors import TEXT, ApiError
from teuthology_maas.simulator.auth import AuthFailure, SignedRequest
from teuthology_maas.simulator.describe import API_HASH
from teuthology_maas.simulator.faults import RequestInfo
from teuthology_maas.simulator.forms import Body, FormError, Params, parse_body, parse_query
from teuthology_maas.simulator.inventory import UserSpec

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from teuthology_maas.simulator.core import Simulator

log = logging.getLogger(__name__)
API_PREFIX = "/MAAS/api/2.0/"
_PATH_OP = re.compile(r"^(?P<path>.*/)op-(?P<op>[A-Za-z0-9_]+)$")


class ConnectionDropped(ConnectionError):
    """Raised after the socket was shut down on purpose; the server just forgets the request."""


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    # piston-served answers carry the API hash; the describe view itself does not.
    piston: bool = True


def json_reply(
    data: Any, status: int = 200, content_type: str = "application/json; charset=utf-8"
) -> Reply:
    return Reply(status, json.dumps(data, indent=4, ensure_ascii=False).encode(), content_type)


def text_reply(text: str, status: int = 200) -> Reply:
    return Reply(status, text.encode(), TEXT)


@dataclass
class Call:
    """One authenticated (or anonymous) API call, as handlers see it."""

    method: str
    path: str
    user: UserSpec | None
    query: Params
    body: Body
    args: tuple[str, ...]
    base_url: str

    @property
    def authed(self) -> UserSpec:
        assert self.user is not None  # only auth tables are given calls without a user check
        return self.user


Handler = Callable[[Call], Any]
Table = dict[tuple[str, str | None], Handler]


@dataclass
class Resource:
    pattern: re.Pattern[str]
    auth: Table | None
    anon: Table | None = None
    machine_arg: bool = False  # first URL argument is a machine system_id


@dataclass
class RequestRecord:
    """One line of the request log (what tests and benchmarks read)."""

    method: str
    path: str
    op: str | None
    user: str | None
    status: int | None  # None: the connection was dropped without an answer
    time: float
    system_id: str | None = None
    duration: float = 0.0
    fault: str | None = None
    # The query then the form (or top-level JSON) parameters as (name, value), in the order
    # sent. oauth_* parameters are left out; user_data is kept as its length and SHA-256 only.
    params: tuple[tuple[str, str], ...] = ()
    # The order in which the region applied requests (assigned under its state lock), and the
    # machine the request was about as it was just before (status, owner, locked, owner_data):
    # what a test needs to tell whose deployment a request acted on.
    seq: int | None = None
    before: dict[str, Any] | None = None
    # Every machine object the answer carried, as (system_id, status_name), in answer order:
    # what MAAS had to render for it (a list read renders each machine it lists).
    shown: tuple[tuple[str, str], ...] = ()

    @property
    def rendered(self) -> int:
        """How many machine objects MAAS rendered into this answer."""
        return len(self.shown)

    def param(self, name: str) -> str | None:
        """The last value sent for `name` (Django's QueryDict.get), None if never sent."""
        values = self.param_list(name)
        return values[-1] if values else None

    def param_list(self, name: str) -> list[str]:
        return [value for key, value in self.params if key == name]


def logged_params(query: Params, body: Body) -> tuple[tuple[str, str], ...]:
    """What the request log keeps of a request's parameters (never credentials or user_data)."""
    items = [*query.items(), *body.form.items()]
    if body.is_json and isinstance(body.json_data, dict):
        items += [
            (str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in body.json_data.items()
        ]
    return tuple(
        (name, summarised_user_data(value) if name == "user_data" else value)
        for name, value in items
        if not name.startswith("oauth_")
    )


def machines_shown(result: Any) -> tuple[tuple[str, str], ...]:
    """(system_id, status_name) of the machine objects in a handler's result: the result
    itself, or the items of a list result."""
    items = result if isinstance(result, list) else [result]
    return tuple(
        (str(item["system_id"]), str(item.get("status_name", "")))
        for item in items
        if isinstance(item, dict) and item.get("node_type_name") == "Machine"
    )


def summarised_user_data(value: str) -> str:
    data = value.encode("utf-8", errors="surrogateescape")
    return f"<{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}>"


class MaasApp:
    """A WSGI callable serving one Simulator."""

    def __init__(self, sim: Simulator, resources: Iterable[Resource]) -> None:
        self.sim = sim
        self.resources = list(resources)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.time()
        request = Request(environ)
        record = RequestRecord(request.method, request.path, None, None, None, started)
        reply = self._handle(request, environ, record)
        record.status = reply.status
        record.duration = time.time() - started
        self.sim.request_log.append(record)
        headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))]
        headers += list(reply.headers.items())
        start_response(f"{reply.status} {_reason(reply.status)}", headers)
        return [reply.body]

    def _handle(self, request: Request, environ: WSGIEnvironment, record: RequestRecord) -> Reply:
        path = re.sub("/{2,}", "/", request.path)
        record.path = path
        if path == "/MAAS/api/version/":
            return text_reply("2.0")
        if path.startswith("/MAAS/api/1.0/"):
            return text_reply(
                "The 1.0 API is no longer available. Please use API version 2.0.", 410
            )
        if not path.startswith(API_PREFIX):
            return text_reply(f"Unknown API endpoint: {path}.", 404)
        relative = path[len(API_PREFIX) :]
        path_op = None
        if (found := _PATH_OP.match(relative)) is not None:
            relative, path_op = found.group("path"), found.group("op")
        resource, args = self._route(relative)
        if resource is None:
            return text_reply(f"Unknown API endpoint: {path}.", 404)
        query = parse_query(request.query_string.decode("latin-1"))
        try:
            body = (
                parse_body(request.content_type, request.get_data(cache=False))
                if request.method in ("POST", "PUT")
                else Body(Params())
            )
        except FormError as exc:
            record.params = logged_params(query, Body(Params()))
            return text_reply(str(exc), 400)
        record.params = logged_params(query, body)
        op = query.get("op") or body.form.get("op") or path_op
        record.op = op
        try:
            user = self.sim.verifier.authenticate(
                request.headers.get("Authorization"),
                query.as_lists_dict(),
                body.form.as_lists_dict(),
                signed=SignedRequest(
                    method=request.method,
                    url=request.host_url.rstrip("/") + request.path,
                    query=query.items(),
                    form=body.form.items() if body.urlencoded else [],
                ),
            )
        except AuthFailure as failure:
            if resource.auth is not None:
                return Reply(failure.status, failure.body.encode(), TEXT, dict(failure.headers))
            user = None  # anonymous-only resources (version, describe) never check credentials
        record.user = user.username if user else None
        table = resource.auth if user is not None and resource.auth is not None else resource.anon
        if table is None:
            if user is None:
                return text_reply("Forbidden", 401)
            table = {}
        machine_names: frozenset[str] = frozenset()
        if resource.machine_arg and args:
            record.system_id = args[0]
            machine_names = self._machine_names(args[0])
            if machine_names:
                record.system_id = next(n for n in machine_names if n in self.sim.state.machines)
        info = RequestInfo(request.method, relative, op, machine_names, record.user)
        drop_after = False
        for fault in self.sim.faults.for_request(info):
            record.fault = fault.kind
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind == "drop" and fault.when == "after":
                drop_after = True
            elif fault.kind == "drop":
                self._drop(environ, record)
            else:
                status = fault.status or 500
                headers = (
                    {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                )
                return Reply(
                    status, fault.response_body().encode(), fault.response_content_type(), headers
                )
        reply = self._dispatch(request, table, resource, op, user, query, body, args, record)
        if drop_after:
            self._drop(environ, record)
        return reply

    def _route(self, relative: str) -> tuple[Resource | None, tuple[str, ...]]:
        for resource in self.resources:
            found = resource.pattern.fullmatch(relative)
            if found is not None:
                return resource, found.groups()
        return None, ()

    def _machine_names(self, ident: str) -> frozenset[str]:
        try:
            return frozenset(self.sim.state.find(ident).names())
        except ApiError:
            return frozenset()

    def _dispatch(
        self,
        request: Request,
        table: Table,
        resource: Resource,
        op: str | None,
        user: UserSpec | None,
        query: Params,
        body: Body,
        args: tuple[str, ...],
        record: RequestRecord | None = None,
    ) -> Reply:
        method = request.method
        handler = table.get((method, op))
        if handler is None:
            exported = {m for table_ in (resource.auth, resource.anon) if table_ for m, _ in table_}
            if method not in exported:
                allow = ", ".join(sorted(exported))
                return Reply(405, b"", TEXT, {"Allow": allow})
            return text_reply(f"Unrecognised signature: method={method} op={op}", 400)
        call = Call(
            method=method,
            path=request.path,
            user=user,
            query=query.without("op"),
            body=Body(body.form.without("op"), body.json_data, body.is_json),
            args=args,
            base_url=request.host_url.rstrip("/"),
        )
        try:
            with self.sim.state.lock:
                self.sim.state.settle()
                if record is not None:
                    self._note_before(record, body)
                result = handler(call)
        except ApiError as exc:
            return Reply(exc.status, exc.body.encode(), exc.content_type, exc.headers)
        except Exception as exc:  # MAAS answers an unhandled error with 500 and its text
            log.exception("simulator handler failed for %s %s", method, request.path)
            return text_reply(str(exc), 500)
        if record is not None:
            record.shown = machines_shown(result)
        reply = result if isinstance(result, Reply) else json_reply(result)
        if reply.piston:
            reply.headers.setdefault("X-MAAS-API-Hash", API_HASH)
            reply.headers.setdefault("Vary", "Authorization")
        return reply

    def _note_before(self, record: RequestRecord, body: Body) -> None:
        """Number the request and keep its machine's state before it (caller holds the
        state lock)."""
        record.seq = self.sim.next_seq()
        ident = record.system_id or body.form.get("system_id")
        machine = self.sim.state.machines.get(ident) if ident else None
        if machine is not None:
            record.before = {
                "status": machine.status.label,
                "owner": machine.owner,
                "locked": machine.locked,
                "owner_data": dict(machine.workload_annotations),
            }

    def _drop(self, environ: WSGIEnvironment, record: RequestRecord) -> None:
        # Logged first: the client may look at the log as soon as it sees the connection close.
        record.duration = time.time() - record.time
        self.sim.request_log.append(record)
        connection = environ.get("werkzeug.socket")
        if isinstance(connection, socket.socket):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        raise ConnectionDropped("connection dropped by an injected fault")


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def resource(
    pattern: str, auth: Table | None, anon: Table | None = None, *, machine: bool = False
) -> Resource:
    return Resource(re.compile(pattern), auth, anon, machine)


__all__ = [
    "Call",
    "ConnectionDropped",
    "MaasApp",
    "Reply",
    "RequestRecord",
    "json_reply",
    "logged_params",
    "text_reply",
]
