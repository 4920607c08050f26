"""`machines`: columns, filters (--status, --owner, --free), --summary, time in status; and
`deploy -m TYPE`, which deploys any free machine of a type. Typos in any of them are usage
errors that name the nearest known name."""

from __future__ import annotations

from typing import Any

from tests._cli_support import run_cli
from teuthology_maas.cli._common import ExitCode
from teuthology_maas.cli._machine_rows import choose_columns, format_age
from teuthology_maas.simulator import ManualClock
from teuthology_maas.testing.lockserver import LockServer

DOMAIN = "front.example.com"


def header(result: Any) -> list[str]:
    return result.out.splitlines()[0].split()


def rows(result: Any) -> dict[str, list[str]]:
    lines = result.out.splitlines()
    return {line.split()[0]: line.split() for line in lines[1:] if line and line[0] != " "
            and not line[0].isdigit()}


# ---- columns --------------------------------------------------------------------------------


def test_columns_choose_exactly_or_add_to_the_defaults(maas_sim: Any, config_for: Any) -> None:
    config = config_for(maas_sim)
    exact = run_cli("machines", "--columns", "hostname,arch,pool,zone,tags,ip", config=config)
    assert exact.code == 0
    assert header(exact) == ["HOSTNAME", "ARCH", "POOL", "ZONE", "TAGS", "IP"]
    ip = maas_sim.sim.machine("smithi001")["ip_addresses"][0]
    assert rows(exact)["smithi001"] == ["smithi001", "amd64/generic", "smithi", "default",
                                        "smithi", ip]
    more = run_cli("machines", "--columns", "+system_id", config=config)
    assert header(more)[-1] == "SYSTEM_ID" and header(more)[:3] == ["HOSTNAME", "TYPE", "STATUS"]


def test_an_unknown_column_is_a_usage_error_with_the_nearest_name(
    maas_sim: Any, config_for: Any
) -> None:
    result = run_cli("machines", "--columns", "hostname,adress", config=config_for(maas_sim))
    assert result.code == ExitCode.USAGE
    assert "no column 'adress'" in result.err
    paddles_only = run_cli("machines", "--columns", "description", config=config_for(maas_sim))
    assert paddles_only.code == ExitCode.USAGE and "--paddles" in paddles_only.err


def test_default_columns_with_and_without_paddles() -> None:
    assert choose_columns(None, paddles=False) == [
        "hostname", "type", "status", "since", "owner", "locked", "os", "ip", "power", "message"
    ]
    with_paddles = choose_columns(None, paddles=True)
    assert with_paddles.index("paddles") == with_paddles.index("locked") + 1
    assert with_paddles[-2:] == ["description", "message"]


def test_format_age() -> None:
    assert [format_age(s) for s in (None, 5, 125, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == [
        "-", "5s", "2m", "3h05m", "2d04h"
    ]


# ---- filters ---------------------------------------------------------------------------------


def test_status_owner_and_free_filters(maas_sim: Any, paddles: Any, config_for: Any) -> None:
    server, url = paddles
    sim = maas_sim.sim
    sim.update_machine("smithi001", status="deployed", owner="teuthology",
                       workload_annotations={"teuthology_owner": "alice@ctl"})
    sim.update_machine("smithi002", status="failed_deployment", owner="teuthology")
    server.add_node(f"smithi003.{DOMAIN}", "smithi", locked=True, locked_by="bob@ctl",
                    description="/archive/bob/run1")
    config = config_for(maas_sim, lock_server=url)
    deployed = run_cli("machines", "--status", "deployed,failed-deployment", config=config)
    assert sorted(rows(deployed)) == ["smithi001", "smithi002"]
    alice = run_cli("machines", "--owner", "alice@ctl", config=config)
    assert sorted(rows(alice)) == ["smithi001"]  # the owner stamped at deployment
    bob = run_cli("machines", "--owner", "bob@ctl", "--paddles", config=config)
    assert sorted(rows(bob)) == ["smithi003"]  # the paddles lock owner
    assert "/archive/bob/run1" in bob.out  # the job's description, with --paddles
    maas_user = run_cli("machines", "--owner", "teuthology", config=config)
    assert sorted(rows(maas_user)) == ["smithi001", "smithi002"]
    free = run_cli("machines", "--free", "--paddles", "--json", config=config).json()
    assert [m["hostname"] for m in free["machines"]] == ["smithi004", "smithi005", "smithi006"]
    assert free["machines"][0]["paddles"] == {"locked": False, "locked_by": None,
                                              "description": None}


def test_an_unknown_status_is_a_usage_error(maas_sim: Any, config_for: Any) -> None:
    result = run_cli("machines", "--status", "deployd", config=config_for(maas_sim))
    assert result.code == ExitCode.USAGE
    assert "no MAAS status 'deployd' (did you mean 'deployed'?)" in result.err


def test_an_unknown_machine_type_is_a_usage_error_not_zero_machines(
    maas_sim: Any, config_for: Any
) -> None:
    result = run_cli("machines", "-m", "smithy", config=config_for(maas_sim))
    assert result.code == ExitCode.USAGE
    assert "no machine type 'smithy'" in result.err
    assert "did you mean 'smithi'?" in result.err
    # a type that is not configured but that MAAS's machines carry is listed
    maas_sim.sim.add_machine("mira001", tags=["mira"])
    assert run_cli("machines", "-m", "mira", config=config_for(maas_sim)).code == 0


def test_an_empty_machine_types_is_said_not_listed_as_zero(
    maas_sim: Any, config_for: Any, tmp_path: Any
) -> None:
    config = config_for(maas_sim, machine_types=[])
    result = run_cli("machines", config=config)
    assert result.code == ExitCode.USAGE
    assert "machine_types is empty" in result.err and "--all" in result.err
    assert run_cli("machines", "--all", config=config).code == 0


# ---- summary and time in status ---------------------------------------------------------------


def test_summary_counts_by_type_status_and_owner(
    maas_sim: Any, paddles: Any, config_for: Any
) -> None:
    server, url = paddles
    sim = maas_sim.sim
    sim.add_machine("mira001", tags=["mira"])
    for name in ("smithi001", "smithi002"):
        sim.update_machine(name, status="deployed", owner="teuthology",
                           workload_annotations={"teuthology_owner": "alice@ctl"})
    server.add_node(f"smithi003.{DOMAIN}", "smithi", locked=True, locked_by="bob@ctl")
    config = config_for(maas_sim, lock_server=url, machine_types=["smithi", "mira"])
    result = run_cli("machines", "--summary", "--paddles", config=config)
    assert result.code == 0
    assert result.out.splitlines() == [
        "TYPE    STATUS    OWNER      COUNT",
        "mira    Ready     (free)     1",
        "smithi  Ready     (free)     3",
        "smithi  Ready     bob@ctl    1",
        "smithi  Deployed  alice@ctl  2",
        "",
        "7 machines",
    ]
    data = run_cli("machines", "--summary", "--json", config=config).json()
    assert data["total"] == 7
    assert {"type": "smithi", "status": "Deployed", "owner": "alice@ctl", "count": 2} in (
        data["groups"]
    )


def test_since_is_the_time_in_status_on_maas_clock(maas_sim_factory: Any,
                                                   config_for: Any) -> None:
    import time

    # MAAS's clock started 2h05m ago: smithi001 changed status then, smithi002 just now
    clock = ManualClock(start=time.time() - (2 * 3600 + 5 * 60))
    handle = maas_sim_factory(clock=clock)
    handle.sim.update_machine("smithi001", status="allocated", owner="teuthology")
    clock.advance(2 * 3600 + 5 * 60)
    handle.sim.update_machine("smithi002", status="allocated", owner="teuthology")
    result = run_cli("machines", config=config_for(handle))
    table = rows(result)
    since = header(result).index("SINCE")
    assert table["smithi001"][since] == "2h05m"
    assert table["smithi002"][since] in ("0s", "1s", "2s")
    assert table["smithi003"][since] == "-"  # never changed status: MAAS has no such event
    as_json = {m["hostname"]: m["seconds_in_status"]
               for m in run_cli("machines", "--json", config=config_for(handle)).json()[
                   "machines"]}
    assert 2 * 3600 + 5 * 60 <= as_json["smithi001"] <= 2 * 3600 + 5 * 60 + 5
    assert as_json["smithi003"] is None


def test_since_on_a_region_in_another_time_zone_never_overstates(
    maas_sim_factory: Any, config_for: Any
) -> None:
    import time

    # the region's clock is 5 hours ahead (its local time, unlabelled): "now" is its newest
    # event, so ages are measured between its own events
    clock = ManualClock(start=time.time() + 5 * 3600)
    handle = maas_sim_factory(clock=clock)
    handle.sim.update_machine("smithi001", status="allocated", owner="teuthology")
    clock.advance(600)
    handle.sim.update_machine("smithi002", status="allocated", owner="teuthology")
    table = rows(run_cli("machines", "--columns", "hostname,since", config=config_for(handle)))
    assert table["smithi001"] == ["smithi001", "10m"]
    assert table["smithi002"] == ["smithi002", "0s"]


# ---- deploy -m TYPE ----------------------------------------------------------------------------


def test_deploy_any_free_machine_of_a_type(lab_factory: Any, tmp_path: Any,
                                          ssh_keypair: Any) -> None:
    from tests._cli_support import write_config

    lab = lab_factory([{"hostname": f"smithi00{i}", "tags": ["smithi"]} for i in (1, 2, 3)])
    lab.sim.update_machine("smithi001", status="deployed", owner="teuthology")
    server = LockServer([{"name": f"smithi00{i}.{DOMAIN}", "machine_type": "smithi"}
                         for i in (1, 2, 3)])
    server.add_node(f"smithi002.{DOMAIN}", "smithi", locked=True, locked_by="bob@ctl")
    handle = server.serve()
    try:
        cfg = lab.config
        config = write_config(tmp_path, lab.handle, top={"lock_server": handle.url},
                              ssh_keys=list(cfg.ssh_keys), ssh_config=cfg.ssh_config,
                              ssh_private_key=cfg.ssh_private_key, ssh_timeout=20)
        result = run_cli("deploy", "-m", "smithi", config=config)
        assert result.code == 0, result.out + result.err
        # smithi001 is deployed, smithi002 is held in paddles: smithi003 is the free one
        assert result.out.splitlines()[-1].startswith("smithi003: deployed ubuntu 22.04 in ")
        assert lab.state("smithi003")["status_name"] == "Deployed"
        none_left = run_cli("deploy", "-m", "smithi", config=config)
    finally:
        handle.stop()
    assert none_left.code == ExitCode.FAILURE
    assert "no free smithi machine: 3 smithi machine(s) visible" in none_left.err
    assert "2 Deployed" in none_left.err and "1 Ready but locked in paddles" in none_left.err


def test_deploy_needs_a_name_or_a_type_and_knows_the_types(maas_sim: Any,
                                                          config_for: Any) -> None:
    config = config_for(maas_sim)
    assert run_cli("deploy", config=config).code == ExitCode.USAGE
    both = run_cli("deploy", "smithi001", "-m", "smithi", config=config)
    assert both.code == ExitCode.USAGE
    typo = run_cli("deploy", "-m", "smithy", config=config)
    assert typo.code == ExitCode.USAGE and "did you mean 'smithi'?" in typo.err
