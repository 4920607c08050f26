"""Quarantine: N deployment failures in a row that MAAS puts on the node itself mark it broken,
counted from MAAS's events so separate processes (each `teuthology-maas deploy`, as each
teuthology supervisor) add up; failures that are not the node's never count."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._cli_support import write_config
from teuthology_maas.errors import DeploymentFailed, NodeQuarantined
from teuthology_maas.models import Event
from teuthology_maas.node import quarantine as q

NODE = "smithi001"
REASON = "Installation failed (refer to the installation log for more information)."


def deploy_in_a_process(config: Path, name: str = NODE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "teuthology_maas.cli", f"--config={config}", "deploy", name],
        capture_output=True, text=True, timeout=120,
    )


def reconfigured(lab: Any, **overrides: Any) -> Any:
    """The lab's config with some keys changed (its SSH key and quarantine_after kept)."""
    kept = {"ssh_keys": list(lab.config.ssh_keys), "quarantine_after": lab.config.quarantine_after}
    return lab.reconfigured(**{**kept, **overrides})


@pytest.fixture
def failing_lab(lab_factory: Any, tmp_path: Path, ssh_keypair: Any) -> Any:
    lab = lab_factory([{"hostname": NODE}, {"hostname": "smithi002"}], ssh=False,
                      quarantine_after=3)
    lab.sim.faults.add("deploy_fail", machine=NODE)
    lab.config_file = write_config(
        tmp_path, lab.handle, quarantine_after=3, ssh_keys=[ssh_keypair.public_key],
        deploy_timeout=20, release_timeout=20, abort_timeout=10,
    )
    return lab


def test_three_failures_in_separate_processes_quarantine_the_node(failing_lab: Any) -> None:
    for attempt in (1, 2):
        result = deploy_in_a_process(failing_lab.config_file)
        assert result.returncode == 1, result.stderr
        assert "quarantined" not in result.stdout + result.stderr
        assert failing_lab.state(NODE)["status_name"] == "Ready", attempt  # cleaned up
    third = deploy_in_a_process(failing_lab.config_file)
    assert third.returncode == 1
    assert "Clean-up: quarantined: marked broken in MAAS" in third.stdout + third.stderr
    state = failing_lab.state(NODE)
    assert state["status_name"] == "Broken"
    assert "3 failed deployments in a row (quarantine_after 3)" in state["error_description"]
    assert state["error_description"].count("Installation failed") == 3
    # one mark_broken, by the third process only
    broken = [e for e in failing_lab.sim.events_for(NODE)
              if e["type"] == "User marking node broken"]
    assert len(broken) == 1


def test_in_process_error_is_node_quarantined(failing_lab: Any) -> None:
    for _ in range(2):
        with pytest.raises(DeploymentFailed) as caught:
            failing_lab.provisioner().create()
        assert not isinstance(caught.value, NodeQuarantined)
    with pytest.raises(NodeQuarantined) as quarantined:
        failing_lab.provisioner().create()
    assert quarantined.value.quarantine.startswith("teuthology-maas quarantine for ")
    # the next create() refuses a broken node, touching nothing
    with pytest.raises(Exception, match="Broken"):
        failing_lab.provisioner().create()


def test_an_abort_in_between_is_not_counted_and_a_success_resets(failing_lab: Any) -> None:
    lab = failing_lab
    for _ in range(2):
        with pytest.raises(DeploymentFailed):
            lab.provisioner().create()
    # an aborted deployment (our deploy_timeout passes: create() aborts it): not counted
    lab.sim.faults.clear()
    lab.sim.faults.add("deploy_stuck", machine=NODE, times=1)
    with pytest.raises(DeploymentFailed):
        lab.provisioner(config=reconfigured(lab, deploy_timeout=0.5, timeout=0.5)).create()
    assert lab.state(NODE)["status_name"] != "Broken"
    assert any(e["type"] == "User aborting deployment" for e in lab.sim.events_for(NODE))
    lab.sim.faults.clear()
    lab.sim.faults.add("deploy_fail", machine=NODE, times=1)
    with pytest.raises(NodeQuarantined):  # the third node failure, the abort passed over
        lab.provisioner().create()


def test_a_successful_deployment_breaks_the_run(lab_factory: Any) -> None:
    lab = lab_factory([{"hostname": NODE}], quarantine_after=2)  # with sshd: success possible
    lab.sim.faults.add("deploy_fail", machine=NODE, times=1)
    with pytest.raises(DeploymentFailed):
        lab.provisioner().create()
    lab.provisioner().create()  # deployed and verified over SSH
    lab.provisioner().release()
    lab.sim.faults.add("deploy_fail", machine=NODE, times=1)
    with pytest.raises(DeploymentFailed) as caught:
        lab.provisioner().create()
    assert not isinstance(caught.value, NodeQuarantined)  # 1 in a row since the success
    assert lab.state(NODE)["status_name"] == "Ready"


def test_quarantine_after_0_is_off(failing_lab: Any) -> None:
    config = reconfigured(failing_lab, quarantine_after=0)
    for _ in range(4):
        with pytest.raises(DeploymentFailed) as caught:
            failing_lab.provisioner(config=config).create()
        assert not isinstance(caught.value, NodeQuarantined)
    assert failing_lab.state(NODE)["status_name"] == "Ready"


# ---- the judge, on MAAS's event history -------------------------------------------------------

def ev(id: int, type: str, description: str = "", level: str = "INFO") -> Event:
    return Event(id=id, node="abc", hostname=NODE, level=level,
                 created=f"Sun, 06 Dec. 2026 10:{id:02d}:00", type=type,
                 description=description)


def start(id: int, token: str = "aa11bb22") -> Event:
    return ev(id, "User starting deployment",
              f"teuthology-maas deploy ubuntu 22.04 for x [deployment {token} 1@h]", "DEBUG")


def failed_on_node(first: int, token: str = "aa11bb22", reason: str = REASON) -> list[Event]:
    return [start(first, token), ev(first + 1, "Installing OS"),
            ev(first + 2, "Marking node failed", reason, "ERROR")]


def test_only_failures_after_the_install_count() -> None:
    history = [
        *failed_on_node(1),
        # MAAS could not power it on: not the node's install
        start(10), ev(11, "Marking node failed", "Failed to power on node", "ERROR"),
        # someone aborted
        start(20), ev(21, "Installing OS"), ev(22, "User aborting deployment", "", "DEBUG"),
        *failed_on_node(30),
        # timed out after the install began: the node hung in it
        start(40), ev(41, "Configuring storage"),
        ev(42, "Marking node failed", "Node operation 'Deploying' timed out after 30 minutes.",
           "ERROR"),
        start(50),  # still running
    ]
    outcomes = [d.outcome for d in q.deployments(history)]
    assert outcomes == ["node", "other", "aborted", "node", "node", "open"]
    assert len(q.failure_run(q.deployments(history))) == 3


def test_a_success_or_a_repair_starts_afresh() -> None:
    success = [start(5), ev(6, "Installing OS"), ev(7, "Deployed")]
    assert len(q.failure_run(q.deployments([*failed_on_node(1), *success,
                                            *failed_on_node(10)]))) == 1
    fixed = [ev(8, "User marking node fixed", "repaired", "DEBUG")]
    assert len(q.failure_run(q.deployments([*failed_on_node(1), *fixed,
                                            *failed_on_node(10)]))) == 1


def test_hostile_event_text_cannot_inject_into_the_comment() -> None:
    hostile = ("Installation failed\n[deployment ffffffff 1@evil] \x1b[31mred\x1b[0m "
               "teuthology-maas release for root " + "A" * 5000)
    run = q.failure_run(q.deployments([*failed_on_node(1, reason=hostile),
                                       *failed_on_node(10, reason=hostile)]))
    text = q.comment(run, 2)
    assert len(text) <= q.COMMENT_CHARS
    assert "\n" not in text and "\x1b" not in text
    assert "[" not in text and "]" not in text  # no tag of ours can be forged
    assert text.startswith("teuthology-maas quarantine: 2 failed deployments in a row")


# ---- the command: list, release, and what machines and reconcile say -------------------------

def quarantine_smithi001(lab: Any) -> None:
    for _ in range(3):
        with pytest.raises(DeploymentFailed):
            lab.provisioner().create()
    assert lab.state(NODE)["status_name"] == "Broken"
    lab.sim.faults.clear()


@pytest.fixture
def paddles_for(failing_lab: Any) -> Iterator[Any]:
    from teuthology_maas.testing.lockserver import LockServer

    server = LockServer([{"name": f"smithi00{i}.front.example.com", "machine_type": "smithi"}
                         for i in (1, 2)])
    handle = server.serve()
    config = failing_lab.config_file
    config.write_text(config.read_text() + f"lock_server: {handle.url}\n")
    yield server
    handle.stop()


def test_list_release_and_reports(failing_lab: Any, paddles_for: Any) -> None:
    from tests._cli_support import run_cli
    from teuthology_maas.cli._common import ExitCode

    lab, server, config = failing_lab, paddles_for, failing_lab.config_file
    fqdn = f"{NODE}.front.example.com"
    quarantine_smithi001(lab)
    listed = run_cli("quarantine", "list", "--json", config=config)
    assert listed.code == ExitCode.OK, listed.err
    rows = listed.json()["quarantined"]
    assert [r["hostname"] for r in rows] == [NODE]
    assert "3 failed deployments in a row" in rows[0]["reason"]
    assert rows[0]["paddles"]["up"] is True  # no teuthology here: paddles not marked yet

    machines = run_cli("machines", "--json", config=config)
    entry = next(m for m in machines.json()["machines"] if m["hostname"] == NODE)
    assert entry["status"] == "Broken" and "failed deployments" in entry["quarantine"]
    assert "Broken (quarantined)" in run_cli("machines", config=config).out

    dry = run_cli("reconcile", "--json", config=config)
    assert dry.code == ExitCode.FINDINGS
    finding = next(f for f in dry.json()["findings"] if f["hostname"] == NODE)
    assert finding["kind"] == "quarantined"  # not a leak, though our user may own it
    assert dry.json()["counts"]["quarantined"] == 1
    applied = run_cli("reconcile", "--apply", config=config)
    assert "marked down in paddles with the quarantine as description" in applied.out
    node = server.node(fqdn)
    assert node["up"] is False and node["description"].startswith("teuthology-maas quarantine")
    assert lab.state(NODE)["status_name"] == "Broken"  # --apply never releases it

    # marking fixed is MAAS's admin action: the teuthology user's key is told so
    refused = run_cli("quarantine", "release", NODE, config=config)
    assert refused.code == ExitCode.FAILURE
    assert "marking fixed is a MAAS administrator's action" in refused.err
    admin = config.with_name("admin.yaml")
    admin.write_text(config.read_text().replace(lab.handle.api_key,
                                                lab.handle.key_for("admin")))
    released = run_cli("quarantine", "release", f"{NODE}.front.example.com", config=admin)
    assert released.code == ExitCode.OK, released.err
    assert lab.state(NODE)["status_name"] == "Ready"
    node = server.node(fqdn)
    assert node["up"] is True and node["description"] is None
    assert run_cli("quarantine", "list", config=config).out.strip() == "0 quarantined node(s)"
    # and the count starts afresh after the repair: one more failure is not a quarantine
    lab.sim.faults.add("deploy_fail", machine=NODE, times=1)
    with pytest.raises(DeploymentFailed) as caught:
        lab.provisioner().create()
    assert not isinstance(caught.value, NodeQuarantined)


def test_paddles_description_of_a_locked_node_is_left_to_its_job(
    failing_lab: Any, paddles_for: Any
) -> None:
    from tests._cli_support import run_cli

    fqdn = f"{NODE}.front.example.com"
    paddles_for.add_node(fqdn, "smithi", locked=True, locked_by="bob@ctl",
                         description="/archive/run/5")
    quarantine_smithi001(failing_lab)
    run_cli("reconcile", "--apply", config=failing_lab.config_file)
    node = paddles_for.node(fqdn)
    assert (node["up"], node["locked"], node["locked_by"], node["description"]) == (
        False, True, "bob@ctl", "/archive/run/5")


def test_release_refuses_a_node_an_operator_marked_broken(
    failing_lab: Any, paddles_for: Any
) -> None:
    from tests._cli_support import run_cli
    from teuthology_maas.cli._common import ExitCode

    failing_lab.sim.update_machine("smithi002", status="broken",
                                   error_description="disk replaced, burn-in running")
    refused = run_cli("quarantine", "release", "smithi002", config=failing_lab.config_file)
    assert refused.code == ExitCode.FAILURE
    assert "not quarantined by teuthology-maas" in refused.err
    assert failing_lab.state("smithi002")["status_name"] == "Broken"
    listed = run_cli("quarantine", "list", "--json", config=failing_lab.config_file)
    assert listed.json()["total"] == 0


def test_failures_that_are_not_the_nodes_never_quarantine(lab_factory: Any) -> None:
    lab = lab_factory([{"hostname": NODE}], ssh=False, quarantine_after=2)
    # MAAS cannot drive the node's power: back to Allocated, no install ran
    lab.sim.faults.add("deploy_revert", machine=NODE)
    for _ in range(3):
        with pytest.raises(DeploymentFailed) as caught:
            lab.provisioner().create()
        assert not isinstance(caught.value, NodeQuarantined)
    assert lab.state(NODE)["status_name"] != "Broken"


def test_teuthologys_unlock_leaves_a_quarantined_node_broken(
    failing_lab: Any, caplog: pytest.LogCaptureFixture
) -> None:
    quarantine_smithi001(failing_lab)
    before = failing_lab.mark()
    failing_lab.provisioner().release()  # what teuthology's unlock calls: no error, no change
    assert failing_lab.posts(NODE, since=before) == []
    assert failing_lab.state(NODE)["status_name"] == "Broken"
    assert any("quarantined; not released" in r.getMessage() for r in caplog.records)


def test_release_command_points_at_quarantine_release(failing_lab: Any) -> None:
    from tests._cli_support import run_cli

    quarantine_smithi001(failing_lab)
    result = run_cli("release", NODE, config=failing_lab.config_file)
    assert "quarantined (Broken in MAAS): nothing released" in result.out + result.err
    assert "released in" not in result.out
    assert failing_lab.state(NODE)["status_name"] == "Broken"
