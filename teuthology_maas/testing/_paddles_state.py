"""What the paddles double knows and the rules it applies, as real paddles applies them.

Facts from ceph/paddles (models/nodes.py, models/jobs.py, controllers/nodes.py,
controllers/jobs.py), read, not copied, and from running the same flows against paddles on
PostgreSQL. Only what teuthology and this project touch is modelled. The HTTP side (routes,
error bodies) is teuthology_maas.testing.lockserver.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

# A node as GET /nodes/ and GET /nodes/<name>/ show it (no "user": paddles has no such column).
NODE_FIELDS = (
    "name", "description", "up", "machine_type", "is_vm", "vm_host", "os_type", "os_version",
    "arch", "locked", "locked_since", "locked_by", "mac_address", "ssh_pub_key",
)
# What PUT /nodes/<name>/ (and POST /nodes/, and the lock calls) may change; others are ignored.
NODE_UPDATE_KEYS = frozenset({
    "arch", "description", "os_type", "os_version", "is_vm", "locked", "locked_by",
    "locked_since", "mac_address", "machine_type", "ssh_pub_key", "up", "vm_host",
})
# GET /nodes/ filters paddles applies; every other query parameter is ignored.
NODE_FILTERS = ("locked", "machine_type", "os_type", "os_version", "locked_by", "up", "count")
# The subset of a node a lock or unlock answers with.
LOCK_ANSWER = ("name", "locked", "locked_by", "machine_type", "is_vm")
_TEXT_COLUMNS = frozenset({"os_type", "os_version", "arch", "machine_type"})
_BOOL_COLUMNS = frozenset({"up", "is_vm", "locked"})

JOB_KEYS = (
    "archive_path", "description", "duration", "email", "failure_reason", "flavor", "job_id",
    "kernel", "last_in_suite", "machine_type", "name", "nuke_on_error", "os_type",
    "os_version", "overrides", "owner", "pid", "roles", "sentry_event", "status", "success",
    "branch", "seed", "sha1", "subset", "suite", "suite_branch", "suite_path", "suite_relpath",
    "suite_repo", "suite_sha1", "targets", "tasks", "timestamp", "teuthology_branch",
    "verbose", "pcp_grafana_url", "priority", "user", "queue", "package_source",
)
JOB_TIMES = ("posted", "started", "updated")
# Job columns that are text in paddles: a number sent for them (pid, job_id) reads back as text.
JOB_TEXT_KEYS = frozenset(JOB_KEYS) - {
    "duration", "kernel", "last_in_suite", "nuke_on_error", "overrides", "priority", "roles",
    "seed", "success", "targets", "tasks", "timestamp", "verbose",
}
JOB_STATUSES = ("pass", "fail", "queued", "running", "dead", "unknown", "waiting")
FINAL_STATUSES = ("pass", "fail")  # a later "status" never replaces these
# paddles' default (config.py.in): where a job's teuthology.log is published.
LOG_HREF_TEMPLATE = "http://qa-proxy.ceph.com/teuthology/{run_name}/{job_id}/teuthology.log"

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class PaddlesError(Exception):
    """Answered as paddles does: HTTP status plus {"message": ...}, or, for what paddles
    answers with pecan's abort(404), an HTML page (`html=True`)."""

    def __init__(self, status: int, message: str, *, html: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.html = html


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def as_bool(value: Any, field: str) -> bool:
    """A boolean as PostgreSQL casts it (JSON true/false, 0/1, 't', 'false', ...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise PaddlesError(400, f"{field} must be a boolean (0/1/true/false), got {value!r}")


def column_value(key: str, value: Any) -> Any:
    """A value as its paddles column stores it: text columns turn 9 into '9'."""
    if value is None:
        return None
    if key in _BOOL_COLUMNS:
        return as_bool(value, key)
    if key in _TEXT_COLUMNS:
        return str(value)
    return value


def new_node(name: str) -> dict[str, Any]:
    """A node as `Node(name)` creates it: up and arch NULL, unlocked, not a VM."""
    node: dict[str, Any] = dict.fromkeys(NODE_FIELDS)
    node.update(name=name, is_vm=False, locked=False)
    return node


def check_lock_change(node: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """paddles' Node._check_for_update: what a lock or unlock request may do to `node`."""
    if "locked" not in values:
        return
    locking = as_bool(values["locked"], "locked")
    description = values.get("description")
    who = values.get("locked_by")
    verb = "lock" if locking else "unlock"
    if node["locked"] == locking:
        # a re-lock by the holder needs the same, non-null description; an unlocked node
        # cannot be unlocked again
        if node["locked_by"] != who or description is None or description != node["description"]:
            raise PaddlesError(403, f"Cannot {verb} an already-{verb}ed node")
    elif not who:
        raise PaddlesError(400, f"Cannot {verb} without specifying locked_by")
    elif not locking and who != node["locked_by"]:
        raise PaddlesError(403, "Cannot unlock - locked_by values must match")
    elif not locking and description and description != node["description"]:
        raise PaddlesError(403, "Cannot unlock - description values must match")


# Column sizes (String(n)) and NOT NULL booleans of paddles' nodes table: PostgreSQL refuses a
# value that does not fit, and paddles, which does not catch it, answers 500.
TEXT_LIMITS = {"name": 256, "machine_type": 32, "arch": 16, "os_type": 32, "os_version": 16,
               "locked_by": 64, "mac_address": 17}
_NOT_NULL = frozenset({"is_vm", "locked"})


def check_node_body(nodes: Mapping[str, Mapping[str, Any]], body: Mapping[str, Any], *,
                    creating: bool = False) -> list[str]:
    """What POST /nodes/ and PUT /nodes/<name>/ do with `body` before anything is stored (the
    transaction is rolled back on any failure): a value a column cannot hold is a 500, as
    SQLAlchemy 1.3 on PostgreSQL fails it. Returns the keys paddles ignores (not columns)."""
    for key, value in body.items():
        if key not in NODE_UPDATE_KEYS:
            continue
        if value is None:
            if key in _NOT_NULL:
                raise PaddlesError(500, f'null value in column "{key}" violates not-null '
                                        "constraint")
            continue
        if key in _BOOL_COLUMNS:
            # SQLAlchemy's Boolean takes True, False, None (and 0 and 1), nothing else
            if not isinstance(value, bool) and value not in (0, 1):
                raise PaddlesError(500, f"Not a boolean value: {value!r}")
        elif isinstance(value, Mapping | list):
            raise PaddlesError(500, f"can't adapt type '{type(value).__name__}'")
        elif key == "vm_host" and value not in nodes:
            raise PaddlesError(500, "No row was found for one()")
        limit = TEXT_LIMITS.get(key)
        if limit is not None and len(str(value)) > limit:
            raise PaddlesError(500, f"value too long for type character varying({limit})")
    name = body.get("name")  # a column only on creation: PUT ignores it
    if creating and isinstance(name, str) and len(name) > TEXT_LIMITS["name"]:
        raise PaddlesError(500, "value too long for type character varying(256)")
    return sorted(str(key) for key in body if key not in NODE_UPDATE_KEYS and key != "name")


def update_node(node: dict[str, Any], values: Mapping[str, Any], *, check: bool = True) -> None:
    """paddles' Node.update: lock rules first (not for a node being created), then every
    allowed key (others ignored)."""
    if check:
        check_lock_change(node, values)
    was_locked = node["locked"]
    for key, value in values.items():
        if key in NODE_UPDATE_KEYS:
            node[key] = column_value(key, value)
    if "locked" in values:
        if node["locked"] != was_locked:
            node["locked_since"] = now_text() if node["locked"] else None
        if not node["locked"]:
            node["locked_by"] = None


def lock_answer(node: Mapping[str, Any]) -> dict[str, Any]:
    return {key: node[key] for key in LOCK_ANSWER}


def node_matches(node: Mapping[str, Any], key: str, value: str) -> bool:
    """One GET /nodes/ filter. A NULL `up` matches neither up=1 nor up=0, as in SQL."""
    if key in ("locked", "up"):
        return node[key] is not None and node[key] is as_bool(value, key)
    if key == "machine_type":
        return node["machine_type"] in value.split("|")
    return bool(node[key] == value)


def list_nodes(nodes: Iterable[dict[str, Any]], query: Mapping[str, list[str]]
               ) -> list[dict[str, Any]]:
    """GET /nodes/: paddles' filters (an empty value is no filter), then `count`."""
    selected = list(nodes)
    for key in NODE_FILTERS:
        value = query.get(key, [""])[-1]
        if key != "count" and value:
            selected = [node for node in selected if node_matches(node, key, value)]
    count = query.get("count", [""])[-1]
    if count:
        if not count.isdigit():
            raise PaddlesError(400, "count must be an integer")
        selected = selected[: int(count)]
    return [dict(node) for node in selected]


def lock_many_count(body: Mapping[str, Any]) -> int:
    """Validate a lock_many request as paddles does; return how many nodes it asks for."""
    required = ("count", "locked_by", "machine_type", "description")
    if not set(required) <= set(body):
        raise PaddlesError(400, f"must pass these fields: {', '.join(required)}")
    count = body["count"]
    if not isinstance(count, int) or count < 1:
        raise PaddlesError(400, "cannot lock less than 1 node")
    if not body["machine_type"]:
        raise PaddlesError(400, "must specify machine_type")
    return count


def unlock_many(nodes: Iterable[dict[str, Any]], body: Mapping[str, Any]
                ) -> list[dict[str, Any]]:
    """POST /nodes/unlock_many/: exactly `names` and `locked_by`; one commit per node, so a
    refusal (403) leaves the nodes unlocked before it unlocked."""
    if sorted(body) != ["locked_by", "names"]:
        raise PaddlesError(400, "must pass these fields: names, locked_by")
    names = body["names"]
    if not isinstance(names, list):
        raise PaddlesError(400, f"'names' must be a list; got: {type(names)}")
    found = [node for node in nodes if node["name"] in names]
    if len(found) != len(names):
        raise PaddlesError(400, "Could not find all nodes!")
    answers = []
    for node in found:
        update_node(node, {"locked": False, "locked_by": body["locked_by"]})
        answers.append(lock_answer(node))
    return answers


def lock_many_candidates(
    nodes: list[dict[str, Any]], body: Mapping[str, Any], rng: random.Random
) -> list[dict[str, Any]]:
    """The free, up nodes lock_many may take, in no defined order (as a LIMIT without ORDER
    BY gives): tests must not assume which nodes they get."""
    types = str(body["machine_type"]).split("|")
    wanted = {key: column_value(key, body.get(key)) for key in ("os_type", "os_version", "arch")}
    found = [
        node for node in nodes
        if node["machine_type"] in types and node["up"] is True and node["locked"] is False
        and all(node[key] == value for key, value in wanted.items() if value)
    ]
    rng.shuffle(found)
    return found


# ---- jobs ---------------------------------------------------------------------------------


def new_job(run: str) -> dict[str, Any]:
    job: dict[str, Any] = dict.fromkeys(JOB_KEYS + JOB_TIMES)
    job.update(name=run, posted=now_text())
    return job


def update_job(job: dict[str, Any], data: Mapping[str, Any]) -> None:
    """paddles' Job.set_or_update: a "status" never replaces pass or fail; "success" (when no
    "status" is sent) sets pass/fail/unknown; a job first "running" gets `started`."""
    data = dict(data)
    job["updated"] = now_text()
    old_status = job["status"]
    if "status" in data:
        status = data.pop("status")
        if status not in JOB_STATUSES:
            raise PaddlesError(400, f"Job status must be one of: {JOB_STATUSES}")
        if job["status"] not in FINAL_STATUSES:
            job["status"] = status
    elif "success" in data:
        success = data.pop("success")
        job["status"] = {True: "pass", False: "fail"}.get(success, "unknown")
        job["success"] = success
    elif job["success"] is None and job["status"] is None:
        job["status"] = "unknown"
    if old_status in (None, "queued") and job["status"] == "running":
        job["started"] = now_text()
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key == "updated":
            job["updated"] = value
        elif key in JOB_KEYS:
            text = key in JOB_TEXT_KEYS and isinstance(value, int | float)
            job[key] = str(value) if text and not isinstance(value, bool) else value


def job_targets(job: Mapping[str, Any]) -> list[str]:
    """The node names a job's targets name (`user@fqdn` or `fqdn` keys)."""
    return [key.split("@")[-1] for key in (job.get("targets") or {})]


def job_json(job: Mapping[str, Any], run: str, log_href_template: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "log_href": log_href_template.format(run_name=run, job_id=job["job_id"])
    }
    answer.update((key, job.get(key)) for key in JOB_KEYS + JOB_TIMES)
    return answer


def job_slice(job: Mapping[str, Any], fields: str) -> dict[str, Any]:
    """GET .../jobs/?fields=a,b: only those keys; an unknown one is a 400."""
    answer = {}
    for field in fields.strip(",").split(","):
        if field.startswith("_"):
            continue
        if field not in job:
            raise PaddlesError(400, "an invalid field was specified")
        answer[field] = job[field]
    return answer
