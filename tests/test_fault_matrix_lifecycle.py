"""Fault matrix, part 3: MAAS doing its job badly, and machines that are not ours to touch.

Failed deployment, stuck Deploying past the timeout, a deployment MAAS reverts, stuck Releasing
(recovery ladder), failed releasing, failed disk erasing, an image MAAS cannot deploy, machines
owned or locked by another user, machines in Broken / Rescue / Commissioning and the other
states the lifecycle refuses. The inventory always holds two of alice's nodes (one locked)
next to ours, so "other users' nodes touched" is measured on every scenario.
"""

from __future__ import annotations

import pytest

from tests.fixtures_reliability import attempt, posts, state_changing
from teuthology_maas.errors import (
    DeploymentFailed,
    MachineStateError,
    OwnershipError,
    ReleaseFailed,
)
from teuthology_maas.testing.fast_timings import FAST_TIMINGS

NODE = "smithi001"


def inventory(*extra: dict) -> dict:
    machines = [{"hostname": f"smithi{i:03d}", "tags": ["smithi"]} for i in range(1, 5)]
    machines += [
        {
            "hostname": "smithi005",
            "tags": ["smithi"],
            "status": "deployed",
            "owner": "alice",
            "osystem": "ubuntu",
            "distro_series": "jammy",
        },
        {
            "hostname": "smithi006",
            "tags": ["smithi"],
            "status": "deployed",
            "owner": "alice",
            "locked": True,
            "osystem": "ubuntu",
            "distro_series": "jammy",
        },
    ]
    machines += list(extra)
    # the lab uploaded the Ceph-aware release script that `erase: ceph` runs
    return {
        "machines": machines,
        "timings": dict(FAST_TIMINGS),
        "release_scripts": ["wipe-disks", "wipe-ceph-bluestore"],
    }


@pytest.fixture
def lab(fault_lab_factory):
    return fault_lab_factory(inventory())


# -- deployments that do not end well ------------------------------------------------------------


def test_failed_deployment_is_explained_and_the_node_released(lab, matrix):
    before = lab.snapshot()
    reason = "Installation failed: curtin could not partition /dev/sda (injected)"
    lab.sim.faults.add("deploy_fail", machine=NODE, reason=reason, times=1)

    error = attempt(lab.provisioner(NODE).create)

    assert isinstance(error, DeploymentFailed)
    assert "Failed deployment" in str(error)
    assert "curtin could not partition /dev/sda" in str(error)
    assert "released" in str(error)
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: Failed deployment + MAAS's reason; node released")
    result.assert_clean()


def test_deploying_stuck_past_the_timeout_is_aborted_and_released(lab, matrix):
    before = lab.snapshot()
    lab.sim.faults.add("deploy_stuck", machine=NODE, times=1)
    config = lab.config(deploy_timeout=1.0)

    error = attempt(lab.provisioner(NODE, config=config).create)

    assert isinstance(error, DeploymentFailed)
    message = str(error)
    assert "timed out" in message and "Deploying" in message
    assert len(posts(lab.sim, "abort")) == 1
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: timed out in Deploying; aborted and released")
    result.assert_clean()


def test_a_deployment_maas_reverts_to_allocated_is_explained_and_released(lab, matrix):
    before = lab.snapshot()
    lab.sim.faults.add("deploy_revert", machine=NODE, times=1)

    error = attempt(lab.provisioner(NODE).create)

    assert isinstance(error, DeploymentFailed)
    assert "Allocated" in str(error) and "power" in str(error).lower()
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: MAAS reverted to Allocated (power control)")
    result.assert_clean()


def test_an_image_maas_cannot_deploy_is_refused_with_its_words(lab, matrix):
    before = lab.snapshot()
    lab.sim.faults.add("missing_image", machine=NODE, times=1)

    error = attempt(lab.provisioner(NODE).create)

    assert error is not None
    assert "ubuntu/jammy is unavailable for amd64/generic" in str(error)
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: MAAS says ubuntu/jammy is unavailable")
    result.assert_clean()


# -- releases that do not end well ---------------------------------------------------------------


def _deployed(lab, hostname: str = NODE, **config):
    provisioner = lab.provisioner(hostname, config=lab.config(**config))
    provisioner.create()
    assert lab.status(hostname) == "Deployed"
    return provisioner


@pytest.mark.parametrize("user", ["teuthology", "admin"], ids=["user-key", "admin-key"])
def test_releasing_stuck_past_the_timeout_climbs_the_recovery_ladder(lab, matrix, user):
    """MAAS never sees the node power off. Expected: after release_timeout the provisioner
    escalates (power off; abort where MAAS allows it; mark broken, and fixed with an admin
    key) and then reports, so the node is neither silently left Releasing nor leaked. With a
    non-admin key mark_fixed is refused: the node stays Broken and the error says an operator
    must act; with an admin key the ladder brings it back to Ready."""
    before = lab.snapshot()
    provisioner = _deployed(lab, release_timeout=1.0, erase="none", user=user)
    lab.sim.faults.add("release_stuck", machine=NODE, times=1)

    error = attempt(provisioner.release)

    final = lab.status(NODE)
    sid = lab.sim.system_id(NODE)
    ladder = [
        op for op in ("power_off", "abort", "mark_broken", "mark_fixed")
        if posts(lab.sim, op, system_id=sid, status=200)
    ]  # fmt: skip
    message = str(error) if error is not None else ""
    reported = "operator" in message
    result = lab.audit(before, user=user, held=(NODE,) if reported and final != "Ready" else ())
    matrix.note(result, f"ladder applied: {', '.join(ladder) or 'nothing'}; ended {final}")
    assert ladder, "no recovery step was tried after Releasing timed out (power_off/mark_broken)"
    if user == "admin":
        assert final == "Ready", message
    else:
        assert isinstance(error, ReleaseFailed)
        assert "Releasing" in message
        assert final == "Ready" or reported, f"left {final} without saying it needs an operator"
    result.assert_clean()


def test_releasing_failed_is_explained_and_a_second_release_recovers(lab, matrix):
    before = lab.snapshot()
    provisioner = _deployed(lab, erase="none")
    lab.sim.faults.add("release_fail", machine=NODE, times=1)

    error = attempt(provisioner.release)

    assert isinstance(error, ReleaseFailed)
    assert "Releasing failed" in str(error)
    provisioner.release()  # what teuthology's next unlock does
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: Releasing failed + reason; retry released it")
    result.assert_clean()


@pytest.mark.parametrize("erase", ["quick", "full", "secure", "ceph"])
def test_failed_disk_erasing_is_explained_and_a_second_release_recovers(lab, matrix, erase):
    before = lab.snapshot()
    provisioner = _deployed(lab, erase=erase)
    lab.sim.faults.add("erase_fail", machine=NODE, times=1)

    error = attempt(provisioner.release)

    assert isinstance(error, ReleaseFailed)
    expected = "Releasing failed" if erase == "ceph" else "Failed disk erasing"
    assert expected in str(error), str(error)
    provisioner.release()
    assert lab.status(NODE) == "Ready"
    sent = posts(lab.sim, "release", system_id=lab.sim.system_id(NODE))
    assert sent, "no release was sent"
    result = lab.audit(before)
    matrix.note(result, f"error names: {expected}; retry released it")
    result.assert_clean()


@pytest.mark.parametrize("erase", ["quick", "ceph"])
def test_create_on_our_node_left_in_a_failed_release_releases_it_and_deploys(lab, matrix, erase):
    """A release that failed (Failed disk erasing; Releasing failed for the ceph script) left
    the node ours. teuthology's next job asks for it again: create() releases it with the
    configured erase, then deploys, instead of refusing it."""
    before = lab.snapshot()
    provisioner = _deployed(lab, erase=erase)
    lab.sim.faults.add("erase_fail", machine=NODE, times=1)
    assert isinstance(attempt(provisioner.release), ReleaseFailed)
    failed = lab.status(NODE)
    assert failed in ("Failed disk erasing", "Releasing failed")
    system_id = lab.sim.system_id(NODE)
    releases_before = len(posts(lab.sim, "release", system_id=system_id))

    provisioner.create()

    assert lab.status(NODE) == "Deployed"
    sent = posts(lab.sim, "release", system_id=system_id)[releases_before:]
    assert len(sent) == 1, "create() must release the node exactly once before deploying"
    assert sent[0].param("erase") == "true" and sent[0].param("quick_erase") == "true"
    provisioner.release()
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, f"recovered: create() released our {failed} node ({erase} erase)")
    result.assert_clean()


def test_create_on_a_free_node_in_failed_disk_erasing_releases_it_and_deploys(lab, matrix):
    lab.sim.update_machine("smithi002", status="failed_disk_erasing")
    before = lab.snapshot()
    provisioner = lab.provisioner("smithi002")
    provisioner.create()
    assert lab.status("smithi002") == "Deployed"
    assert len(posts(lab.sim, "release", system_id=lab.sim.system_id("smithi002"))) == 1
    provisioner.release()
    result = lab.audit(before)
    matrix.note(result, "recovered: create() released a free Failed disk erasing node")
    result.assert_clean()


def test_create_whose_release_of_a_failed_erase_fails_again_reports_it(lab, matrix):
    before = lab.snapshot()
    provisioner = _deployed(lab, erase="quick")
    lab.sim.faults.add("erase_fail", machine=NODE, times=2)
    assert isinstance(attempt(provisioner.release), ReleaseFailed)

    error = attempt(provisioner.create)

    assert isinstance(error, DeploymentFailed), f"{type(error).__name__}: {error}"
    message = str(error)
    assert "Failed disk erasing" in message and NODE in message
    assert "Failed to erase disks" in message, message  # MAAS's own words
    assert message.count("MAAS: ") == 1, message  # its account once, not twice
    assert "needs an operator" in message
    assert not posts(lab.sim, "deploy", system_id=lab.sim.system_id(NODE))[1:]
    provisioner.release()  # teuthology's unlock, once the disk is fine again
    assert lab.status(NODE) == "Ready"
    result = lab.audit(before)
    matrix.note(result, "error names: the release before the redeploy ended in Failed disk erasing")
    result.assert_clean()


def test_create_refuses_another_users_node_in_failed_disk_erasing(lab, matrix):
    lab.sim.update_machine("smithi002", status="failed_disk_erasing", owner="alice")
    before = lab.snapshot()
    error = attempt(lab.provisioner("smithi002", config=lab.config(user="admin")).create)
    assert isinstance(error, OwnershipError), f"{type(error).__name__}: {error}"
    assert "alice" in str(error) and "Nothing was touched" in str(error)
    assert state_changing(lab.sim, user="admin") == []
    assert lab.status("smithi002") == "Failed disk erasing"
    result = lab.audit(before, user="admin")
    matrix.note(result, "error names: owned by MAAS user alice")
    result.assert_clean()


# -- machines that are not ours ------------------------------------------------------------------


@pytest.mark.parametrize("hostname", ["smithi005", "smithi006"], ids=["owned", "locked"])
@pytest.mark.parametrize("action", ["create", "release", "abort"])
def test_another_users_machine_is_invisible_to_a_non_admin_key(lab, matrix, hostname, action):
    """MAAS shows a non-admin only unowned machines and its own: someone else's node is not
    found, and the error says that another user may own it."""
    before = lab.snapshot()
    error = attempt(getattr(lab.provisioner(hostname), action))

    assert error is not None
    assert f"no machine with hostname {hostname!r}" in str(error)
    assert "another user owns it" in str(error)
    assert state_changing(lab.sim, user="teuthology") == []
    machine = lab.sim.machine(hostname)
    assert machine["status_name"] == "Deployed" and machine["owner"] == "alice"
    result = lab.audit(before)
    matrix.note(result, "error names: not visible; another user may own it")
    result.assert_clean()


@pytest.mark.parametrize("hostname", ["smithi005", "smithi006"], ids=["owned", "locked"])
@pytest.mark.parametrize("action", ["create", "release", "abort"])
def test_another_users_machine_is_refused_to_an_admin_key(lab, matrix, hostname, action):
    """An admin key sees (and MAAS would let it change) alice's node: the library refuses."""
    before = lab.snapshot()
    config = lab.config(user="admin")
    error = attempt(getattr(lab.provisioner(hostname, config=config), action))

    assert isinstance(error, OwnershipError), f"{type(error).__name__}: {error}"
    message = str(error)
    assert "alice" in message and "Nothing was touched" in message
    assert state_changing(lab.sim, user="admin") == []
    machine = lab.sim.machine(hostname)
    assert machine["status_name"] == "Deployed" and machine["owner"] == "alice"
    result = lab.audit(before, user="admin")
    matrix.note(result, "error names: owned by MAAS user alice")
    result.assert_clean()


def test_a_node_locked_by_someone_else_but_unowned_is_refused(lab, matrix):
    lab.sim.update_machine("smithi002", locked=True)
    before = lab.snapshot()
    error = attempt(lab.provisioner("smithi002").create)
    assert error is not None
    assert "locked" in str(error).lower()
    assert state_changing(lab.sim, user="teuthology") == []
    result = lab.audit(before)
    matrix.note(result, "error names: locked")
    result.assert_clean()


REFUSED_STATES = [
    ("broken", "Broken", "mark it fixed"),
    ("rescue_mode", "Rescue mode", "rescue mode"),
    ("entering_rescue_mode", "Entering rescue mode", "rescue mode"),
    ("commissioning", "Commissioning", "commissioning"),
    ("testing", "Testing", "testing"),
    ("new", "New", "commission"),
    ("failed_commissioning", "Failed commissioning", ""),
    ("failed_testing", "Failed testing", ""),
]


@pytest.mark.parametrize(
    ("status", "label", "advice"), REFUSED_STATES, ids=[state[0] for state in REFUSED_STATES]
)
def test_a_machine_in_a_state_we_do_not_act_on_is_refused(lab, matrix, status, label, advice):
    lab.sim.update_machine("smithi002", status=status)
    before = lab.snapshot()

    error = attempt(lab.provisioner("smithi002").create)

    assert isinstance(error, MachineStateError), f"{type(error).__name__}: {error}"
    message = str(error)
    assert label in message and "Nothing was touched" in message
    assert advice in message
    assert state_changing(lab.sim, user="teuthology") == []
    assert lab.status("smithi002") == label
    result = lab.audit(before)
    matrix.note(result, f"error names: {label}")
    result.assert_clean()


def test_our_broken_node_is_not_released_behind_the_operators_back(lab, matrix):
    lab.sim.update_machine("smithi002", status="broken", owner="teuthology")
    before = lab.snapshot()
    error = attempt(lab.provisioner("smithi002").create)
    assert isinstance(error, MachineStateError)
    assert "Broken" in str(error)
    assert state_changing(lab.sim, user="teuthology") == []
    result = lab.audit(before, held=("smithi002",))  # an operator holds it via Broken
    matrix.note(result, "error names: Broken, an operator must mark it fixed")
    result.assert_clean()
