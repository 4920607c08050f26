"""A hostile MAAS in front of the simulator, met by whole create() runs and by the CLI.

`HostileServer` forwards every request to the simulator except the one a case scripts: that
one drips, hangs, is huge, or answers the wrong shape (after MAAS applied it, or without
forwarding it at all). create() must either ride it out (an unusable answer to a POST is an
unknown outcome, resolved by re-reading the machine: applied exactly once) or fail with a
typed error before changing anything; the CLI must report it in one line, never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from _hostile_server import HostileServer, Request, answer, drip_body, forward_then, hang, huge

from tests._cli_support import run_cli, write_config
from tests.fixtures_reliability import applied, state_changing
from teuthology_maas.errors import MaasProtocolError
from teuthology_maas.maas.client import MaasClient, RetryPolicy
from teuthology_maas.node.provisioner import MaasProvisioner

DEADLINE = 1.0
SLACK = 20.0


@pytest.fixture
def hostile(fault_lab) -> Iterator[HostileServer]:
    server = HostileServer(upstream=fault_lab.server.url)
    yield server
    server.close()


def provisioner(lab: Any, hostile: HostileServer, hostname: str = "smithi001") -> MaasProvisioner:
    config = lab.config(api_url=hostile.url)
    client = MaasClient(
        hostile.url,
        config.api_key,
        timeout=5.0,
        deadline=DEADLINE,
        retry=RetryPolicy(max_attempts=4, max_total=60.0, backoff_initial=0.05),
    )
    lab.clients.append(client)
    return MaasProvisioner(hostname, config=config, client=client)


class once:  # lower case: it reads as what it does, once("POST", "deploy", hang())
    """A script that misbehaves on the first matching request only (`fired` says if it did)."""

    def __init__(self, method: str, op: str | None, behaviour: Any, *, query: str = "") -> None:
        self.method, self.op, self.behaviour, self.query = method, op, behaviour, query
        self.fired = 0

    def __call__(self, request: Request) -> Any:
        if (
            not self.fired
            and request.method == self.method
            and (self.op is None or request.op == self.op)
            and (not self.query or self.query in dict(request.query))
        ):
            self.fired += 1
            return self.behaviour
        return None


def assert_no_secret(lab: Any, *texts: str) -> None:
    secret = lab.key_for("teuthology").split(":")[2]
    for text in texts:
        assert secret not in text


# -- create() rides out an unusable answer to a POST --------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(forward_then(drip_body()), id="answer-drips-past-the-deadline"),
        pytest.param(forward_then(hang()), id="no-answer-after-applying"),
        pytest.param(forward_then(answer(200, ["not", "a", "machine"])), id="answer-a-list"),
        pytest.param(forward_then(answer(200, {"status": 9})), id="answer-without-system-id"),
        pytest.param(forward_then(huge(50 * 1024 * 1024)), id="answer-of-50-MB"),
    ],
)
def test_an_unusable_deploy_answer_is_resolved_by_rereading(fault_lab, hostile, behaviour):
    hostile.script = script = once("POST", "deploy", behaviour)
    started = time.monotonic()
    provisioner(fault_lab, hostile).create()
    assert script.fired == 1
    assert time.monotonic() - started < DEADLINE + SLACK
    assert applied(fault_lab, "deploy", "smithi001") == 1, "deployed more than once"
    assert len(hostile.matching("POST", "deploy")) == 1, "a deploy MAAS applied was re-sent"
    assert fault_lab.status("smithi001") == "Deployed"


def test_a_deploy_that_never_reached_maas_is_sent_again_after_the_reread(fault_lab, hostile):
    hostile.script = script = once("POST", "deploy", hang())  # not forwarded: never applied
    provisioner(fault_lab, hostile).create()
    assert script.fired == 1
    assert applied(fault_lab, "deploy", "smithi001") == 1
    assert len(hostile.matching("POST", "deploy")) == 2
    assert fault_lab.status("smithi001") == "Deployed"


def test_a_garbled_poll_is_ridden_out_by_the_poller(fault_lab, hostile):
    hostile.script = script = once("GET", None, answer(200, {"not": "a list"}), query="id")
    provisioner(fault_lab, hostile).create()
    assert script.fired == 1
    assert fault_lab.status("smithi001") == "Deployed"
    polls = [r for r in hostile.matching("GET") if r.path.endswith("/machines/")]
    assert any("id" in dict(r.query) for r in polls)


# -- create() refuses before changing anything ---------------------------------------------------


@pytest.mark.parametrize(
    ("script", "field"),
    [
        pytest.param(once("GET", "whoami", huge(200 * 1024 * 1024)), None, id="whoami-200MB"),
        pytest.param(once("GET", "whoami", answer(200, "teuthology")), None, id="whoami-string"),
        pytest.param(
            once("GET", None, answer(200, [{"hostname": "smithi001", "status": 4}]),
                 query="hostname"),
            "system_id",
            id="lookup-without-system-id",
        ),
        pytest.param(
            once("GET", None, answer(200, {"smithi001": 4}), query="hostname"),
            None,
            id="lookup-object",
        ),
    ],
)
def test_a_malformed_read_fails_create_before_any_change(fault_lab, hostile, script, field):
    hostile.script = script
    with pytest.raises(MaasProtocolError) as caught:
        provisioner(fault_lab, hostile).create()
    assert script.fired == 1
    assert caught.value.field == field
    assert caught.value.endpoint and hostile.url in caught.value.endpoint
    assert state_changing(fault_lab.sim) == [], "MAAS was asked to change something"
    assert fault_lab.status("smithi001") == "Ready"
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    assert_no_secret(fault_lab, str(caught.value), repr(caught.value))


# -- the CLI: one line, never a traceback ---------------------------------------------------------


def _cli_config(tmp_path, lab, hostile):
    handle = SimpleNamespace(url=hostile.url, api_key=lab.key_for("teuthology"))
    return write_config(tmp_path, handle, http_timeout=5, http_deadline=5)


@pytest.mark.parametrize(
    ("argv", "script"),
    [
        pytest.param(["machines"], once("GET", None, answer(200, {"x": 1})), id="machines"),
        pytest.param(
            ["machines"], once("GET", None, huge(200 * 1024 * 1024, chunked=True)),
            id="machines-200MB",
        ),
        pytest.param(
            ["events", "smithi001"], once("GET", "query", answer(200, [1, 2])), id="events"
        ),
        pytest.param(
            ["deploy", "smithi001"], once("GET", "whoami", answer(200, [])), id="deploy"
        ),
        pytest.param(
            ["release", "smithi001"],
            once("GET", None, answer(200, [{"system_id": 7, "status": 4}])),
            id="release",
        ),
        pytest.param(["doctor"], once("GET", None, answer(200, "3.5")), id="doctor"),
    ],
)
def test_the_cli_reports_a_hostile_answer_in_one_line(tmp_path, fault_lab, hostile, argv, script):
    hostile.script = script
    config = _cli_config(tmp_path, fault_lab, hostile)
    result = run_cli(*argv, config=config)
    assert script.fired == 1
    assert result.code != 0
    output = result.out + result.err
    assert "Traceback" not in output
    assert "MaasProtocolError" in output or "FAIL  api" in output, output
    assert "answered" in output and hostile.url in output, output
    assert_no_secret(fault_lab, output)
    assert state_changing(fault_lab.sim) == []
