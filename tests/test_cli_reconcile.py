"""`teuthology-maas reconcile` against the simulator and the paddles lock-server double."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests._cli_support import CONTROL_CHARS, run_cli
from teuthology_maas.cli._common import ExitCode
from teuthology_maas.endpoint import forget_endpoints
from teuthology_maas.simulator import ManualClock
from teuthology_maas.testing.lockserver import LockServer

DOMAIN = "front.example.com"


@pytest.fixture(autouse=True)
def _forget_pollers() -> Iterator[None]:
    yield
    forget_endpoints()


def lock(server: LockServer, hostname: str, owner: str = "scheduled_alice@teuthology") -> None:
    server.add_node(f"{hostname}.{DOMAIN}", "smithi", locked=True, locked_by=owner,
                    description="/archive/run/123")


def test_clean_lab_reports_nothing(maas_sim: Any, paddles: Any, config_for: Any) -> None:
    _, url = paddles
    result = run_cli("reconcile", config=config_for(maas_sim, lock_server=url))
    assert result.code == ExitCode.OK
    assert result.out.strip() == "6 machine(s) checked: MAAS and paddles agree, nothing stuck"


def test_dry_run_lists_leaks_and_drift_and_changes_nothing(
    maas_sim: Any, paddles: Any, config_for: Any
) -> None:
    server, url = paddles
    sim = maas_sim.sim
    sim.update_machine("smithi001", status="deployed", owner="teuthology", power_state="on")
    sim.update_machine("smithi002", status="deployed", owner="teuthology", power_state="on")
    lock(server, "smithi002")  # deployed and locked: in use, fine
    lock(server, "smithi003")  # locked but Ready: drift
    sim.update_machine("smithi004", status="deployed", owner="alice")  # not ours, not visible
    sim.update_machine("smithi005", status="allocated", owner="teuthology")  # leak too
    before = len(sim.request_log)

    result = run_cli("reconcile", "--lock-server", url, config=config_for(maas_sim))
    assert result.code == ExitCode.FINDINGS
    lines = result.out.splitlines()
    assert lines[0] == (
        "LEAK   smithi001  Deployed for MAAS user 'teuthology' but unlocked in paddles"
    )
    assert lines[1] == "       -> would release (run with --apply)"
    assert any(line.startswith("LEAK   smithi005  Allocated") for line in lines)
    assert any(
        line.startswith("DRIFT  smithi003  locked in paddles by scheduled_alice@teuthology")
        for line in lines
    )
    assert "smithi002" not in result.out and "smithi004" not in result.out
    assert lines[-1] == (
        "5 machines checked: 2 leaks, 1 drift (dry run: nothing changed; --apply releases the "
        "leaks)"
    )
    assert not CONTROL_CHARS.search(result.out)
    # a dry run only reads
    assert {r.method for r in sim.request_log[before:]} == {"GET"}
    assert sim.machine("smithi001")["status_name"] == "Deployed"


def test_json_output(maas_sim: Any, paddles: Any, config_for: Any) -> None:
    server, url = paddles
    maas_sim.sim.update_machine("smithi001", status="deployed", owner="teuthology")
    lock(server, "smithi003")
    result = run_cli("reconcile", "--json", config=config_for(maas_sim, lock_server=url))
    assert result.code == ExitCode.FINDINGS
    data = result.json()
    assert data["dry_run"] is True
    assert data["maas_user"] == "teuthology"
    assert data["counts"] == {"leak": 1, "drift": 1, "stuck": 0, "quarantined": 0}
    kinds = {(f["kind"], f["hostname"]) for f in data["findings"]}
    assert kinds == {("leak", "smithi001"), ("drift", "smithi003")}
    assert all(f["action"] is None for f in data["findings"])
    assert {f["paddles_name"] for f in data["findings"]} == {
        f"smithi001.{DOMAIN}", f"smithi003.{DOMAIN}"
    }


def test_apply_releases_leaks_only(maas_sim: Any, paddles: Any, config_for: Any) -> None:
    server, url = paddles
    sim = maas_sim.sim
    sim.update_machine("smithi001", status="deployed", owner="teuthology", power_state="on")
    sim.update_machine("smithi002", status="deployed", owner="teuthology", power_state="on")
    lock(server, "smithi002")
    lock(server, "smithi003")
    result = run_cli("reconcile", "--apply", "--json", config=config_for(maas_sim, lock_server=url))
    data = result.json()
    assert data["dry_run"] is False
    leak = next(f for f in data["findings"] if f["kind"] == "leak")
    assert (leak["hostname"], leak["action"]) == ("smithi001", "released")
    assert sim.machine("smithi001")["status_name"] == "Ready"
    assert sim.machine("smithi002")["status_name"] == "Deployed"  # locked: in use
    # the drift remains for a human to judge
    assert result.code == ExitCode.FINDINGS
    again = run_cli("reconcile", config=config_for(maas_sim, lock_server=url))
    assert again.out.splitlines()[-1].startswith("6 machines checked: 1 drift")


def test_apply_with_only_leaks_exits_0(maas_sim: Any, paddles: Any, config_for: Any) -> None:
    _, url = paddles
    maas_sim.sim.update_machine("smithi004", status="deployed", owner="teuthology")
    # without lab_domain the paddles name (an FQDN) still comes from paddles itself
    config = config_for(maas_sim, lock_server=url)
    config.write_text(config.read_text().replace("lab_domain: front.example.com\n", ""))
    assert "lab_domain" not in config.read_text()
    result = run_cli("reconcile", "--apply", config=config)
    assert result.code == ExitCode.OK, result.out + result.err
    assert "-> released" in result.out
    assert maas_sim.sim.machine("smithi004")["status_name"] == "Ready"


def test_apply_failure_exits_1(maas_sim: Any, paddles: Any, config_for: Any) -> None:
    _, url = paddles
    sim = maas_sim.sim
    sim.update_machine("smithi001", status="deployed", owner="teuthology", power_state="on")
    sim.update_machine("smithi002", status="deployed", owner="teuthology", power_state="on")
    sim.faults.add("release_fail", machine="smithi001")
    result = run_cli("reconcile", "--apply", "--json", config=config_for(maas_sim, lock_server=url))
    assert result.code == ExitCode.FAILURE
    actions = {f["hostname"]: f["action"] for f in result.json()["findings"]}
    assert actions["smithi002"] == "released"  # one failure does not stop the others
    assert actions["smithi001"].startswith("release failed: ReleaseFailed")
    assert sim.machine("smithi002")["status_name"] == "Ready"


def _region_activity(handle: Any, server: LockServer) -> None:
    """Another machine does something now: an event at the region's current time."""
    lock(server, "smithi001")
    handle.sim.update_machine("smithi001", status="allocated", owner="teuthology")


def test_stuck_machine_past_maas_timeout(maas_sim_factory: Any, paddles: Any,
                                         config_for: Any) -> None:
    server, url = paddles
    clock = ManualClock(start=time.time() - 7200)
    handle = maas_sim_factory(clock=clock)
    handle.sim.update_machine("smithi006", status="deploying", owner="teuthology")
    handle.sim.update_machine("smithi005", status="releasing", owner="teuthology")
    lock(server, "smithi006")
    lock(server, "smithi005")
    clock.advance(7200)  # two hours without a word from either machine
    _region_activity(handle, server)
    result = run_cli("reconcile", "--json", config=config_for(handle, lock_server=url))
    assert result.code == ExitCode.FINDINGS
    stuck = {f["hostname"]: f for f in result.json()["findings"] if f["kind"] == "stuck"}
    assert set(stuck) == {"smithi005", "smithi006"}
    assert stuck["smithi006"]["maas_timeout_seconds"] == 30 * 60
    assert stuck["smithi005"]["maas_timeout_seconds"] == 5 * 60
    assert 7200 - 60 <= stuck["smithi006"]["idle_seconds"] <= 7200 + 600
    assert "From 'Ready' to 'Deploying'" in stuck["smithi006"]["detail"]
    human = run_cli("reconcile", config=config_for(handle, lock_server=url))
    assert any(line.startswith("STUCK  smithi006  Deploying with no MAAS event for 2h00m")
               for line in human.out.splitlines())


def test_region_clock_in_another_time_zone(maas_sim_factory: Any, paddles: Any,
                                           config_for: Any) -> None:
    """MAAS stamps events in the region's local time, unlabelled. A region five hours behind
    UTC must not make every machine look five hours idle."""
    server, url = paddles
    clock = ManualClock(start=time.time() - 5 * 3600 - 40 * 60)
    handle = maas_sim_factory(clock=clock)
    handle.sim.update_machine("smithi006", status="deploying", owner="teuthology")
    clock.advance(40 * 60)
    handle.sim.update_machine("smithi005", status="releasing", owner="teuthology")
    lock(server, "smithi006")
    lock(server, "smithi005")
    _region_activity(handle, server)
    result = run_cli("reconcile", "--json", config=config_for(handle, lock_server=url))
    stuck = {f["hostname"]: f for f in result.json()["findings"] if f["kind"] == "stuck"}
    assert set(stuck) == {"smithi006"}  # 40 minutes on the region's clock; smithi005 just began
    assert 40 * 60 - 60 <= stuck["smithi006"]["idle_seconds"] <= 40 * 60 + 60


def test_recent_transition_is_not_stuck(maas_sim_factory: Any, paddles: Any,
                                        config_for: Any) -> None:
    server, url = paddles
    handle = maas_sim_factory(clock=ManualClock(start=time.time() - 60))
    handle.sim.update_machine("smithi006", status="deploying", owner="teuthology")
    lock(server, "smithi006")
    result = run_cli("reconcile", config=config_for(handle, lock_server=url))
    assert result.code == ExitCode.OK
    assert "STUCK" not in result.out


def test_node_timeout_comes_from_maas(maas_sim_factory: Any, paddles: Any,
                                      config_for: Any) -> None:
    server, url = paddles
    from tests.fixtures_simulator import default_inventory

    clock = ManualClock(start=time.time() - 7200)
    handle = maas_sim_factory({**default_inventory(), "config": {"node_timeout": 180}},
                              clock=clock)
    handle.sim.update_machine("smithi006", status="deploying", owner="teuthology")
    lock(server, "smithi006")
    clock.advance(7200)
    _region_activity(handle, server)
    result = run_cli("reconcile", config=config_for(handle, lock_server=url))
    # two idle hours: stuck with MAAS's default 30 minutes, not with this region's 3 hours
    assert result.code == ExitCode.OK, result.out
    assert "STUCK" not in result.out


def test_lock_server_is_required(maas_sim: Any, config_for: Any) -> None:
    result = run_cli("reconcile", config=config_for(maas_sim))
    assert result.code == ExitCode.USAGE
    assert "--lock-server" in result.err


def test_unreachable_lock_server_exits_5(maas_sim: Any, config_for: Any) -> None:
    server = LockServer()
    handle = server.serve()
    url = handle.url
    handle.stop()
    result = run_cli("reconcile", "--lock-server", url, config=config_for(maas_sim))
    assert result.code == ExitCode.UNREACHABLE
    assert "lock server" in result.err


def test_event_times_in_maas_format() -> None:
    from datetime import UTC, datetime, timedelta

    from teuthology_maas.cli._reconcile import parse_event_time, region_now
    from teuthology_maas.models import Event

    assert parse_event_time("Fri, 07 Dec. 2018 20:11:08") == datetime(2018, 12, 7, 20, 11, 8,
                                                                      tzinfo=UTC)
    assert parse_event_time("Tue, 03 May. 2022 01:02:03") == datetime(2022, 5, 3, 1, 2, 3,
                                                                      tzinfo=UTC)
    assert parse_event_time("not a date") is None
    utc_now = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)

    def event(created: str) -> Event:
        return Event(id=1, node=None, hostname="x", level="INFO", created=created, type="t",
                     description="")

    # a region on UTC: our clock is the reference (a quiet stuck node is still caught)
    assert region_now(event("Sat, 21 Nov. 2026 11:58:00"), utc_now) == utc_now
    # five hours behind: the region's newest event is the reference
    assert region_now(event("Sat, 21 Nov. 2026 07:00:00"), utc_now) == utc_now - timedelta(
        hours=5)
    assert region_now(None, utc_now) == utc_now


def test_apply_releases_in_parallel_with_a_line_per_step(
    maas_sim_factory: Any, paddles: Any, config_for: Any
) -> None:
    from tests.fixtures_simulator import default_inventory

    _, url = paddles
    # a quick erase takes 1000 simulated seconds: about 1 s each at 1000x
    handle = maas_sim_factory({**default_inventory(), "timings": {"disk_erasing_quick": 1000}})
    for name in ("smithi001", "smithi002", "smithi003"):
        handle.sim.update_machine(name, status="deployed", owner="teuthology", power_state="on")
    started = time.monotonic()
    result = run_cli("reconcile", "--apply", config=config_for(handle, lock_server=url))
    took = time.monotonic() - started
    assert result.code == ExitCode.OK, result.out + result.err
    lines = result.out.splitlines()
    steps = [line.split("] ", 1)[1] for line in lines if line.startswith("[")]
    starts = [i for i, s in enumerate(steps) if s.endswith("releasing (Deployed, unlocked in "
                                                            "paddles)")]
    ends = [i for i, s in enumerate(steps) if ": released in " in s]
    assert len(starts) == 3 and len(ends) == 3
    # all three were under way before the first finished: they ran side by side
    assert max(starts) < min(ends)
    assert took < 3.0 + 2.0  # three 1 s erases one after another would take over 3 s
    # every machine's progress was shown as MAAS moved it
    for name in ("smithi001", "smithi002", "smithi003"):
        assert f"{name}: Disk erasing" in "\n".join(steps)
    assert lines[-1] == "6 machines checked: 3 leaks released"
    for name in ("smithi001", "smithi002", "smithi003"):
        assert handle.sim.machine(name)["status_name"] == "Ready"


def test_apply_with_json_keeps_the_shape_and_sends_progress_to_stderr(
    maas_sim: Any, paddles: Any, config_for: Any
) -> None:
    _, url = paddles
    maas_sim.sim.update_machine("smithi001", status="deployed", owner="teuthology")
    result = run_cli("reconcile", "--apply", "--json",
                     config=config_for(maas_sim, lock_server=url))
    data = result.json()
    assert set(data) == {"dry_run", "maas_user", "lock_server", "findings", "counts"}
    assert set(data["counts"]) == {"leak", "drift", "stuck", "quarantined"}
    assert "smithi001: released in " in result.err


def test_the_summary_says_what_happened_in_plain_words() -> None:
    from teuthology_maas.cli._reconcile import Finding
    from teuthology_maas.cli._reconcile_apply import summary

    def finding(kind: str, action: str | None = None) -> Finding:
        return Finding(kind, "h", "id", "Deployed", "teuthology", "", action=action)

    findings = [finding("leak", "released"), finding("leak", "released"),
                finding("leak", "release failed: ReleaseFailed: x"), finding("drift"),
                finding("kept")]
    assert summary(findings, checked=1, dry_run=False) == (
        "1 machine checked: 2 leaks released, 1 leak NOT released, 1 machine kept for "
        "debugging, 1 drift"
    )
    assert summary([finding("leak"), finding("stuck"), finding("stuck")], checked=9,
                   dry_run=True) == (
        "9 machines checked: 1 leak, 2 stuck machines (dry run: nothing changed; --apply "
        "releases the leaks)"
    )


def test_an_unknown_machine_type_is_a_usage_error(
    maas_sim: Any, paddles: Any, config_for: Any
) -> None:
    _, url = paddles
    result = run_cli("reconcile", "-m", "smithy", config=config_for(maas_sim, lock_server=url))
    assert result.code == ExitCode.USAGE
    assert "no machine type 'smithy'" in result.err and "did you mean 'smithi'?" in result.err
