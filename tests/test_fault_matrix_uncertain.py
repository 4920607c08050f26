"""Fault matrix, part 5: every uncertain outcome on every action, resolved by re-reading.

Each state-changing action of the lifecycle (allocate, set_owner_data, deploy, lock, unlock,
release, abort) reaches MAAS and is applied, and then its answer is lost or disguised: the
connection reset or closed, a gateway 502/503/504 (a proxy in front of MAAS: "503 after
apply"), a read timeout, or a 409 for a request that went through. The client never sends
such a POST again by itself; the lifecycle re-reads the machine (and, for an abort whose
effect MAAS applies asynchronously, its event log) and goes on without sending it twice.

After each scenario, the invariants of the race suite: the create() that succeeded left its
node Deployed, locked, carrying its token; nothing is left allocated to us; none of its
requests acted on a deployment that was not its own; and the action took effect exactly once.
"""

from __future__ import annotations

import pytest

from tests._races import foreign_touches
from tests.fixtures_reliability import attempt, posts
from teuthology_maas.node.ownership import TOKEN_KEY

NODE = "smithi001"
ACTIONS = ["allocate", "set_owner_data", "deploy", "lock", "unlock", "release", "abort"]
FAULTS = {
    "reset": ("reset_after", {}),
    "close": ("close_after", {}),
    "502": ("gateway_after", {"status": 502}),
    "503": ("gateway_after", {"status": 503}),
    "504": ("gateway_after", {"status": 504}),
    "409": ("gateway_after", {"status": 409}),
    "read-timeout": ("delay_after", {"delay": 1.2}),  # past http_timeout below
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("op", ACTIONS)
def test_an_applied_action_whose_answer_is_lost_is_resolved_by_rereading(
    fault_lab, matrix, op, fault
):
    lab = fault_lab
    before = lab.snapshot()
    action, options = FAULTS[fault]
    overrides = {"http_timeout": 0.6} if action == "delay_after" else {}
    if op == "abort":
        # create()'s own clean-up aborts a deployment that does not finish in time.
        lab.sim.faults.add("deploy_stuck", machine=NODE)
        overrides["deploy_timeout"] = 1.0
    lab.proxy.add(action, method="POST", op=op, **options)  # type: ignore[arg-type]
    provisioner = lab.provisioner(NODE, config=lab.config(**overrides))

    error = attempt(provisioner.create)
    if op == "abort":
        assert error is not None and "timed out" in str(error), error
        assert "Clean-up: released" in str(error), error
    else:
        assert error is None, error
        machine = lab.sim.machine(NODE)
        assert (machine["status_name"], machine["locked"]) == ("Deployed", True)
        assert machine["owner_data"][TOKEN_KEY] == provisioner.deployment.token
        provisioner.release()
    lab.wait_for(lambda: lab.status(NODE) == "Ready")

    faulted = lab.proxy.records(op=op)[0]
    assert (faulted.action, faulted.forwarded) == (action, True)
    sent = posts(lab.sim, op)
    assert len(sent) == 1 and sent[0].status is not None and sent[0].status < 300, (
        f"{op} was sent {len(sent)} times: {[r.status for r in sent]}"
    )
    assert foreign_touches(lab.sim, NODE, provisioner.tokens) == []
    result = lab.audit(before)
    matrix.note(result, f"recovered: {op} applied behind {fault}, re-read, sent once")
    result.assert_clean()
