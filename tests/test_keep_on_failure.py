"""keep_on_failure: a failed deployment is left as MAAS ended it for debugging, locked and
marked with who kept it and why; teuthology's unlock and the next create() leave it alone,
`reconcile` reports it as KEPT (not a leak) and an explicit `release` ends the keep."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._cli_support import run_cli, write_config
from teuthology_maas.cli._common import ExitCode
from teuthology_maas.errors import DeploymentFailed, MachineStateError
from teuthology_maas.node.keep import KEPT_AT, KEPT_BY, KEPT_REASON, KeptMark
from teuthology_maas.testing.lockserver import LockServer

DOMAIN = "front.example.com"


def owner_data(lab: Any, hostname: str = "smithi001") -> dict[str, str]:
    state = lab.state(hostname)
    return dict(state.get("owner_data") or {})


def test_a_failed_deployment_is_kept_as_maas_ended_it(lab_factory: Any) -> None:
    lab = lab_factory([{"hostname": "smithi001"}], ssh=False, keep_on_failure=True)
    lab.sim.faults.add("deploy_fail", machine="smithi001", reason="curtin: disk not found")
    provisioner = lab.provisioner(owner="alice@control")
    with pytest.raises(DeploymentFailed) as caught:
        provisioner.create()
    message = str(caught.value)
    assert "Clean-up: skipped, kept for debugging as MAAS left it (Failed deployment" in message
    assert "teuthology-maas release smithi001" in message
    state = lab.state("smithi001")
    assert state["status_name"] == "Failed deployment"
    assert state["owner"] == "teuthology"
    data = owner_data(lab)
    assert data[KEPT_BY] == "alice@control"
    assert KEPT_AT in data
    assert "Failed deployment" in data[KEPT_REASON] or "deployment" in data[KEPT_REASON]
    assert not state["locked"]  # MAAS locks only Deployed or Deploying machines


def test_a_deployed_node_that_fails_over_ssh_is_kept_locked(lab_factory: Any) -> None:
    # no sshd: MAAS says Deployed, SSH never answers
    lab = lab_factory([{"hostname": "smithi001"}], ssh=False, keep_on_failure=True,
                      ssh_timeout=1.0, ssh_resolve_grace=0.2)
    with pytest.raises(DeploymentFailed):
        lab.provisioner().create()
    state = lab.state("smithi001")
    assert state["status_name"] == "Deployed"
    assert state["locked"] is True
    mark = KeptMark.from_owner_data(owner_data(lab))
    assert mark is not None and "SSH" in mark.reason


@pytest.fixture
def kept(lab_factory: Any) -> Any:
    lab = lab_factory([{"hostname": "smithi001"}], ssh=False, keep_on_failure=True)
    lab.sim.faults.add("deploy_fail", machine="smithi001", times=1)
    with pytest.raises(DeploymentFailed):
        lab.provisioner().create()
    assert KeptMark.of(lab.client.list_machines(hostname="smithi001")[0]) is not None
    return lab


def test_teuthologys_unlock_leaves_a_kept_node_alone(kept: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    before = kept.mark()
    kept.provisioner().release()  # what teuthology's unlock calls
    assert kept.posts("smithi001", since=before) == []
    assert kept.state("smithi001")["status_name"] == "Failed deployment"
    assert any("kept for debugging" in r.getMessage() and "not released" in r.getMessage()
               for r in caplog.records)


def test_the_next_create_refuses_a_kept_node_before_touching_it(kept: Any) -> None:
    before = kept.mark()
    with pytest.raises(MachineStateError, match=r"kept for debugging by .*release it first"):
        kept.provisioner().create()
    assert kept.posts("smithi001", since=before) == []


def test_an_explicit_release_ends_the_keep(kept: Any) -> None:
    kept.provisioner().release(release_kept=True)
    state = kept.state("smithi001")
    assert state["status_name"] == "Ready"
    assert KEPT_BY not in (state.get("owner_data") or {})


def test_without_keep_on_failure_the_node_is_cleaned_up_as_before(lab_factory: Any) -> None:
    lab = lab_factory([{"hostname": "smithi001"}], ssh=False)
    lab.sim.faults.add("deploy_fail", machine="smithi001")
    with pytest.raises(DeploymentFailed):
        lab.provisioner().create()
    assert lab.state("smithi001")["status_name"] == "Ready"


# ---- reconcile and the command ----------------------------------------------------------------


@pytest.fixture
def paddles() -> Iterator[str]:
    server = LockServer([{"name": f"smithi001.{DOMAIN}", "machine_type": "smithi"}])
    handle = server.serve()
    yield handle.url
    handle.stop()


def _config(lab: Any, directory: Path, **maas: Any) -> Path:
    return write_config(directory, lab.handle, ssh_keys=list(lab.config.ssh_keys),
                        deploy_timeout=20, ssh_timeout=2, **maas)


def test_reconcile_reports_a_kept_node_as_kept_not_leaked(
    kept: Any, paddles: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, kept.handle, top={"lock_server": paddles},
                          ssh_keys=list(kept.config.ssh_keys))
    before = kept.mark()
    result = run_cli("reconcile", "--apply", config=config)
    assert result.code == ExitCode.OK, result.out  # kept on purpose: nothing to act on
    lines = result.out.splitlines()
    assert lines[0].startswith("KEPT   smithi001  Failed deployment, kept for debugging by ")
    assert lines[-1] == "1 machine checked: 1 machine kept for debugging"
    assert kept.posts("smithi001", since=before) == []  # --apply does not release it
    as_json = run_cli("reconcile", "--json", config=config).json()
    finding = as_json["findings"][0]
    assert finding["kind"] == "kept" and finding["kept_by"]
    assert as_json["counts"] == {"leak": 0, "drift": 0, "stuck": 0, "quarantined": 0}


def test_deploy_keep_on_failure_from_the_command_then_release(
    lab_factory: Any, tmp_path: Path
) -> None:
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}], ssh=False)
    lab.sim.faults.add("deploy_fail", machine="smithi001", times=1)
    config = _config(lab, tmp_path)
    result = run_cli("deploy", "smithi001", "--keep-on-failure", config=config)
    assert result.code == ExitCode.FAILURE
    assert "kept for debugging" in result.out  # the provisioner's account, as a note
    assert lab.state("smithi001")["status_name"] == "Failed deployment"
    again = run_cli("deploy", "smithi001", config=config)
    assert again.code == ExitCode.FAILURE and "release it first" in again.err
    released = run_cli("release", "smithi001", config=config)
    assert released.code == ExitCode.OK, released.err
    assert lab.state("smithi001")["status_name"] == "Ready"
