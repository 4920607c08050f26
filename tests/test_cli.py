"""`teuthology-maas`: help, usage and config errors, `machines`, `events`, and the one-node
actions (deploy, release, abort) against the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests._cli_support import CONTROL_CHARS, run_cli, run_on_pty, write_config
from teuthology_maas.cli._common import ExitCode
from teuthology_maas.models import NodeStatus

SUBCOMMANDS = ["doctor", "machines", "deploy", "release", "abort", "events", "reconcile"]
OTHER_AREAS = ["simulator", "demo"]


# ---- help and usage -----------------------------------------------------------------------


def test_help_lists_every_subcommand_and_the_exit_codes() -> None:
    result = run_cli("--help")
    assert result.code == 0
    for name in SUBCOMMANDS + OTHER_AREAS:
        assert f"    {name} " in result.out
    assert "exit codes:" in result.out
    assert "3    doctor: at least one check is FAIL" in result.out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_its_own_help(name: str) -> None:
    result = run_cli(name, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: teuthology-maas {name}")
    assert "--config FILE" in result.out and "--json" in result.out


@pytest.mark.parametrize("name", OTHER_AREAS)
def test_subcommands_of_other_areas_are_wired_in(name: str) -> None:
    result = run_cli(name, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: teuthology-maas {name}")


def test_console_script_help_works() -> None:
    import shutil
    import subprocess
    import sys

    script = Path(sys.executable).parent / "teuthology-maas"
    command = [str(script)] if script.exists() else [shutil.which("teuthology-maas") or ""]
    proc = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "exit codes:" in proc.stdout


def test_usage_error_exits_2() -> None:
    assert run_cli("machines", "--no-such-option").code == ExitCode.USAGE
    missing_name = run_cli("events")
    assert missing_name.code == ExitCode.USAGE
    assert "the following arguments are required: NAME" in missing_name.err


def test_missing_config_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = run_cli("machines", config=missing)
    assert result.code == ExitCode.USAGE
    assert "cannot read config file" in result.err and str(missing) in result.err
    as_json = run_cli("--json", "machines", config=missing)
    assert as_json.code == ExitCode.USAGE
    assert as_json.json()["error"] == "ConfigError"
    assert as_json.json()["ok"] is False


def test_config_comes_from_teuthology_config_env(
    maas_sim: Any, config_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEUTHOLOGY_CONFIG", str(config_for(maas_sim)))
    result = run_cli("machines")
    assert result.code == 0
    assert "6 machines: 6 Ready" in result.out


def test_unreachable_maas_exits_5(maas_sim_factory: Any, config_for: Any) -> None:
    handle = maas_sim_factory()
    config = config_for(handle)
    handle.stop()
    result = run_cli("machines", config=config)
    assert result.code == ExitCode.UNREACHABLE
    assert "MaasUnavailable" in result.err


def test_rejected_key_exits_5(maas_sim: Any, config_for: Any) -> None:
    consumer, token, _ = maas_sim.api_key.split(":")
    config = config_for(maas_sim, api_key=f"{consumer}:{token}:wrongsecretwrongsecret")
    result = run_cli("machines", config=config)
    assert result.code == ExitCode.UNREACHABLE
    assert "MaasAuthError" in result.err
    assert "wrongsecret" not in result.err


# ---- machines -----------------------------------------------------------------------------


def test_machines_table_and_summary(maas_sim: Any, config_for: Any) -> None:
    sim = maas_sim.sim
    sim.update_machine("smithi002", status="deployed", owner="teuthology", locked=True,
                       osystem="ubuntu", distro_series="jammy", power_state="on")
    sim.update_machine("smithi003", status="failed_deployment", owner="teuthology")
    sim.add_machine("mira001", tags=["mira"], pool="mira")
    result = run_cli("machines", config=config_for(maas_sim))
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == ["HOSTNAME", "TYPE", "STATUS", "SINCE", "OWNER", "LOCKED", "OS",
                                "IP", "POWER", "MESSAGE"]
    rows = {line.split()[0]: line for line in lines[1:7]}
    assert sorted(rows) == [f"smithi00{i}" for i in range(1, 7)]
    cells = rows["smithi002"].split()
    assert cells[:3] == ["smithi002", "smithi", "Deployed"]
    assert cells[4:9] == ["teuthology", "yes", "ubuntu/jammy",
                          ",".join(sim.machine("smithi002")["ip_addresses"]), "on"]
    assert "Failed deployment" in rows["smithi003"]
    assert "mira001" not in result.out  # not a configured machine type
    assert lines[-1] == "6 machines: 4 Ready, 1 Deployed, 1 Failed deployment"
    assert not CONTROL_CHARS.search(result.out)  # not a terminal: no colour


def test_machines_filter_by_type_and_all(maas_sim: Any, config_for: Any) -> None:
    maas_sim.sim.add_machine("mira001", tags=["mira"], pool="mira")
    maas_sim.sim.add_machine("odd001")
    config = config_for(maas_sim)
    mira = run_cli("machines", "-m", "mira", config=config)
    assert mira.code == 0
    assert [line.split()[0] for line in mira.out.splitlines()[1:2]] == ["mira001"]
    assert mira.out.splitlines()[-1] == "1 machine: 1 Ready"
    both = run_cli("machines", "-m", "smithi,mira", config=config)
    assert both.out.splitlines()[-1] == "7 machines: 7 Ready"
    everything = run_cli("machines", "--all", config=config)
    assert "odd001" in everything.out
    assert everything.out.splitlines()[-1] == "8 machines: 8 Ready"


def test_machines_json(maas_sim: Any, config_for: Any) -> None:
    maas_sim.sim.update_machine("smithi001", status="allocated", owner="teuthology")
    result = run_cli("machines", "--json", config=config_for(maas_sim))
    assert result.code == 0
    data = result.json()
    assert data["total"] == 6
    assert data["summary"] == {"Ready": 5, "Allocated": 1}
    first = data["machines"][0]
    assert first["hostname"] == "smithi001"
    assert first["status"] == "Allocated"
    assert first["owner"] == "teuthology"
    assert first["type"] == "smithi"
    assert set(first) == {"hostname", "system_id", "type", "status", "seconds_in_status",
                          "owner", "teuthology_owner", "locked", "os", "ip_addresses",
                          "architecture", "pool", "zone", "tags", "power", "status_message",
                          "kept", "quarantine"}
    assert first["architecture"] == "amd64/generic" and first["pool"] == "smithi"
    assert first["tags"] == ["smithi"] and first["ip_addresses"]


def test_machines_hides_other_users_machines_from_a_non_admin_key(
    maas_sim: Any, config_for: Any
) -> None:
    maas_sim.sim.update_machine("smithi004", status="deployed", owner="alice")
    result = run_cli("machines", "--json", config=config_for(maas_sim))
    assert "smithi004" not in [m["hostname"] for m in result.json()["machines"]]
    admin = run_cli("machines", "--json",
                    config=config_for(maas_sim, api_key=maas_sim.key_for("admin")))
    owners = {m["hostname"]: m["owner"] for m in admin.json()["machines"]}
    assert owners["smithi004"] == "alice"


# ---- deploy / release / abort / events ----------------------------------------------------


@pytest.fixture
def lab_config(tmp_path: Path):
    """A config file for a `lab` (simulator + loopback sshd) from tests/fixtures_provisioner."""

    def make(lab: Any, **maas: Any) -> Path:
        cfg = lab.config
        section = {
            "deploy_timeout": cfg.deploy_timeout,
            "release_timeout": cfg.release_timeout,
            "abort_timeout": cfg.abort_timeout,
            "ssh_timeout": cfg.ssh_timeout,
            "ssh_keys": list(cfg.ssh_keys),
            **({"ssh_config": cfg.ssh_config} if cfg.ssh_config else {}),
            **({"ssh_private_key": cfg.ssh_private_key} if cfg.ssh_private_key else {}),
            **maas,
        }
        return write_config(tmp_path, lab.handle, **section)

    return make


def test_deploy_then_release_with_plain_progress(lab_factory: Any, lab_config: Any) -> None:
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}])
    config = lab_config(lab)
    deployed = run_cli("deploy", "smithi001", "--os-type", "ubuntu", "--os-version", "22.04",
                       config=config)
    assert deployed.code == 0, deployed.err
    assert lab.state("smithi001")["status_name"] == "Deployed"
    lines = deployed.out.splitlines()
    assert lines[0].endswith("smithi001: Ready")
    assert any(line.endswith("smithi001: Deployed") for line in lines)
    assert any("Deploying" in line for line in lines)
    assert lines[-1].startswith("smithi001: deployed ubuntu 22.04 in ")
    assert all(line.startswith("[") for line in lines[:-1])
    assert not CONTROL_CHARS.search(deployed.out)

    released = run_cli("release", "smithi001.front.example.com", "--erase", "none",
                       config=config)
    assert released.code == 0, released.err
    assert lab.state("smithi001")["status_name"] == "Ready"
    assert released.out.splitlines()[0].endswith("smithi001: Deployed")
    assert released.out.splitlines()[-1].startswith("smithi001: released in ")
    assert not CONTROL_CHARS.search(released.out)

    events = run_cli("events", "smithi001", "-n", "100", config=config)
    assert events.code == 0
    ids_in_order = events.out.splitlines()
    assert ids_in_order, "a deployed-and-released machine has events"
    assert any("Deploy" in line for line in ids_in_order)
    as_json = run_cli("events", "smithi001", "--json", "--level", "DEBUG", config=config).json()
    event_ids = [e["id"] for e in as_json["events"]]
    assert event_ids == sorted(event_ids)  # oldest first
    assert as_json["hostname"] == "smithi001"


def test_deploy_json_keeps_stdout_for_the_result(lab_factory: Any, lab_config: Any) -> None:
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}])
    result = run_cli("deploy", "smithi001", "--json", config=lab_config(lab))
    assert result.code == 0, result.err
    data = result.json()
    assert data["ok"] is True
    assert data["action"] == "deploy"
    assert data["outcome"].startswith("deployed ubuntu 22.04 in ")
    assert data["status"] == "Deployed"
    assert data["hostname"] == "smithi001"
    assert "smithi001: Deployed" in result.err  # progress went to stderr


def test_deploy_of_an_unknown_os_is_a_usage_error(lab_factory: Any, lab_config: Any) -> None:
    lab = lab_factory([{"hostname": "smithi001"}], ssh=False)
    before = lab.mark()
    result = run_cli("deploy", "smithi001", "--os-version", "99.04", config=lab_config(lab))
    assert result.code == ExitCode.USAGE  # nothing was attempted
    assert "99.04" in result.err
    assert lab.state("smithi001")["status_name"] == "Ready"
    assert lab.posts("smithi001", since=before) == []


def test_deploy_of_a_missing_machine_fails(lab_factory: Any, lab_config: Any) -> None:
    lab = lab_factory([{"hostname": "smithi001"}], ssh=False)
    result = run_cli("deploy", "smithi999", "--json", config=lab_config(lab))
    assert result.code == ExitCode.FAILURE
    assert result.json()["error"] == "MachineNotFound"
    assert "smithi999" in result.json()["message"]


def test_release_refuses_someone_elses_machine(lab_factory: Any, lab_config: Any) -> None:
    lab = lab_factory([{"hostname": "smithi001", "status": "deployed", "owner": "alice"}],
                      ssh=False)
    # an admin key sees alice's machine, but ownership rules still refuse it
    config = lab_config(lab, api_key=lab.handle.key_for("admin"))
    before = lab.mark()
    result = run_cli("release", "smithi001", config=config)
    assert result.code == ExitCode.FAILURE
    assert "OwnershipError" in result.err and "alice" in result.err
    assert lab.state("smithi001")["status_name"] == "Deployed"
    assert lab.posts("smithi001", since=before) == []


def test_abort_stops_a_deployment(lab_factory: Any, lab_config: Any) -> None:
    lab = lab_factory([{"hostname": "smithi001"}], ssh=False, timings={"deploying": 1e6})
    system_id = lab.state("smithi001")["system_id"]
    lab.client.deploy(system_id, distro_series="ubuntu/jammy")
    assert lab.state("smithi001")["status_name"] == "Deploying"
    result = run_cli("abort", "smithi001", config=lab_config(lab))
    assert result.code == 0, result.err
    status = NodeStatus(lab.state("smithi001")["status"])
    assert status in (NodeStatus.ALLOCATED, NodeStatus.READY)
    assert result.out.splitlines()[0].endswith("smithi001: Deploying")
    assert result.out.splitlines()[-1].startswith("smithi001: aborted in ")


def test_events_follow_until_a_status(lab_factory: Any, lab_config: Any) -> None:
    lab = lab_factory([{"hostname": "smithi001"}], ssh=False, timings={"deploying": 60.0})
    system_id = lab.state("smithi001")["system_id"]
    lab.client.deploy(system_id, distro_series="ubuntu/jammy")
    result = run_cli("events", "smithi001", "--follow", "--until", "deployed", "--until",
                     "failed_deployment", "--interval", "0.02", "--timeout", "30", "-n", "1",
                     "--level", "DEBUG", config=lab_config(lab))
    assert result.code == 0, result.err
    assert lab.state("smithi001")["status_name"] == "Deployed"
    lines = result.out.splitlines()
    assert len(lines) > 2  # the newest event at the start, then what followed
    assert "to 'Deployed'" in result.out
    assert not CONTROL_CHARS.search(result.out)
    # every event printed exactly once, in MAAS's order, with none skipped
    everything = run_cli("events", "smithi001", "--json", "-n", "1000", "--level", "DEBUG",
                         config=lab_config(lab)).json()["events"]
    rendered = [
        f"{e['created']} {e['level']}: {e['type']}"
        + (f" - {e['description']}" if e["description"] else "")
        for e in everything
    ]
    start = rendered.index(lines[0])
    assert rendered[start:start + len(lines)] == lines


def test_events_until_needs_follow(maas_sim: Any, config_for: Any) -> None:
    result = run_cli("events", "smithi001", "--until", "deployed", config=config_for(maas_sim))
    assert result.code == ExitCode.USAGE
    assert "--follow" in result.err


def test_machines_on_a_terminal_is_coloured(maas_sim: Any, config_for: Any) -> None:
    maas_sim.sim.update_machine("smithi002", status="failed_deployment", owner="teuthology")
    config = str(config_for(maas_sim))
    code, screen, _ = run_on_pty(["--config", config, "machines"])
    assert code == 0
    assert "\x1b[32mReady" in screen  # green
    assert "\x1b[31mFailed deployment" in screen  # red
    assert "\x1b[32m5 Ready\x1b[0m" in screen  # the summary too
    code, screen, _ = run_on_pty(["--config", config, "machines"], env={"NO_COLOR": "1"})
    assert code == 0
    assert "\x1b[" not in screen
    assert "5 Ready, 1 Failed deployment" in screen


def test_machines_with_paddles_locks(maas_sim: Any, config_for: Any) -> None:
    from teuthology_maas.testing.lockserver import LockServer

    server = LockServer(
        [{"name": f"smithi00{i}.front.example.com", "machine_type": "smithi"} for i in range(1, 6)]
    )
    server.add_node("smithi002.front.example.com", "smithi", locked=True,
                    locked_by="scheduled_bob@teuthology")
    handle = server.serve()
    try:
        config = config_for(maas_sim)
        result = run_cli("machines", "--lock-server", handle.url, config=config)
        as_json = run_cli("machines", "--json", "--lock-server", handle.url, config=config)
    finally:
        handle.stop()
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split()[:7] == ["HOSTNAME", "TYPE", "STATUS", "SINCE", "OWNER", "LOCKED",
                                    "PADDLES"]
    cells = {line.split()[0]: line.split()[6] for line in lines[1:7]}
    assert cells == {"smithi001": "-", "smithi002": "scheduled_bob@teuthology",
                     "smithi003": "-", "smithi004": "-", "smithi005": "-", "smithi006": "?"}
    paddles = {m["hostname"]: m["paddles"] for m in as_json.json()["machines"]}
    assert paddles["smithi002"] == {"locked": True, "locked_by": "scheduled_bob@teuthology",
                                    "description": None}
    assert paddles["smithi006"] is None


def test_events_until_a_status_never_reached_exits_1(lab_factory: Any, lab_config: Any) -> None:
    lab = lab_factory([{"hostname": "smithi001"}], ssh=False, timings={"deploying": 1e6})
    lab.client.deploy(lab.state("smithi001")["system_id"], distro_series="ubuntu/jammy")
    result = run_cli("events", "smithi001", "--follow", "--until", "deployed", "--timeout",
                     "0.5", "--interval", "0.05", config=lab_config(lab))
    assert result.code == ExitCode.FAILURE
    assert "smithi001 did not reach Deployed within 0.5 s (MAAS shows Deploying)" in result.err
    # a timeout without --until is just how long to follow: not a failure
    plain = run_cli("events", "smithi001", "--follow", "--timeout", "0.3", "--interval", "0.05",
                    config=lab_config(lab))
    assert plain.code == ExitCode.OK
