"""The deployment token in one process, over real HTTP on the simulator: what a create() says
when its deployment ends short (from MAAS's events), what release() refuses, and what a
takeover does to the attempt it replaces."""

from __future__ import annotations

import os
import threading

from tests.fixtures_reliability import attempt, posts
from teuthology_maas.errors import DeploymentFailed, TakenOver
from teuthology_maas.node.ownership import TOKEN_KEY, Authority, LockHolder
from teuthology_maas.node.provisioner import MaasProvisioner

NODE = "smithi001"
FOREIGN = {TOKEN_KEY: "f0" * 16, "teuthology_maas_process": "4242@ctl2",
           "teuthology_owner": "scheduled_bob@ctl", "teuthology_job": "77"}  # fmt: skip


def when_deploying(lab, action) -> threading.Thread:
    """Run `action` (in a thread) as soon as the simulator shows NODE Deploying."""

    def wait_then_act() -> None:
        lab.wait_for(lambda: lab.status(NODE) == "Deploying")
        action()

    thread = threading.Thread(target=wait_then_act)
    thread.start()
    return thread


def test_an_operators_abort_is_named_from_maas_events_and_the_node_released(fault_lab):
    lab = fault_lab
    lab.sim.faults.add("deploy_stuck", machine=NODE)
    operator = MaasProvisioner(NODE, config=lab.config(), client=lab.client(), owner="op@desk")
    thread = when_deploying(lab, lambda: operator.abort(authority=Authority(operator=True)))
    error = attempt(lab.provisioner(NODE, config=lab.config(deploy_timeout=30)).create)
    thread.join()
    assert isinstance(error, DeploymentFailed)
    text = str(error)
    assert "the deployment was aborted by MAAS user 'teuthology' (teuthology-maas abort for " in (
        text
    )
    assert "op@desk" in text and "power" not in text.lower(), text
    assert "Clean-up: released" in text  # its own deployment: it releases it
    assert lab.status(NODE) == "Ready"


def test_only_a_power_event_is_reported_as_a_power_problem(fault_lab):
    lab = fault_lab
    lab.sim.faults.add("deploy_revert", machine=NODE, times=1)
    error = attempt(lab.provisioner(NODE).create)
    text = str(error)
    assert "MAAS reverted the deployment to Allocated: it could not power-control the node" in text
    assert "Failed to query node's BMC" in text and "aborted by" not in text


def test_release_refuses_another_attempts_live_deployment_and_names_it(fault_lab):
    lab = fault_lab
    lab.sim.update_machine(NODE, status="deployed", owner="teuthology", locked=True,
                           workload_annotations=dict(FOREIGN))  # fmt: skip
    provisioner = lab.provisioner(NODE)
    error = attempt(provisioner.release)
    assert isinstance(error, TakenOver), error
    text = str(error)
    assert "deployment f0f0f0f0f0f0 (owner scheduled_bob@ctl, job 77; pid 4242 on host ctl2" in text
    assert "Nothing was touched" in text and "release --force" in text
    assert posts(lab.sim, "unlock") == [] and posts(lab.sim, "release") == []
    # an operator's explicit action may
    provisioner.release(authority=Authority(operator=True))
    assert lab.status(NODE) == "Ready"


def test_create_refuses_a_node_another_attempt_holds_and_touches_nothing(fault_lab):
    lab = fault_lab
    lab.sim.update_machine(NODE, status="deployed", owner="teuthology", locked=True,
                           workload_annotations=dict(FOREIGN))  # fmt: skip
    error = attempt(lab.provisioner(NODE).create)
    assert isinstance(error, DeploymentFailed) and "refusing to redeploy" in str(error)
    assert "Clean-up: nothing was changed in MAAS" in str(error)
    assert [r.op for r in lab.sim.request_log if r.method == "POST"] == []
    # the job paddles says holds the node now may take it over
    lock = LockHolder("scheduled_carol@ctl", "/archive/carol-run/8")
    taker = MaasProvisioner(NODE, config=lab.config(), client=lab.client(), lock=lock)
    taker.create()
    data = lab.sim.machine(NODE)["owner_data"]
    assert data[TOKEN_KEY] == taker.deployment.token
    assert (data["teuthology_owner"], data["teuthology_lock"]) == (lock.locked_by,
                                                                   lock.description)
    taker.release()


def test_a_takeover_claims_first_and_the_attempt_taken_over_stops_at_once(fault_lab):
    """Two create()s for the job that holds the node (same paddles lock): the second takes
    over while the first waits for its deployment; the first stops at once, names the second,
    and its clean-up leaves the node to it."""
    lab = fault_lab
    lab.sim.faults.add("deploy_stuck", machine=NODE, times=1)
    lock = LockHolder("scheduled_alice@ctl", "/archive/alice-run/7")
    first = MaasProvisioner(NODE, config=lab.config(deploy_timeout=30), client=lab.client(),
                            lock=lock)  # fmt: skip
    second = MaasProvisioner(NODE, config=lab.config(), client=lab.client(), lock=lock)
    thread = when_deploying(lab, second.create)
    error = attempt(first.create)
    thread.join()
    assert isinstance(error, DeploymentFailed)
    text = str(error)
    (token,) = second.tokens
    assert f"was taken over by another deployment: deployment {token[:12]}" in text, text
    assert "Clean-up: left alone" in text
    machine = lab.sim.machine(NODE)
    assert (machine["status_name"], machine["locked"]) == ("Deployed", True)
    assert machine["owner_data"][TOKEN_KEY] == token
    second.release()


def test_an_operators_abort_whose_answer_is_lost_is_resolved_from_its_request_tag(fault_lab):
    """A caller that makes no deployment (here an operator's abort) names its requests with a
    request tag; MAAS applies an abort asynchronously, so after a 503 from the proxy in front
    of it, MAAS's events (our tag on the newest abort) say it went through: sent once."""
    lab = fault_lab
    lab.sim.faults.add("deploy_stuck", machine=NODE)
    lab.proxy.add("gateway_after", method="POST", op="abort", status=503)
    operator = MaasProvisioner(NODE, config=lab.config(), client=lab.client(), owner="op@desk")
    thread = when_deploying(lab, lambda: operator.abort(authority=Authority(operator=True)))
    error = attempt(lab.provisioner(NODE, config=lab.config(deploy_timeout=30)).create)
    thread.join()
    assert isinstance(error, DeploymentFailed) and "aborted by" in str(error), error
    (sent,) = posts(lab.sim, "abort")
    comment = sent.param("comment") or ""
    assert comment.startswith("teuthology-maas abort for op@desk [request "), comment
    assert f" {os.getpid()}@" in comment
    assert lab.status(NODE) == "Ready"
