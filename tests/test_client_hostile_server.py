"""The hostile-server suite: MaasClient against a MAAS that answers slowly, endlessly, hugely or
in the wrong shape, for whoami, lookups (machines by hostname), polls (machines by id), a
deploy POST and every other answer the client parses.

Each case runs the call in a child process (natively, or under gevent's monkey-patching as
inside teuthology) that reports the error, how long the call took and its peak RSS. Every
case asserts: the typed error (`MaasTimeout`, `MaasProtocolError`, or `MaasOutcomeUnknown`
for a POST whose outcome cannot be known), the field or problem it names, a bound on time
(the deadline times the attempts, plus generous slack) and on memory (generous; the unbounded
client took 650 to 720 MB for a 200 MB answer), the number of requests (a POST is never
repeated blindly), a free action slot afterwards, and no secret and no request object in the
exception chain, its traceback or the child's debug log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _hostile_server import HostileServer, MiB, answer, drip_body, drip_headers, hang, huge
from _maas_wire import API_KEY, SECRET

TESTS = Path(__file__).resolve().parent
DEADLINE = 1.0
READ_TIMEOUT = 20.0  # far above the deadline: the per-read timeout is never what ends a case
SIZE_CASE_DEADLINE = 15.0  # size-cap cases: far above what reading to the cap takes
SLACK = 10.0  # generous: a loaded 2-core machine, a child interpreter starting up

CHILD = r"""
import json, sys
spec = json.loads(sys.argv[1])
if spec["gevent"]:
    from gevent import monkey
    monkey.patch_all()
import io, logging, resource, time, traceback
sys.path.insert(0, spec["tests"])
stream = io.StringIO()
handler = logging.StreamHandler(stream)
handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.DEBUG)
import requests, urllib3
from teuthology_maas.maas.client import MaasClient, RetryPolicy

client = MaasClient(
    spec["url"], spec["key"], timeout=spec["timeout"], deadline=spec["deadline"],
    max_response_bytes=spec["max_bytes"], max_concurrent_actions=1,
    retry=RetryPolicy(max_attempts=2, max_total=30.0, backoff_initial=0.05),
)
CALLS = {
    "whoami": lambda: client.whoami(),
    "version": lambda: client.version(),
    "get_config": lambda: client.get_config("node_timeout"),
    "lookup": lambda: client.list_machines(hostname=["smithi001"]),
    "poll": lambda: client.list_machines(id=["abc123", "def456"]),
    "get": lambda: client.get_machine("abc123"),
    "deploy": lambda: client.deploy("abc123", distro_series="ubuntu/jammy",
                                    user_data="#cloud-config\n"),
    "events": lambda: client.events(id="abc123"),
    "boot_resources": lambda: client.boot_resources(),
    "power_state": lambda: client.query_power_state("abc123"),
    "installation_output": lambda: client.installation_output("abc123"),
}
HOLDS_REQUEST = (requests.PreparedRequest, requests.Request, requests.Response,
                 requests.RequestException, urllib3.HTTPResponse, urllib3.exceptions.HTTPError)

def request_objects(exc):
    # Anything in the exception chain (causes, contexts, attributes) that holds a request.
    found, seen, todo = [], set(), [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, HOLDS_REQUEST):
            found.append(type(item).__name__)
        if isinstance(item, BaseException):
            todo += [item.__cause__, item.__context__, *item.args, *vars(item).values()]
    return found

result = {"base_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
started = time.monotonic()
try:
    result["returned"] = repr(CALLS[spec["call"]]())[:300]
except BaseException as exc:
    result["error"] = type(exc).__name__
    result["mro"] = [c.__name__ for c in type(exc).__mro__]
    result["message"] = str(exc)
    result["endpoint"] = getattr(exc, "endpoint", None)
    result["field"] = getattr(exc, "field", None)
    result["traceback"] = "".join(traceback.format_exception(exc))
    result["request_objects"] = request_objects(exc)
    del exc
result["elapsed"] = time.monotonic() - started
result["slot_free"] = client._transport.cap.acquire(blocking=False)
result["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
client.close()
result["log"] = stream.getvalue()
print(json.dumps(result))
"""


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


def run_child(
    server: HostileServer,
    call: str,
    *,
    gevent: bool = False,
    max_bytes: int = 64 * MiB,
    deadline: float = DEADLINE,
) -> dict[str, Any]:
    spec = {
        "gevent": gevent,
        "tests": str(TESTS),
        "url": server.url,
        "key": API_KEY,
        "timeout": READ_TIMEOUT,
        "deadline": deadline,
        "max_bytes": max_bytes,
        "call": call,
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    # Wherever the child wrote anything: no secret, in any of the forms it travels in.
    for text in (done.stdout, done.stderr, result["log"]):
        assert SECRET not in text and SECRET[:16] not in text
    assert "Traceback" not in done.stderr
    return result


def assert_typed(result: dict[str, Any], error: str) -> None:
    assert result.get("error") == error, result.get("message") or result.get("returned")
    assert result["request_objects"] == [], "the exception chain holds a signed request"
    assert SECRET not in result["traceback"]
    assert "MAAS " in result["message"] and "/MAAS/api/2.0/" in result["message"], result[
        "message"
    ]
    assert result["slot_free"], "the action slot is still held"


def growth_mb(result: dict[str, Any]) -> float:
    return (result["peak_rss_kb"] - result["base_rss_kb"]) / 1024


# -- time: every request has a deadline ------------------------------------------------------

SLOW = [
    # (call, behaviour, gevent, error)
    ("whoami", drip_headers, False, "MaasTimeout"),
    ("whoami", drip_headers, True, "MaasTimeout"),
    ("lookup", drip_body, False, "MaasTimeout"),
    ("lookup", drip_body, True, "MaasTimeout"),
    ("poll", hang, False, "MaasTimeout"),
    ("poll", drip_headers, True, "MaasTimeout"),
    ("get", drip_body, False, "MaasTimeout"),
    ("deploy", drip_headers, False, "MaasOutcomeUnknown"),
    ("deploy", drip_headers, True, "MaasOutcomeUnknown"),
    ("deploy", drip_body, False, "MaasOutcomeUnknown"),
    ("deploy", hang, False, "MaasOutcomeUnknown"),
    ("deploy", hang, True, "MaasOutcomeUnknown"),
]


@pytest.mark.parametrize(
    ("call", "behaviour", "gevent", "error"),
    SLOW,
    ids=[f"{c}-{b.__name__}-{'gevent' if g else 'native'}" for c, b, g, _ in SLOW],
)
def test_a_slow_or_silent_maas_ends_at_the_request_deadline(
    hostile, call, behaviour, gevent, error
):
    hostile.script = lambda request: behaviour()
    result = run_child(hostile, call, gevent=gevent)
    assert_typed(result, error)
    sent = len(hostile.requests)
    if error == "MaasOutcomeUnknown":
        assert sent == 1, "a POST of unknown outcome was repeated"
        assert "outcome unknown" in result["message"]
        assert f"{DEADLINE:g} s request deadline" in result["message"]
    else:
        assert sent == 2, "the retry policy allows one more attempt of a read"
        assert result["endpoint"] and "at http://127.0.0.1" in result["endpoint"]
        assert f"{DEADLINE:g} s request deadline" in result["message"]
    # Bounded: the deadline of each attempt, a backoff, generous slack; and it was the
    # deadline that ended each attempt, not the (much longer) read timeout.
    assert result["elapsed"] < sent * DEADLINE + 0.1 + SLACK
    assert result["elapsed"] >= sent * DEADLINE * 0.9
    assert result["elapsed"] < READ_TIMEOUT


# -- bytes: every answer has a size cap ------------------------------------------------------

HUGE = 200 * MiB
LARGE = [
    # (call, behaviour, max_bytes, error, fragment, growth bound MB)
    ("whoami", huge(HUGE), 64 * MiB, "MaasProtocolError", "4 MiB cap", 60),
    ("lookup", huge(HUGE, declared=True), 64 * MiB, "MaasProtocolError", "Content-Length", 40),
    ("poll", huge(HUGE, chunked=True), 64 * MiB, "MaasProtocolError", "64 MiB cap", 250),
    ("poll", huge(HUGE), 8 * MiB, "MaasProtocolError", "8 MiB cap", 80),
    ("events", huge(256 * MiB, gzip=True), 64 * MiB, "MaasProtocolError", "64 MiB cap", 250),
    ("get", huge(HUGE, gzip=True), 64 * MiB, "MaasProtocolError", "4 MiB cap", 60),
    ("deploy", huge(HUGE), 64 * MiB, "MaasOutcomeUnknown", "4 MiB cap", 60),
]


@pytest.mark.parametrize(
    ("call", "behaviour", "max_bytes", "error", "fragment", "bound"),
    LARGE,
    ids=["whoami", "lookup-declared", "poll-chunked", "poll-configured-cap", "events-gzip-bomb",
         "machine-gzip-bomb", "deploy-answer"],
)
def test_a_huge_answer_is_refused_at_its_cap_in_bounded_memory(
    hostile, call, behaviour, max_bytes, error, fragment, bound
):
    behaviour.prepare()  # a gzip bomb is compressed before the client's deadline starts
    hostile.script = lambda request: behaviour
    # The cap, not the deadline, must end the request: inflating a gzip bomb to its cap can
    # take longer than a second on a loaded machine, and a GET past its deadline is retried.
    result = run_child(hostile, call, max_bytes=max_bytes, deadline=SIZE_CASE_DEADLINE)
    assert_typed(result, error)
    assert fragment in result["message"]
    assert len(hostile.requests) == 1, "an oversized answer is not asked for again"
    assert growth_mb(result) < bound, f"grew {growth_mb(result):.0f} MB"
    assert result["elapsed"] < SLACK * 3


# -- shape: every answer is validated where it is parsed -------------------------------------

MACHINE = {"system_id": "abc123", "hostname": "smithi001", "status": 4}
SHAPES = [
    # (id, call, body, error, field, fragment)
    ("whoami-string", "whoami", "just a string", "MaasProtocolError", None,
     "a string where a whoami answer"),
    ("whoami-no-username", "whoami", {"is_superuser": False}, "MaasProtocolError", "username",
     "without 'username'"),
    ("whoami-number-username", "whoami", {"username": 5}, "MaasProtocolError", "username",
     "a number 5"),
    ("version-list", "version", [1, 2], "MaasProtocolError", None, "a list where a version"),
    ("config-object", "get_config", {"a": 1}, "MaasProtocolError", None, "config value"),
    ("lookup-object-for-list", "lookup", {"machines": [MACHINE]}, "MaasProtocolError", None,
     "an object where a list of machine objects"),
    ("lookup-no-system-id", "lookup", [{"hostname": "smithi001", "status": 4}],
     "MaasProtocolError", "system_id", "without 'system_id'"),
    ("lookup-status-text", "lookup", [{**MACHINE, "status": "Ready"}], "MaasProtocolError",
     "status", "a string 'Ready'"),
    ("poll-unknown-status", "poll", [{**MACHINE, "status": 99}], "MaasProtocolError", "status",
     "known MAAS status"),
    ("poll-no-status", "poll", [{"system_id": "abc123"}], "MaasProtocolError", "status",
     "without 'status'"),
    ("poll-tags-object", "poll", [{**MACHINE, "tag_names": {"a": 1}}], "MaasProtocolError",
     "tag_names", "list of strings"),
    ("poll-owner-data-list", "poll", [{**MACHINE, "owner_data": ["x"]}], "MaasProtocolError",
     "owner_data", "object of strings"),
    ("poll-hostile-hostname", "poll", [{**MACHINE, "hostname": "smithi001;touch x"}],
     "MaasProtocolError", "hostname", "a hostname"),
    ("poll-locked-string", "poll", [{**MACHINE, "locked": "yes"}], "MaasProtocolError", "locked",
     "true or false"),
    ("poll-list-of-strings", "poll", ["abc123"], "MaasProtocolError", None,
     "a string where a machine object"),
    ("machine-list", "get", [MACHINE], "MaasProtocolError", None,
     "a list where a machine object"),
    ("machine-html", "get", b"<html>proxy login</html>", "MaasProtocolError", None, "non-JSON"),
    ("machine-truncated", "get", b'{"system_id": "ab', "MaasProtocolError", None, "non-JSON"),
    ("machine-nested-deep", "get", b"[" * 200_000, "MaasProtocolError", None, "nested too deep"),
    ("machine-endless-integer", "get", b'{"status": 1' + b"0" * 20_000 + b"}",
     "MaasProtocolError", None, "non-JSON"),
    ("machine-not-utf8", "get", b'{"system_id": "\xff\xfe"}', "MaasProtocolError", None,
     "non-JSON"),
    ("events-list", "events", [], "MaasProtocolError", None, "a list where an events answer"),
    ("events-id-text", "events", {"events": [{"id": "x"}]}, "MaasProtocolError", "id",
     "an integer"),
    ("boot-resource-no-name", "boot_resources", [{"id": 1}], "MaasProtocolError", "name",
     "without 'name'"),
    ("power-state-string", "power_state", "on", "MaasProtocolError", None,
     "a string where a power state"),
    ("results-output-number", "installation_output", {"results": [{"output": 5}]},
     "MaasProtocolError", "output", "a number 5"),
    ("deploy-list", "deploy", [MACHINE], "MaasOutcomeUnknown", None,
     "a list where a machine object"),
    ("deploy-no-system-id", "deploy", {"status": 9}, "MaasOutcomeUnknown", None,
     "without 'system_id'"),
    ("deploy-html", "deploy", b"<html>oops</html>", "MaasOutcomeUnknown", None, "non-JSON"),
]


@pytest.mark.parametrize(
    ("call", "body", "error", "field", "fragment"),
    [case[1:] for case in SHAPES],
    ids=[case[0] for case in SHAPES],
)
def test_a_malformed_answer_is_a_typed_error_naming_the_field(
    hostile, call, body, error, field, fragment
):
    html = isinstance(body, bytes) and body.startswith(b"<")
    hostile.script = lambda request: answer(
        200, body, "text/html" if html else "application/json"
    )
    result = run_child(hostile, call)
    assert_typed(result, error)
    assert fragment in result["message"], result["message"]
    if error == "MaasProtocolError":
        assert result["field"] == field
        assert result["endpoint"] and "at http://127.0.0.1" in result["endpoint"]
    else:
        assert "outcome unknown" in result["message"]
        assert len(hostile.requests) == 1, "a POST whose answer was unusable was repeated"
    assert len(result["message"]) < 2000, "the excerpt of MAAS's answer is bounded"
    assert result["elapsed"] < SLACK
    assert growth_mb(result) < 60
