"""Fault matrix, part 2: the connection failing around a request.

The fault proxy resets the connection before a POST reaches MAAS (never applied) or after MAAS
applied it (answer lost); the simulator's own `drop` fault does the same from the server side;
MAAS goes away altogether, briefly or for longer than the client's retry budget, before and in
the middle of a deployment. The client cannot tell "applied" from "not applied" by itself: the
provisioner must re-read the machine, and never deploy or release twice.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.fixtures_reliability import applied, attempt, posts

NODE = "smithi001"
LIFECYCLE_POSTS = ["allocate", "set_owner_data", "deploy", "lock", "unlock", "release"]


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("op", LIFECYCLE_POSTS)
def test_connection_reset_around_a_post_never_doubles_it(fault_lab, matrix, op, when):
    lab = fault_lab
    before = lab.snapshot()
    lab.proxy.add(f"reset_{when}", method="POST", op=op)  # type: ignore[arg-type]
    provisioner = lab.provisioner(NODE)

    provisioner.create()
    assert lab.status(NODE) == "Deployed"
    provisioner.release()

    assert lab.status(NODE) == "Ready"
    assert lab.proxy.records(op=op)[0].action == f"reset_{when}"
    forwarded = lab.proxy.records(op=op)[0].forwarded
    assert forwarded is (when == "after")
    assert applied(lab, op, NODE) == 1, f"{op} took effect {applied(lab, op, NODE)} times"
    for other in ("allocate", "deploy", "release"):
        assert applied(lab, other, NODE) == 1, (
            f"{other} took effect {applied(lab, other, NODE)} times"
        )
    result = lab.audit(before)
    matrix.note(
        result, f"recovered: re-read showed the {op} {'had' if forwarded else 'had not'} applied"
    )
    result.assert_clean()


@pytest.mark.parametrize("op", LIFECYCLE_POSTS)
def test_uncertain_outcomes_in_a_row_are_each_resolved_by_rereading(fault_lab, matrix, op):
    """Two resets before the POST reached MAAS, then a gateway 504 after MAAS applied it: each
    unknown outcome is followed by a re-read, and the POST is sent again only while MAAS shows
    it did not apply (the soak saw create() fail on the second uncertain outcome in a row)."""
    lab = fault_lab
    before = lab.snapshot()
    lab.proxy.add("reset_before", method="POST", op=op, times=2)
    lab.proxy.add("gateway_after", method="POST", op=op, times=1)
    provisioner = lab.provisioner(NODE)

    provisioner.create()
    assert lab.status(NODE) == "Deployed"
    provisioner.release()

    assert lab.status(NODE) == "Ready"
    actions = [r.action for r in lab.proxy.records(op=op)]
    assert actions == ["reset_before", "reset_before", "gateway_after"], actions
    for other in ("allocate", "deploy", "release"):
        assert applied(lab, other, NODE) == 1, (
            f"{other} took effect {applied(lab, other, NODE)} times"
        )
    result = lab.audit(before)
    matrix.note(result, f"recovered: 3 uncertain {op} outcomes in a row, applied once")
    result.assert_clean()


def test_a_post_that_never_gets_through_stops_at_the_retry_budget(fault_lab, matrix):
    lab = fault_lab
    before = lab.snapshot()
    lab.proxy.add("reset_before", method="POST", op="deploy", times=None)
    provisioner = lab.provisioner(NODE, max_attempts=4)

    error = attempt(provisioner.create)
    lab.proxy.clear()

    assert error is not None
    assert "outcome unknown" in str(error), str(error)
    assert "released" in str(error), str(error)
    assert len(lab.proxy.records(op="deploy")) == 4, "the re-sends must stop at max_attempts"
    assert applied(lab, "deploy", NODE) == 0
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: deploy outcome unknown 4 times; node released")
    result.assert_clean()


@pytest.mark.parametrize("op", ["deploy", "release"])
def test_server_side_drop_after_applying_is_resolved_by_rereading(fault_lab, matrix, op):
    lab = fault_lab
    before = lab.snapshot()
    lab.sim.faults.add("drop", op=op, when="after", times=1)
    provisioner = lab.provisioner(NODE)
    provisioner.create()
    provisioner.release()
    assert lab.status(NODE) == "Ready"
    assert applied(lab, op, NODE) + len([r for r in posts(lab.sim, op) if r.status is None]) == 1
    result = lab.audit(before)
    matrix.note(result, f"recovered: MAAS applied the {op} and dropped the answer")
    result.assert_clean()


def test_reset_on_the_abort_of_an_in_flight_deployment(fault_lab, matrix):
    lab = fault_lab
    before = lab.snapshot()
    lab.sim.update_machine(NODE, status="deploying", owner="teuthology")
    lab.proxy.add("reset_after", method="POST", op="abort")
    lab.provisioner(NODE).release()
    assert lab.status(NODE) == "Ready"
    assert applied(lab, "abort", NODE) == 1
    result = lab.audit(before)
    matrix.note(result, "recovered: abort applied, answer lost")
    result.assert_clean()


def test_a_short_outage_during_create_is_ridden_out(fault_lab, matrix):
    lab = fault_lab
    before = lab.snapshot()
    # The outage is measured on the client's own (virtual) retry clock: MAAS comes back once
    # the client has waited OUTAGE seconds. (A real-time timer raced the retry budget: 120
    # virtual seconds of 1 s back-offs take about 0.2 s of real time, as long as the timer.)
    outage, waited = 10.0, []
    virtual_sleep = lab.vtime.sleep

    def sleep(seconds: float) -> None:
        virtual_sleep(seconds)
        if sum(waited) < outage <= sum(waited) + seconds:
            lab.proxy.accept_connections()
        waited.append(seconds)

    lab.vtime.sleep = sleep  # type: ignore[method-assign]
    lab.proxy.refuse_connections()
    provisioner = lab.provisioner(NODE, max_attempts=200, backoff_max=1.0)
    provisioner.create()
    assert sum(waited) >= outage, "the client never had to wait out the outage"
    provisioner.release()
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "recovered: connection refused retried until MAAS came back")
    result.assert_clean()


def test_maas_down_for_longer_than_the_retry_budget_before_create(fault_lab, matrix):
    lab = fault_lab
    before = lab.snapshot()
    lab.proxy.refuse_connections()
    error = attempt(lab.provisioner(NODE).create)
    lab.proxy.accept_connections()

    assert error is not None
    message = str(error)
    assert "unreachable" in message and "Connection refused" in message
    assert lab.sim.request_log == []
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: MAAS unreachable (connection refused), budget spent")
    result.assert_clean()


def test_maas_down_mid_deployment_past_the_budget_is_reported_then_recoverable(fault_lab, matrix):
    """The worst case: MAAS disappears while our deployment runs and stays away longer than
    the client retries. Nothing can be undone while it is away; create() must say so (node,
    state, 'needs an operator') and the node must be recoverable by the release teuthology
    runs when it unlocks the node after MAAS is back."""
    lab = fault_lab
    before = lab.snapshot()
    lab.sim.faults.add("deploy_stuck", machine=NODE)

    def pull_the_plug() -> None:
        # After MAAS answered the deploy: the outage hits the wait, not the POST.
        lab.wait_for(lambda: bool(lab.proxy.records(op="deploy")))
        time.sleep(0.05)
        lab.proxy.refuse_connections()

    plug = threading.Thread(target=pull_the_plug)
    plug.start()
    # The poller rides out an outage until the deploy timeout; keep that short here.
    error = attempt(lab.provisioner(NODE, config=lab.config(deploy_timeout=1.5)).create)
    plug.join()

    assert error is not None
    message = str(error)
    assert "unreachable" in message
    assert "needs an operator" in message
    assert NODE in message
    lab.proxy.accept_connections()
    lab.sim.faults.clear()
    lab.provisioner(NODE).release()
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: MAAS unreachable mid-deploy, node needs an operator")
    result.assert_clean()


def test_an_outage_that_cut_off_the_deploy_answer_is_reported_without_a_stale_status(
    fault_lab, matrix
):
    """The deploy reached MAAS (Deploying) but its answer was lost, and MAAS stayed away past
    the retry budget: the error must not report the Allocated we saw before the deploy."""
    lab = fault_lab
    before = lab.snapshot()
    system_id = lab.sim.system_id(NODE)
    lab.proxy.add("reset_after", method="POST", op="deploy")
    # Every re-read of the machine fails from then on: MAAS is gone for us.
    lab.proxy.add("reset_before", method="GET", path=f"machines/{system_id}/", times=None)

    error = attempt(lab.provisioner(NODE, max_attempts=3).create)

    assert error is not None
    message = str(error)
    assert lab.status(NODE) == "Deploying"
    assert "status unknown (could not re-read it; last seen Allocated)" in message, message
    assert ": Allocated;" not in message and ": Allocated." not in message, message
    assert "needs an operator" in message
    assert error.status is None
    lab.proxy.clear()
    lab.provisioner(NODE).release()
    assert lab.status(NODE) == "Ready"
    assert applied(lab, "deploy", NODE) == 1
    result = lab.audit(before)
    matrix.note(result, "error names: deploy outcome unknown, status unknown (not stale)")
    result.assert_clean()


def test_a_hanging_maas_times_out_within_bounds(fault_lab, matrix):
    lab = fault_lab
    before = lab.snapshot()
    lab.proxy.add("hang", method="GET", times=None)
    config = lab.config(http_timeout=0.2)
    started = time.monotonic()
    error = attempt(lab.provisioner(NODE, config=config, max_attempts=3).create)
    elapsed = time.monotonic() - started
    lab.proxy.clear()

    assert error is not None
    assert "timed out" in str(error).lower() or "timeout" in str(error).lower()
    assert elapsed < 10, "a hanging MAAS must not hang the caller"
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: read timeout, retries spent")
    result.assert_clean()
