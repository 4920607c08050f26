"""The lifecycle's decisions from a machine's status and owner (pure: no MAAS needed)."""

from __future__ import annotations

import pytest

from teuthology_maas.errors import MachineStateError, OwnershipError
from teuthology_maas.models import Machine, NodeStatus
from teuthology_maas.node.decide import (
    CreateStep,
    ReleaseStep,
    check_ownership,
    next_create_step,
    next_release_step,
)
from teuthology_maas.node.erase import release_params

US = "teuthology"


def machine(status: NodeStatus, owner: str | None = None, locked: bool = False) -> Machine:
    return Machine.from_json(
        {
            "system_id": "abc123",
            "hostname": "smithi001",
            "status": int(status),
            "status_name": status.label,
            "owner": owner,
            "locked": locked,
            "status_message": "something MAAS said",
        }
    )


@pytest.mark.parametrize(
    ("status", "owner", "step"),
    [
        (NodeStatus.READY, None, CreateStep.ALLOCATE),
        (NodeStatus.ALLOCATED, US, CreateStep.DEPLOY),
        (NodeStatus.DEPLOYED, US, CreateStep.RELEASE),
        (NodeStatus.FAILED_DEPLOYMENT, US, CreateStep.RELEASE),
        (NodeStatus.DEPLOYING, US, CreateStep.ABORT),
        (NodeStatus.RELEASING, US, CreateStep.WAIT_RELEASE),
        (NodeStatus.DISK_ERASING, US, CreateStep.WAIT_RELEASE),
        (NodeStatus.RELEASING, None, CreateStep.WAIT_RELEASE),
        # A failed release or erase of ours (or of nobody's) is released again first.
        (NodeStatus.FAILED_DISK_ERASING, US, CreateStep.RELEASE),
        (NodeStatus.FAILED_RELEASING, US, CreateStep.RELEASE),
        (NodeStatus.FAILED_DISK_ERASING, None, CreateStep.RELEASE),
        (NodeStatus.FAILED_RELEASING, None, CreateStep.RELEASE),
    ],
)
def test_create_steps_for_states_we_may_act_on(status, owner, step):
    assert next_create_step(machine(status, owner), US) is step


@pytest.mark.parametrize(
    "status",
    [
        NodeStatus.BROKEN,
        NodeStatus.COMMISSIONING,
        NodeStatus.TESTING,
        NodeStatus.RESCUE_MODE,
        NodeStatus.NEW,
        NodeStatus.FAILED_COMMISSIONING,
        NodeStatus.RETIRED,
        NodeStatus.MISSING,
    ],
)
def test_create_refuses_states_it_must_not_touch_and_names_them(status):
    with pytest.raises(MachineStateError) as info:
        next_create_step(machine(status, US if status is NodeStatus.BROKEN else None), US)
    assert status.label in str(info.value)
    assert "smithi001 (abc123)" in str(info.value)
    assert "Nothing was touched" in str(info.value)
    assert info.value.status == status.label
    assert (info.value.machine, info.value.system_id) == ("smithi001", "abc123")


@pytest.mark.parametrize(
    "status",
    [
        NodeStatus.ALLOCATED,
        NodeStatus.DEPLOYED,
        NodeStatus.DEPLOYING,
        NodeStatus.RELEASING,
        NodeStatus.FAILED_DISK_ERASING,
        NodeStatus.FAILED_RELEASING,
    ],
)
def test_machines_of_another_user_are_refused_for_create_and_release(status):
    for decide in (next_create_step, next_release_step):
        with pytest.raises(OwnershipError) as info:
            decide(machine(status, "alice"), US)
        assert "'alice'" in str(info.value) and "Nothing was touched" in str(info.value)


@pytest.mark.parametrize("status", [NodeStatus.FAILED_DISK_ERASING, NodeStatus.FAILED_RELEASING])
def test_a_failed_release_locked_by_someone_else_is_refused_for_create(status):
    with pytest.raises(OwnershipError, match="locked"):
        next_create_step(machine(status, None, locked=True), US)


def test_a_machine_locked_by_someone_else_is_refused():
    with pytest.raises(OwnershipError, match="locked"):
        check_ownership(machine(NodeStatus.DEPLOYED, None, locked=True), US, "release")
    # Locked by us (we lock after deploy) is fine: release unlocks it.
    check_ownership(machine(NodeStatus.DEPLOYED, US, locked=True), US, "release")


@pytest.mark.parametrize(
    ("status", "owner", "step"),
    [
        (NodeStatus.READY, None, ReleaseStep.NOTHING),
        (NodeStatus.NEW, None, ReleaseStep.NOTHING),
        (NodeStatus.ALLOCATED, None, ReleaseStep.NOTHING),
        (NodeStatus.ALLOCATED, US, ReleaseStep.RELEASE),
        (NodeStatus.DEPLOYED, US, ReleaseStep.RELEASE),
        (NodeStatus.FAILED_DEPLOYMENT, US, ReleaseStep.RELEASE),
        (NodeStatus.FAILED_DISK_ERASING, US, ReleaseStep.RELEASE),
        (NodeStatus.FAILED_RELEASING, US, ReleaseStep.RELEASE),
        (NodeStatus.DEPLOYING, US, ReleaseStep.ABORT),
        (NodeStatus.RELEASING, US, ReleaseStep.WAIT),
        (NodeStatus.DISK_ERASING, US, ReleaseStep.WAIT),
    ],
)
def test_release_steps(status, owner, step):
    assert next_release_step(machine(status, owner), US) is step


@pytest.mark.parametrize(
    "status", [NodeStatus.BROKEN, NodeStatus.COMMISSIONING, NodeStatus.RESCUE_MODE]
)
def test_release_refuses_operator_states(status):
    with pytest.raises(MachineStateError, match=status.label):
        next_release_step(machine(status, US), US)


@pytest.mark.parametrize(
    ("mode", "erase", "quick", "secure"),
    [
        ("none", False, False, False),
        ("quick", True, True, False),
        ("full", True, False, False),
        ("secure", True, False, True),
        ("ceph", True, True, False),
    ],
)
def test_erase_modes_map_to_release_flags(mode, erase, quick, secure):
    params = release_params(mode)
    assert (params.erase, params.quick_erase, params.secure_erase) == (erase, quick, secure)
    assert params.erases == (mode != "none")
    assert bool(params.scripts) == (mode == "ceph")


def test_unknown_erase_mode_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="quick"):
        release_params("shred")
