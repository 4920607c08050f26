"""Forensics: what the one-line summary and the report say, and that collecting never raises."""

from __future__ import annotations

import dataclasses
import time

from teuthology_maas.errors import DeploymentFailed, MaasUnavailable, ReleaseFailed
from teuthology_maas.models import Event, Machine, NodeStatus
from teuthology_maas.node.forensics import Forensics, collect, failure


def event(id_: int, type_: str, description: str = "", level: str = "INFO") -> Event:
    return Event(
        id=id_,
        node="abc123",
        hostname="smithi001",
        level=level,
        created=f"Sat, 21 Nov. 2026 06:{id_:02d}:00",
        type=type_,
        description=description,
    )


FAILED = Forensics(
    hostname="smithi001",
    system_id="abc123",
    status_name="Failed deployment",
    status_message="Marking node failed - Installation failed",
    error_description="Installation failed",
    events=(  # newest first, as MAAS answers
        event(9, "Marking node failed", "Installation failed", "ERROR"),
        event(8, "Node installation failure", "curtin command failed", "ERROR"),
        event(7, "Installing OS"),
        event(6, "User starting deployment", "(teuthology)", "DEBUG"),
        event(5, "Configuring storage"),
    ),
    installation_output="start\nextracting image\nERROR: curtin: disk /dev/sda not found\ndone\n",
)


def test_summary_is_one_line_with_status_message_events_and_install_log():
    text = FAILED.summary()
    assert "\n" not in text
    assert text.startswith(
        "smithi001 (abc123): Failed deployment: Marking node failed - Installation failed"
    )
    # Newest three INFO+ events, oldest first; our own DEBUG request events are left out.
    assert "last events: Installing OS, Node installation failure - curtin command failed, " in text
    assert "User starting deployment" not in text
    assert "installation output: ERROR: curtin: disk /dev/sda not found" in text


def test_every_failure_with_forensics_has_one_shape_and_carries_the_machine():
    error = failure(DeploymentFailed, "deploying ubuntu 22.04 on smithi001", "timed out",
                    FAILED, then="Clean-up: released (Ready)")
    assert isinstance(error, DeploymentFailed)
    text = str(error)
    assert text.startswith("deploying ubuntu 22.04 on smithi001 failed: timed out. MAAS: "
                           "smithi001 (abc123): Failed deployment: Marking node failed")
    assert text.endswith(". Clean-up: released (Ready)")
    assert (error.machine, error.system_id, error.status) == (
        "smithi001", "abc123", "Failed deployment")
    assert error.maas_message == "Marking node failed - Installation failed"
    # a cause that already tells MAAS's story is not told twice
    bare = failure(ReleaseFailed, "releasing smithi001", "MAAS said no.", FAILED,
                   with_summary=False)
    assert str(bare) == "releasing smithi001 failed: MAAS said no."
    # a status that could not be re-read is not passed off as the current one
    stale = failure(ReleaseFailed, "releasing smithi001", "x",
                    dataclasses.replace(FAILED, status_current=False))
    assert stale.status is None and "status unknown" in str(stale)


def test_report_holds_everything_in_order():
    report = FAILED.report()
    assert "Status: Failed deployment" in report
    assert "Error description: Installation failed" in report
    events = report[report.index("Events") :]
    assert events.index("Configuring storage") < events.index("Marking node failed - Installation")
    assert "User starting deployment" in report  # the full report keeps DEBUG events
    assert "  done" in report


def test_install_summary_falls_back_to_the_last_line_without_error_lines():
    quiet = Forensics("h", "s", "Deployed", installation_output="a\nb\nlast line\n\n")
    assert quiet.install_summary() == "last line"
    assert Forensics("h", "s", "Deployed").install_summary() is None


def test_summary_is_bounded_even_for_huge_messages():
    huge = Forensics("h", "s", "Failed deployment", status_message="x" * 5000)
    assert len(huge.summary()) <= 900


class _BrokenClient:
    """A MAAS that fails every call: forensics must still return what it has."""

    def get_machine(self, system_id):
        raise MaasUnavailable("MAAS unreachable")

    def events(self, **kwargs):
        raise MaasUnavailable("MAAS unreachable")

    def installation_output(self, system_id):
        raise RuntimeError("boom")


def test_collect_never_raises_and_lists_what_it_could_not_get():
    machine = Machine.from_json(
        {
            "system_id": "abc123",
            "hostname": "smithi001",
            "status": int(NodeStatus.DEPLOYING),
            "status_message": "Installing OS",
        }
    )
    found = collect(_BrokenClient(), machine)  # type: ignore[arg-type]
    assert found.status_name == "Deploying"
    assert found.status_message == "Installing OS"
    assert len(found.problems) == 3
    assert "forensics incomplete" in found.summary()
    assert "MAAS unreachable" in found.summary()


def test_collect_over_http_tells_the_failed_deployment_story(lab_factory):
    lab = lab_factory(ssh=False)
    system_id = lab.state("smithi001")["system_id"]
    before = lab.client.events(id=[system_id], level="DEBUG", limit=1)
    since = before[0].id if before else None
    lab.sim.faults.add("deploy_fail", machine="smithi001", reason="curtin: no disk")
    lab.client.allocate(system_id=system_id)
    lab.client.deploy(system_id, distro_series="ubuntu/jammy")
    machine = lab.client.get_machine(system_id)
    while lab.state("smithi001")["status_name"] == "Deploying":
        time.sleep(0.01)

    found = collect(lab.client, machine, since_event_id=since)

    assert found.status_name == "Failed deployment"  # re-read, not the stale Deploying
    assert "curtin: no disk" in (found.status_message or "")
    assert found.events and all(e.id > (since or 0) for e in found.events)
    assert any(e.type == "Marking node failed" for e in found.events)
    assert found.installation_output
    assert not found.problems
    summary = found.summary()
    assert summary.startswith(f"smithi001 ({system_id}): Failed deployment")
    assert "installation output:" in summary


def test_a_status_that_cannot_be_re_read_is_reported_as_unknown_not_as_current(fault_lab):
    """The deploy went through but its answer was lost, and MAAS is down when the failure is
    explained: the status we last saw (Allocated) must not be reported as MAAS's."""
    lab = fault_lab
    direct = lab.client(lab.config(direct=True))
    system_id = lab.sim.system_id("smithi001")
    seen = direct.allocate(system_id=system_id)
    direct.deploy(system_id, distro_series="ubuntu/jammy")
    lab.proxy.refuse_connections()
    client = lab.client(max_attempts=2)

    found = collect(client, seen)
    lab.proxy.accept_connections()

    assert lab.status("smithi001") == "Deploying"
    assert found.current_status is None
    summary = found.summary()
    assert summary.startswith(
        f"smithi001 ({system_id}): status unknown (could not re-read it; last seen Allocated)"
    ), summary
    assert "the machine, events, installation output: MAAS unreachable" in summary, summary
    # One retry budget spent on the outage, not one per fetch.
    assert len(lab.vtime.waits) == 1, lab.vtime.waits
    assert "last seen" in found.report()


def test_fetch_problems_on_another_users_machine_are_one_short_clause(fault_lab):
    lab = fault_lab
    client = lab.client()
    (seen,) = client.list_machines(hostname=["smithi002"])
    lab.sim.update_machine("smithi002", status="deployed", owner="alice")

    found = collect(client, seen)

    summary = found.summary()
    assert summary == (
        f"smithi002 ({seen.system_id}): status unknown (could not re-read it; last seen Ready); "
        "forensics incomplete: the machine, installation output: HTTP 403 Forbidden"
    ), summary
    # The detail is kept for the full report.
    assert "nodes/" in found.report() and "403" in found.report()
