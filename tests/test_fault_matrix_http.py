"""Fault matrix, part 1: MAAS answering with errors.

503 bursts with Retry-After, 409 with and without Retry-After on allocate/deploy/release/abort,
500, 504 (applied and not applied), slow answers beyond the request timeout. Each scenario
runs create() and/or release() against the simulator (through the fault proxy), then checks
every machine: nothing leaked, no other user's node touched, the error names the cause, and
no operation took effect twice (counted in the simulator's request log).
"""

from __future__ import annotations

import re

import pytest

from tests.fixtures_reliability import applied, attempt, posts

NODE = "smithi001"


def put_in_deploying(lab, hostname: str = NODE) -> None:
    """A deployment of ours in flight (and staying there): what abort acts on."""
    lab.sim.update_machine(hostname, status="deploying", owner="teuthology")


# -- 503 bursts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "op", "path"),
    [
        ("GET", None, "machines/"),
        ("POST", "allocate", None),
        ("POST", "set_owner_data", None),
        ("POST", "deploy", None),
        ("POST", "lock", None),
        ("POST", "unlock", None),
        ("POST", "release", None),
    ],
    ids=["list", "allocate", "owner_data", "deploy", "lock", "unlock", "release"],
)
def test_503_burst_with_retry_after_is_waited_out(fault_lab, matrix, method, op, path):
    lab = fault_lab
    before = lab.snapshot()
    lab.sim.faults.add(
        "error", status=503, retry_after=10, method=method, op=op, path=path, times=3
    )
    provisioner = lab.provisioner(NODE)

    provisioner.create()
    assert lab.status(NODE) == "Deployed"
    provisioner.release()

    assert lab.status(NODE) == "Ready"
    assert lab.vtime.waits.count(10) >= 3, "MAAS's Retry-After: 10 was not honoured"
    for each in ("allocate", "deploy", "release"):
        assert applied(lab, each, NODE) == 1, f"{each} took effect {applied(lab, each, NODE)} times"
    result = lab.audit(before)
    matrix.note(result, "recovered: waited out 3 x 503 Retry-After: 10")
    result.assert_clean()


def test_503_without_retry_after_backs_off_and_recovers(fault_lab, matrix):
    lab = fault_lab
    before = lab.snapshot()
    lab.sim.faults.add("error", status=503, op="deploy", times=2)
    provisioner = lab.provisioner(NODE)
    provisioner.create()
    provisioner.release()
    assert lab.vtime.waits[:2] == [1.0, 2.0], lab.vtime.waits
    assert applied(lab, "deploy", NODE) == 1
    result = lab.audit(before)
    matrix.note(result, "recovered: exponential back-off")
    result.assert_clean()


def test_503_for_longer_than_the_retry_budget_fails_without_leaking(fault_lab, matrix):
    lab = fault_lab
    before = lab.snapshot()
    lab.sim.faults.add("error", status=503, retry_after=10, op="deploy")
    provisioner = lab.provisioner(NODE, max_attempts=50, max_total=60.0)

    error = attempt(provisioner.create)

    assert error is not None
    assert "503" in str(error) and "deploy" in str(error)
    assert applied(lab, "deploy", NODE) == 0
    assert sum(lab.vtime.waits) <= 60.0 + 10, "the retry budget was not respected"
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: HTTP 503 on deploy, retry budget spent")
    result.assert_clean()


# -- 409 with and without Retry-After ------------------------------------------------------------


@pytest.mark.parametrize("op", ["allocate", "deploy", "release", "abort"])
def test_409_with_retry_after_is_retried(fault_lab, matrix, op):
    lab = fault_lab
    before = lab.snapshot()
    if op == "abort":
        put_in_deploying(lab)
    lab.sim.faults.add("error", status=409, retry_after=5, op=op, times=2)
    provisioner = lab.provisioner(NODE)

    if op != "abort":
        provisioner.create()
    provisioner.release()

    assert lab.status(NODE) == "Ready"
    assert lab.vtime.waits.count(5) >= 2
    assert applied(lab, op, NODE) == 1
    assert len(posts(lab.sim, op, status=409)) == 2
    result = lab.audit(before)
    matrix.note(result, f"recovered: {op} retried after 2 x 409 Retry-After: 5")
    result.assert_clean()


STATE_CONFLICT = {
    "allocate": "No machine with system ID {sid} available.",
    "deploy": "Can't deploy a machine that is in the 'Broken' state (injected).",
    "release": "Machine cannot be released in its current state ('Deploying') (injected).",
    "abort": "Cannot abort in current state: node {sid} is in state Deployed (injected).",
}


@pytest.mark.parametrize("op", ["allocate", "deploy", "release", "abort"])
def test_409_without_retry_after_is_final_and_explained(fault_lab, matrix, op):
    lab = fault_lab
    before = lab.snapshot()
    sid = lab.sim.system_id(NODE)
    body = STATE_CONFLICT[op].format(sid=sid)
    provisioner = lab.provisioner(NODE)
    if op == "release":
        provisioner.create()
    if op == "abort":
        put_in_deploying(lab)
    lab.sim.faults.add("error", status=409, op=op, body=body, times=1)

    action = provisioner.create if op in ("allocate", "deploy") else provisioner.release
    error = attempt(action)

    assert error is not None, f"a 409 on {op} went unreported"
    assert body in str(error), str(error)
    # MAAS's text ends with its own full stop; ours must not add a second one.
    assert not re.search(r"(?<!\.)\.\.(?!\.)", str(error)), str(error)
    assert len(posts(lab.sim, op, status=409)) == 1, "a state conflict was retried blindly"
    if op in ("allocate", "deploy"):
        # create() put back what it had taken.
        assert lab.status(NODE) == "Ready"
    else:
        # release() leaves the node as it found it, ours; teuthology's next unlock retries.
        assert lab.sim.machine(NODE)["owner"] == "teuthology"
        lab.sim.faults.clear()
        provisioner.release()
        assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, f"error names: {body}")
    result.assert_clean()


# -- 500 and 504 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "op", "path"),
    [
        ("GET", None, "machines/"),
        ("POST", "allocate", None),
        ("POST", "deploy", None),
        ("POST", "lock", None),
    ],
    ids=["list", "allocate", "deploy", "lock"],
)
def test_500_fails_the_create_with_maas_words_and_puts_the_node_back(
    fault_lab, matrix, method, op, path
):
    lab = fault_lab
    before = lab.snapshot()
    lab.sim.faults.add(
        "error", status=500, method=method, op=op, path=path, body="boom: injected 500", times=1
    )

    error = attempt(lab.provisioner(NODE).create)

    assert error is not None
    assert "boom: injected 500" in str(error) and "500" in str(error)
    assert lab.status(NODE) == "Ready"
    if op is not None:
        assert len(posts(lab.sim, op, status=500)) == 1, "a 500 on a POST was repeated"
    result = lab.audit(before)
    matrix.note(result, f"error names: HTTP 500 on {op or 'GET machines/'}: boom: injected 500")
    result.assert_clean()


def test_504_on_deploy_that_maas_did_not_apply_is_sent_again_once(fault_lab, matrix):
    lab = fault_lab
    before = lab.snapshot()
    lab.sim.faults.add("error", status=504, op="deploy", times=1)
    provisioner = lab.provisioner(NODE)

    provisioner.create()

    assert lab.status(NODE) == "Deployed"
    assert len(posts(lab.sim, "deploy")) == 2  # the 504, then the one that took effect
    assert applied(lab, "deploy", NODE) == 1
    provisioner.release()
    result = lab.audit(before)
    matrix.note(result, "recovered: re-read showed Allocated, deploy sent again")
    result.assert_clean()


@pytest.mark.parametrize("op", ["deploy", "release", "allocate", "lock"])
def test_504_from_a_gateway_after_maas_applied_it_is_not_repeated(fault_lab, matrix, op):
    lab = fault_lab
    before = lab.snapshot()
    provisioner = lab.provisioner(NODE)
    lab.proxy.add("gateway_after", method="POST", op=op, status=504)

    provisioner.create()
    provisioner.release()

    assert lab.status(NODE) == "Ready"
    assert applied(lab, op, NODE) == 1, f"{op} applied {applied(lab, op, NODE)} times"
    assert [r.status for r in lab.proxy.records(op=op)] == [504]
    result = lab.audit(before)
    matrix.note(result, f"recovered: re-read showed the {op} had taken effect")
    result.assert_clean()


# -- slow answers --------------------------------------------------------------------------------


def test_slow_reads_beyond_the_request_timeout_are_retried(fault_lab, matrix):
    lab = fault_lab
    before = lab.snapshot()
    config = lab.config(http_timeout=0.3)
    lab.sim.faults.add("slow", method="GET", path="machines/", delay=1.0, times=2)
    provisioner = lab.provisioner(NODE, config=config)

    provisioner.create()
    provisioner.release()

    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "recovered: read timeouts on GET retried")
    result.assert_clean()


@pytest.mark.parametrize("op", ["deploy", "release"])
def test_a_post_slower_than_the_request_timeout_takes_effect_once(fault_lab, matrix, op):
    lab = fault_lab
    before = lab.snapshot()
    config = lab.config(http_timeout=0.3)
    provisioner = lab.provisioner(NODE, config=config)
    lab.proxy.add("delay_after", method="POST", op=op, delay=1.0)

    provisioner.create()
    provisioner.release()

    assert lab.status(NODE) == "Ready"
    assert applied(lab, op, NODE) == 1, f"{op} applied {applied(lab, op, NODE)} times"
    result = lab.audit(before)
    matrix.note(result, f"recovered: {op} answer lost to a read timeout; re-read showed it applied")
    result.assert_clean()
