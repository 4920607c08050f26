"""A paddles-compatible lock server TEST DOUBLE: in memory, real HTTP on loopback.

This is not a product and not a paddles replacement. It exists so that the real teuthology
commands (teuthology-lock, -schedule, -suite, -dispatcher and its supervisors, -reimage,
-node-cleanup, -kill, -results) can run end to end in tests and in `teuthology-maas demo`
without a lab. It answers the paddles endpoints those paths and this project touch, with
the rules real paddles (ceph/paddles on PostgreSQL) applies (teuthology_maas.testing.
_paddles_state has them):

- `GET /nodes/` (filters locked, up, machine_type `a|b`, os_type, os_version, locked_by, count;
  any other parameter, arch and is_vm included, is ignored as paddles ignores it),
  `POST /nodes/` (up and arch NULL unless given; answers `{}`), `GET|PUT /nodes/<fqdn>/` (PUT
  ignores unknown keys and answers `{}`; both answer 500, storing nothing, for a value a
  paddles column cannot hold: text past its String(n) size, a non-boolean for up/is_vm/locked,
  a null is_vm, an object or list, a vm_host naming no node), `PUT|POST /nodes/<fqdn>/lock/`,
  `POST /nodes/lock_many/` (needs count, locked_by, machine_type and description; takes `up`
  nodes only, in no defined order), `POST /nodes/unlock_many/` (exactly names and locked_by;
  not atomic), `GET /nodes/<fqdn>/jobs/?count=N`;
- `POST /runs/<run>/jobs/`, `GET|PUT|DELETE /runs/<run>/jobs/<id>/`,
  `GET /runs/<run>/jobs/?status=&fields=`, `GET|HEAD /runs/<run>/`.

Lock and unlock answer `{name, locked, locked_by, machine_type, is_vm}`. A re-lock by the
holder needs the same non-null description; an unlock that sends a description must match it;
an unlock keeps the description. Errors are JSON `{"message": ...}` with 400, 403, 404 or 503,
except where paddles answers pecan's HTML 404 page (a missing job or run, a node's job list
for a missing node, an unknown path, and any path with `//`, as gunicorn-served paddles
does: so a `results_server` ending in `/` fails here as it fails in production). Request bodies
are JSON whatever the Content-Type. Two `lock_many` calls that overlap in time may make the
loser fail with 403 "Cannot lock an already-locked node", as a serializable transaction does.
Nothing is persisted; there is no authentication.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from teuthology_maas.testing import _paddles_state as rules
from teuthology_maas.testing._paddles_state import PaddlesError

__all__ = ["LockRequest", "LockServer", "LockServerError", "LockServerHandle"]

LockServerError = PaddlesError  # the name tests and older callers use

NOT_FOUND_HTML = (
    "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n"
    "  <h1>404 Not Found</h1>\n  The resource could not be found.<br/><br/>\n </body>\n</html>"
)


@dataclass(frozen=True)
class LockRequest:
    """One request the double answered (for tests asserting teuthology's traffic)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int


class LockServer:
    """The in-memory state of the double plus its HTTP server (see the module docstring).

    `lock_many_window`: seconds between choosing lock_many's nodes and locking them, the
    window in which a concurrent lock_many makes this one fail (paddles' transaction).
    `seed`: the order lock_many takes free nodes in (random otherwise)."""

    def __init__(
        self,
        nodes: Iterable[Mapping[str, Any]] = (),
        *,
        log_href_template: str = rules.LOG_HREF_TEMPLATE,
        lock_many_window: float = 0.01,
        seed: int | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._nodes: dict[str, dict[str, Any]] = {}
        self._runs: dict[str, dict[str, dict[str, Any]]] = {}
        self._job_ids = iter(range(1, 1 << 62))
        self._rng = random.Random(seed)
        self.log_href_template = log_href_template
        self.lock_many_window = lock_many_window
        self.request_log: list[LockRequest] = []
        # (method, node, key): what a node POST or PUT sent that paddles silently ignores
        self.ignored_keys: list[tuple[str, str, str]] = []
        for node in nodes:
            self.add_node(**node)

    # ----------------------------------------------------------------- state, for tests
    def add_node(
        self,
        name: str,
        machine_type: str | None,
        *,
        arch: str | None = "x86_64",
        up: bool | None = True,
        locked: bool = False,
        locked_by: str | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Add a node in service (`name` is the FQDN, as paddles stores it; up, with an arch,
        as teuthology's inventory leaves it: pass `up=None, arch=None` for a node only
        registered) and return a copy of it."""
        node = rules.new_node(name)
        values = {"machine_type": machine_type, "arch": arch, "up": up,
                  "description": description, **fields}
        unknown = set(values) - rules.NODE_UPDATE_KEYS
        if unknown:
            raise ValueError(f"unknown node field(s) {sorted(unknown)}; paddles has "
                             f"{sorted(rules.NODE_FIELDS)}")
        rules.update_node(node, values, check=False)
        node.update(locked=locked, locked_by=locked_by if locked else None,
                    locked_since=rules.now_text() if locked else None)
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
            job = rules.new_job(run)
            rules.update_job(job, {"job_id": str(job_id), "status": "queued", **fields})
            self._runs.setdefault(run, {})[str(job_id)] = job
            return self._job_json(run, job)

    def job(self, run: str, job_id: str) -> dict[str, Any]:
        """A job as GET /runs/<run>/jobs/<id>/ shows it."""
        with self._lock:
            return self._job_json(run, self._runs[run][str(job_id)])

    def jobs(self, run: str) -> list[dict[str, Any]]:
        with self._lock:
            return [self._job_json(run, job) for job in self._runs.get(run, {}).values()]

    def requests_to(self, method: str, pattern: str) -> list[LockRequest]:
        """The logged requests whose method matches and whose path matches `pattern` (regex)."""
        with self._lock:
            return [r for r in self.request_log
                    if r.method == method and re.fullmatch(pattern, r.path)]

    # ----------------------------------------------------------------- nodes
    def _get_node(self, name: str, *, missing: str = "node not found") -> dict[str, Any]:
        node = self._nodes.get(name)
        if node is None:
            raise PaddlesError(404, missing)
        return node

    def _create_node(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not name:
            raise PaddlesError(400, "could not find required key: 'name'")
        if name in self._nodes:
            raise PaddlesError(400, f"Node with name {name} already exists")
        self._note_ignored("POST", name, rules.check_node_body(self._nodes, body, creating=True))
        node = rules.new_node(str(name))
        rules.update_node(node, body, check=False)
        self._nodes[node["name"]] = node
        return {}

    def _note_ignored(self, method: str, name: str, keys: list[str]) -> None:
        self.ignored_keys.extend((method, name, key) for key in keys)

    def _lock_many(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        count = rules.lock_many_count(body)
        with self._lock:
            chosen = rules.lock_many_candidates(list(self._nodes.values()), body, self._rng)
            if len(chosen) < count:
                raise PaddlesError(503, f"only {len(chosen)} nodes available")
            chosen = chosen[:count]
        if self.lock_many_window > 0:
            time.sleep(self.lock_many_window)  # the transaction between its SELECT and UPDATE
        update = {"locked": True, "locked_by": body["locked_by"],
                  "description": body["description"]}
        with self._lock:
            for node in chosen:  # all or nothing, as the transaction is
                rules.check_lock_change(node, update)
            for node in chosen:
                rules.update_node(node, update)
            return [dict(node) for node in chosen]

    def _lock_node(self, node: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        rules.update_node(node, body)
        return rules.lock_answer(node)

    def _node_jobs(self, name: str, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        jobs = [(run, job) for run, run_jobs in self._runs.items() for job in run_jobs.values()
                if name in rules.job_targets(job)]
        jobs.sort(key=lambda item: str(item[1]["posted"]), reverse=True)
        count = int(query.get("count", ["0"])[-1] or 0)
        return [self._job_json(run, job) for run, job in (jobs[:count] if count else jobs)]

    # ----------------------------------------------------------------- jobs
    def _job_json(self, run: str, job: Mapping[str, Any]) -> dict[str, Any]:
        return rules.job_json(job, run, self.log_href_template)

    def _post_job(self, run: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping) or not body:
            raise PaddlesError(400, "could not decode JSON body")
        jobs = self._runs.setdefault(run, {})
        if "job_id" in body and str(body["job_id"]) in jobs:
            raise PaddlesError(400, f"job with job_id {body['job_id']} already exists")
        job = rules.new_job(run)
        rules.update_job(job, body)
        if job["job_id"] is None:  # paddles as the queue backend numbers the job itself
            job["job_id"] = str(next(self._job_ids))
        for name in rules.job_targets(job):  # paddles registers unknown targets
            if name not in self._nodes:
                self._nodes[name] = rules.new_node(name)
                self._nodes[name]["machine_type"] = job.get("machine_type")
        jobs[job["job_id"]] = job
        return {"job_id": job["job_id"]}

    def _job(self, run: str, job_id: str, missing: str | None = None) -> dict[str, Any]:
        job = self._runs.get(run, {}).get(job_id)
        if job is None:
            raise PaddlesError(404, missing or "Not Found", html=missing is None)
        return job

    def _run_jobs(self, run: str, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        if run not in self._runs:
            raise PaddlesError(404, "Not Found", html=True)
        jobs = [self._job_json(run, job) for job in self._runs[run].values()]
        status = query.get("status", [""])[-1]
        if status:
            jobs = [job for job in jobs if job["status"] == status]
        jobs.sort(key=lambda job: str(job["posted"]), reverse=True)
        fields = query.get("fields", [""])[-1]
        return [rules.job_slice(job, fields) for job in jobs] if fields else jobs

    def _run(self, run: str) -> dict[str, Any]:
        if run not in self._runs:
            raise PaddlesError(404, "Not Found", html=True)
        jobs = [self._job_json(run, job) for job in self._runs[run].values()]
        types = {job["machine_type"] for job in jobs if job["machine_type"]}
        return {"name": run, "machine_type": types.pop() if len(types) == 1 else None,
                "jobs_count": len(jobs), "jobs": jobs}

    # ----------------------------------------------------------------- requests
    def handle(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        """Answer one request: (HTTP status, JSON-able body, or a str of HTML)."""
        split = urlsplit(raw_path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        status, answer = 200, None
        try:
            answer = self._route(method, path, query, body)
        except PaddlesError as exc:
            status = exc.status
            answer = NOT_FOUND_HTML if exc.html else {"message": exc.message}
        except (TypeError, ValueError) as exc:
            status, answer = 400, {"message": f"bad request: {exc}"}
        with self._lock:
            self.request_log.append(LockRequest(method, path, query, body, status))
        return status, answer

    def _route(self, method: str, path: str, query: Mapping[str, list[str]], body: Any) -> Any:
        if "//" in path:
            raise PaddlesError(404, "Not Found", html=True)
        parts = [part for part in path.split("/") if part]
        if isinstance(body, Mapping):
            body = dict(body)
        elif method in ("PUT", "POST"):
            raise PaddlesError(400, "could not decode JSON body")
        if parts[:2] == ["nodes", "lock_many"] and method == "POST":
            return self._lock_many(body)  # takes the state lock itself, twice
        with self._lock:
            return self._route_locked(method, parts, query, body)

    def _route_locked(self, method: str, parts: list[str], query: Mapping[str, list[str]],
                      body: Any) -> Any:
        match (method, parts):
            case ("GET", ["nodes"]):
                return rules.list_nodes(self._nodes.values(), query)
            case ("POST", ["nodes"]):
                return self._create_node(body)
            case ("POST", ["nodes", "unlock_many"]):
                return rules.unlock_many(self._nodes.values(), body)
            case (("GET" | "POST"), ["nodes", ("lock_many" | "unlock_many")]):
                raise PaddlesError(400, "this URI only supports POST requests")
            case ("GET", ["nodes", name]):
                return dict(self._get_node(name))
            case ("PUT", ["nodes", name]):
                node = self._get_node(name, missing="attempted to update a non-existent node")
                self._note_ignored("PUT", name, rules.check_node_body(self._nodes, body))
                rules.update_node(node, body)
                return {}
            case (("PUT" | "POST"), ["nodes", name, "lock"]):
                return self._lock_node(self._get_node(name), body)
            case ("GET", ["nodes", name, "jobs"]):
                if name not in self._nodes:
                    raise PaddlesError(404, "Not Found", html=True)
                return self._node_jobs(name, query)
            case (("GET" | "HEAD"), ["runs", run]):
                return self._run(run)
            case ("GET", ["runs", run, "jobs"]):
                return self._run_jobs(run, query)
            case ("POST", ["runs", run, "jobs"]):
                return self._post_job(run, body)
            case ("GET", ["runs", run, "jobs", job_id]):
                return self._job_json(run, self._job(run, job_id))
            case ("PUT", ["runs", run, "jobs", job_id]):
                job = self._job(run, job_id, "attempted to update a non-existent job")
                rules.update_job(job, body)
                return {}
            case ("DELETE", ["runs", run, "jobs", job_id]):
                self._job(run, job_id, "attempted to delete a non-existent job")
                del self._runs[run][job_id]
                return {}
        raise PaddlesError(404, "Not Found", html=True)

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
    """A running lock server double; stop() (or leaving the `with` block) shuts it down.

    `url` has no trailing slash: teuthology builds `f"{results_server}/runs/..."`, and a
    trailing slash there gives `//runs/`, which paddles behind gunicorn answers with 404."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

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
                self._send(400, {"message": "could not decode JSON body"})
                return
            # http.server turns a leading "//" into "/"; the request line has the real path
            words = self.requestline.split()
            raw_path = words[1] if len(words) >= 2 else self.path
            status, answer = state.handle(self.command, raw_path, body)
            self._send(status, answer)

        def _send(self, status: int, answer: Any) -> None:
            html = isinstance(answer, str)
            payload = answer.encode() if html else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=UTF-8" if html
                             else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the per-request stderr line; the request_log has it."""

    return PaddlesHandler
