"""A paddles-compatible lock server TEST DOUBLE: in memory, real HTTP on loopback.

This is not a product and not a paddles replacement. It exists so that the real teuthology
commands (teuthology-lock, the supervisor's reimage and unlock, teuthology-reimage,
teuthology-node-cleanup) can run end to end in tests and in `teuthology-maas demo` without a
lab. It implements exactly the paddles endpoints those paths touch, with paddles' error shapes:

- `GET /nodes/` (filters: machine_type `a|b`, locked, up, is_vm, locked_by, os_type, os_version,
  arch, count; booleans as 0/1/true/false), `POST /nodes/` (create), `GET|PUT /nodes/<fqdn>/`,
  `PUT /nodes/<fqdn>/lock/`, `POST /nodes/lock_many/`, `POST /nodes/unlock_many/`,
  `GET /nodes/<fqdn>/jobs/?count=N`;
- `POST /runs/<run>/jobs/` (400 "... already exists" for a known job_id),
  `GET|PUT|DELETE /runs/<run>/jobs/<id>/`, `GET /runs/<run>/jobs/`, `GET|HEAD /runs/<run>/`.

Errors are JSON `{"message": ...}` with 400, 403, 404 or 503. Request bodies are parsed as
JSON whatever the Content-Type (teuthology often sends none), and `//` in paths is collapsed.
Nothing is persisted; there is no authentication.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_NODE_FIELDS = (
    "name", "description", "up", "machine_type", "arch", "is_vm", "vm_host", "os_type",
    "os_version", "locked", "locked_by", "locked_since", "mac_address", "ssh_pub_key", "user",
)
_LOCK_FIELDS = frozenset({"locked", "locked_by", "locked_since"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", "none", ""})


class LockServerError(Exception):
    """An error answered to the client as paddles does: HTTP status plus {"message": ...}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LockRequest:
    """One request the double answered (for tests asserting teuthology's traffic)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _as_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise LockServerError(400, f"{field} must be a boolean (0/1/true/false), got {value!r}")


class LockServer:
    """The in-memory state of the double plus its HTTP server (see the module docstring)."""

    def __init__(self, nodes: Iterable[Mapping[str, Any]] = ()) -> None:
        self._lock = threading.RLock()
        self._nodes: dict[str, dict[str, Any]] = {}
        self._runs: dict[str, dict[str, dict[str, Any]]] = {}
        self.request_log: list[LockRequest] = []
        for node in nodes:
            self.add_node(**node)

    # ----------------------------------------------------------------- state, for tests
    def add_node(
        self,
        name: str,
        machine_type: str,
        *,
        arch: str | None = "x86_64",
        up: bool = True,
        locked: bool = False,
        locked_by: str | None = None,
        description: str | None = None,
        os_type: str | None = None,
        os_version: str | None = None,
        is_vm: bool = False,
        ssh_pub_key: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Add a node (`name` is the FQDN, as paddles stores it) and return a copy of it."""
        node: dict[str, Any] = dict.fromkeys(_NODE_FIELDS)
        node.update(
            name=name, machine_type=machine_type, arch=arch, up=up, locked=locked,
            locked_by=locked_by, description=description, os_type=os_type,
            os_version=os_version, is_vm=is_vm, ssh_pub_key=ssh_pub_key,
            locked_since=_now() if locked else None, **extra,
        )
        with self._lock:
            self._nodes[name] = node
            return dict(node)

    def node(self, name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._nodes[name])

    def nodes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(node) for node in self._nodes.values()]

    def add_job(self, run: str, job_id: str, **fields: Any) -> dict[str, Any]:
        """Record a job (e.g. `status="dead"`, `targets={fqdn: key}`) as the scheduler would."""
        with self._lock:
            job = {"name": run, "job_id": str(job_id), "status": "queued", **fields}
            job.setdefault("updated", _now())
            self._runs.setdefault(run, {})[str(job_id)] = job
            return dict(job)

    def job(self, run: str, job_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._runs[run][str(job_id)])

    def requests_to(self, method: str, pattern: str) -> list[LockRequest]:
        """The logged requests whose method matches and whose path matches `pattern` (regex)."""
        with self._lock:
            return [r for r in self.request_log
                    if r.method == method and re.fullmatch(pattern, r.path)]

    # ----------------------------------------------------------------- paddles semantics
    def _get_node(self, name: str) -> dict[str, Any]:
        node = self._nodes.get(name)
        if node is None:
            raise LockServerError(404, f"Node not found: {name}")
        return node

    def _list_nodes(self, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        selected = list(self._nodes.values())
        for key, values in query.items():
            value = values[-1]
            if key == "count":
                continue
            if key == "machine_type":
                types = set(value.split("|"))
                selected = [n for n in selected if n["machine_type"] in types]
            elif key in ("locked", "up", "is_vm"):
                wanted = _as_bool(value, key)
                selected = [n for n in selected if bool(n[key]) is wanted]
            elif key in ("locked_by", "os_type", "os_version", "arch", "description"):
                selected = [n for n in selected if n[key] == value]
            else:
                raise LockServerError(400, f"unknown filter {key!r} for GET /nodes/")
        if "count" in query:
            selected = selected[: int(query["count"][-1])]
        return [dict(node) for node in selected]

    def _lock_node(self, node: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        if "locked" not in body:
            raise LockServerError(400, "locked is required (true or false)")
        locked = _as_bool(body["locked"], "locked")
        locked_by = body.get("locked_by")
        if not locked_by:
            raise LockServerError(400, "locked_by is required")
        description = body.get("description")
        if locked:
            if node["locked"]:
                if node["locked_by"] == locked_by and node["description"] == description:
                    return dict(node)
                raise LockServerError(
                    403, f"Cannot lock {node['name']}: already locked by {node['locked_by']}"
                )
            node.update(locked=True, locked_by=locked_by, description=description,
                        locked_since=_now())
        else:
            if not node["locked"]:
                raise LockServerError(403, f"Cannot unlock {node['name']}: it is not locked")
            if node["locked_by"] != locked_by:
                raise LockServerError(
                    403,
                    f"Cannot unlock {node['name']} as {locked_by}: "
                    f"it is locked by {node['locked_by']}",
                )
            if description and description != node["description"]:
                # paddles' own rule (models/nodes.py _check_for_update)
                raise LockServerError(403, "Cannot unlock - description values must match")
            node.update(locked=False, locked_by=None, description=None, locked_since=None)
        return dict(node)

    def _lock_many(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        for key in ("count", "locked_by", "machine_type"):
            if not body.get(key):
                raise LockServerError(400, f"{key} is required")
        count = int(body["count"])
        types = set(str(body["machine_type"]).split("|"))
        free = [
            n for n in self._nodes.values()
            if not n["locked"] and n["up"] and n["machine_type"] in types
            and all(n[f] == body[f] for f in ("arch", "os_type", "os_version") if body.get(f))
        ]
        if len(free) < count:
            raise LockServerError(503, f"only {len(free)} nodes available")
        for node in free[:count]:
            node.update(locked=True, locked_by=body["locked_by"],
                        description=body.get("description"), locked_since=_now())
        return [dict(node) for node in free[:count]]

    def _unlock_many(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        locked_by, names = body.get("locked_by"), body.get("names")
        if not locked_by or not isinstance(names, list):
            raise LockServerError(400, "locked_by and names (a list) are required")
        nodes = [self._get_node(name) for name in names]
        for node in nodes:
            if node["locked"] and node["locked_by"] != locked_by:
                raise LockServerError(
                    403, f"Cannot unlock {node['name']}: it is locked by {node['locked_by']}"
                )
        for node in nodes:
            node.update(locked=False, locked_by=None, description=None, locked_since=None)
        return [dict(node) for node in nodes]

    def _update_node(self, node: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        if body.get("name") not in (None, node["name"]):
            raise LockServerError(400, f"cannot rename {node['name']} to {body['name']}")
        if "locked" in body:
            self._lock_node(node, body)
        for key, value in body.items():
            if key in _LOCK_FIELDS or key == "name":
                continue
            if key not in _NODE_FIELDS:
                raise LockServerError(400, f"unknown node field {key!r}")
            node[key] = _as_bool(value, key) if key in ("up", "is_vm") else value
        return dict(node)

    def _node_jobs(self, name: str, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        jobs = [
            dict(job) for run in self._runs.values() for job in run.values()
            if name in (job.get("targets") or {})
            or any(t.split("@")[-1] == name for t in (job.get("targets") or {}))
        ]
        jobs.sort(key=lambda job: str(job.get("updated")), reverse=True)
        count = int(query.get("count", ["0"])[-1])
        return jobs[:count] if count else jobs

    def _post_job(self, run: str, body: Mapping[str, Any]) -> dict[str, Any]:
        job_id = body.get("job_id")
        if job_id is None:
            raise LockServerError(400, "job_id is required")
        jobs = self._runs.setdefault(run, {})
        if str(job_id) in jobs:
            raise LockServerError(400, f"job with job_id {job_id} already exists")
        jobs[str(job_id)] = {**body, "name": run, "job_id": str(job_id), "updated": _now()}
        return {"job_id": str(job_id)}

    def _job(self, run: str, job_id: str) -> dict[str, Any]:
        job = self._runs.get(run, {}).get(job_id)
        if job is None:
            raise LockServerError(404, f"job {run}/{job_id} not found")
        return job

    def handle(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        """Answer one request: (HTTP status, JSON-able body). Used by the HTTP handler."""
        split = urlsplit(raw_path)
        path = re.sub("/+", "/", unquote(split.path)).rstrip("/") + "/"
        query = parse_qs(split.query, keep_blank_values=True)
        status, answer = 200, None
        try:
            with self._lock:
                answer = self._route(method, path, query, body)
        except LockServerError as exc:
            status, answer = exc.status, {"message": exc.message}
        except (TypeError, ValueError) as exc:
            status, answer = 400, {"message": f"bad request: {exc}"}
        with self._lock:
            self.request_log.append(LockRequest(method, path, query, body, status))
        return status, answer

    def _route(self, method: str, path: str, query: Mapping[str, list[str]], body: Any) -> Any:
        parts = path.strip("/").split("/") if path != "/" else []
        body = body if isinstance(body, Mapping) else {}
        match (method, parts):
            case ("GET", ["nodes"]):
                return self._list_nodes(query)
            case ("POST", ["nodes"]):
                if body.get("name") in self._nodes:
                    raise LockServerError(400, f"Node {body['name']} already exists")
                if not body.get("name"):
                    raise LockServerError(400, "name is required")
                fields = {k: v for k, v in body.items() if k in _NODE_FIELDS}
                fields.setdefault("machine_type", None)
                return self.add_node(**fields)
            case ("POST", ["nodes", "lock_many"]):
                return self._lock_many(body)
            case ("POST", ["nodes", "unlock_many"]):
                return self._unlock_many(body)
            case ("GET", ["nodes", name]):
                return dict(self._get_node(name))
            case ("PUT", ["nodes", name]):
                return self._update_node(self._get_node(name), body)
            case ("PUT", ["nodes", name, "lock"]):
                return self._lock_node(self._get_node(name), body)
            case ("GET", ["nodes", name, "jobs"]):
                self._get_node(name)
                return self._node_jobs(name, query)
            case ("GET" | "HEAD", ["runs", run]):
                if run not in self._runs:
                    raise LockServerError(404, f"run {run} not found")
                return {"name": run, "jobs": list(self._runs[run].values())}
            case ("GET", ["runs", run, "jobs"]):
                return list(self._runs.get(run, {}).values())
            case ("POST", ["runs", run, "jobs"]):
                return self._post_job(run, body)
            case ("GET", ["runs", run, "jobs", job_id]):
                return dict(self._job(run, job_id))
            case ("PUT", ["runs", run, "jobs", job_id]):
                job = self._job(run, job_id)
                job.update({k: v for k, v in body.items() if k not in ("name", "job_id")})
                job["updated"] = _now()
                return dict(job)
            case ("DELETE", ["runs", run, "jobs", job_id]):
                self._job(run, job_id)
                del self._runs[run][job_id]
                return {}
        raise LockServerError(404, f"no such endpoint: {method} {path}")

    # ----------------------------------------------------------------- HTTP
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> LockServerHandle:
        """Serve on loopback in a background thread; `.url` is the lock_server URL."""
        if not host.startswith("127."):
            raise ValueError(f"the lock server double serves loopback only, not {host!r}")
        server = ThreadingHTTPServer((host, port), _handler_for(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="paddles-double", daemon=True)
        thread.start()
        return LockServerHandle(server, thread)


class LockServerHandle:
    """A running lock server double; stop() (or leaving the `with` block) shuts it down."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}/"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LockServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(state: LockServer) -> type[BaseHTTPRequestHandler]:
    class PaddlesHandler(BaseHTTPRequestHandler):
        server_version = "paddles-test-double"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                self._send(400, {"message": "request body is not valid JSON"})
                return
            status, answer = state.handle(self.command, self.path, body)
            self._send(status, answer)

        def _send(self, status: int, answer: Any) -> None:
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the per-request stderr line; the request_log has it."""

    return PaddlesHandler
