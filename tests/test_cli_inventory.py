"""`teuthology-maas inventory` over real HTTP: the simulator and the paddles double, which
refuses what real paddles refuses on POST /nodes/ and PUT /nodes/<name>/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests._cli_support import run_cli
from teuthology_maas.cli._common import ExitCode
from teuthology_maas.endpoint import forget_endpoints
from teuthology_maas.testing.lockserver import LockServer

DOMAIN = "front.example.com"


@pytest.fixture(autouse=True)
def _forget_pollers() -> Iterator[None]:
    yield
    forget_endpoints()


@pytest.fixture
def empty_paddles() -> Iterator[tuple[LockServer, str]]:
    server = LockServer()
    handle = server.serve()
    yield server, handle.url
    handle.stop()


def test_dry_run_plans_creates_and_changes_nothing(
    maas_sim: Any, empty_paddles: Any, config_for: Any
) -> None:
    server, url = empty_paddles
    result = run_cli("inventory", config=config_for(maas_sim, lock_server=url))
    assert result.code == ExitCode.FINDINGS, result.out + result.err
    lines = result.out.splitlines()
    assert lines[0] == f"CREATE     smithi001.{DOMAIN}  (smithi)"
    assert lines[1].split(", ")[:3] == ["           machine_type=smithi", "is_vm=false", "up=true"]
    assert "arch=x86_64" in lines[1] and "mac_address=52:54:00:00:00:01" in lines[1]
    assert lines[-1] == "6 node(s): 6 create (dry run: nothing changed; --apply writes them)"
    assert server.nodes() == []
    assert {r.method for r in server.request_log} == {"GET"}


def test_apply_creates_nodes_teuthology_can_lock(
    maas_sim: Any, empty_paddles: Any, config_for: Any
) -> None:
    server, url = empty_paddles
    config = config_for(maas_sim, lock_server=url)
    result = run_cli("inventory", "--apply", "--json", config=config)
    assert result.code == ExitCode.OK, result.out + result.err
    data = result.json()
    assert data["counts"]["create"] == 6
    assert {n["result"] for n in data["nodes"]} == {"created"}
    node = server.node(f"smithi003.{DOMAIN}")
    assert (node["machine_type"], node["arch"], node["up"], node["is_vm"], node["locked"]) == (
        "smithi", "x86_64", True, False, False)
    assert node["mac_address"] == "52:54:00:00:00:03" and node["description"] is None
    assert server.ignored_keys == []  # every field we send is a paddles column
    # teuthology's lock_many takes them now
    locked = requests.post(f"{url}/nodes/lock_many/", json={
        "count": 2, "locked_by": "alice@x", "machine_type": "smithi",
        "description": "/archive/1", "arch": "x86_64"}, timeout=10)
    assert locked.status_code == 200 and len(locked.json()) == 2
    # and a second run has nothing to do
    again = run_cli("inventory", config=config)
    assert again.code == ExitCode.OK
    assert again.out.splitlines()[-1] == "6 node(s): 6 unchanged"


def test_updates_fields_and_spares_locked_nodes_job_fields(
    maas_sim: Any, empty_paddles: Any, config_for: Any
) -> None:
    server, url = empty_paddles
    sim = maas_sim.sim
    sim.update_machine("smithi001", status="broken")
    sim.update_machine("smithi002", status="deployed", owner="teuthology", osystem="ubuntu",
                       distro_series="jammy")
    for i in range(1, 7):
        locked = i in (2, 3)
        server.add_node(f"smithi00{i}.{DOMAIN}", "smithi" if i != 3 else "old",
                        arch="x86_64", mac_address=f"52:54:00:00:00:0{i}",
                        locked=locked, locked_by="bob@ctl" if locked else None,
                        description="/archive/run/9" if locked else None,
                        os_type="centos" if i == 2 else None, os_version="9.stream" if i == 2
                        else None)
    server.add_node(f"gone001.{DOMAIN}", "smithi")
    config = config_for(maas_sim, lock_server=url)
    result = run_cli("inventory", "--json", config=config)
    assert result.code == ExitCode.FINDINGS
    plans = {n["hostname"]: n for n in result.json()["nodes"]}
    assert plans["smithi001"]["changes"] == {"up": {"old": True, "new": False}}
    # locked: the OS teuthology recorded for the job stays; machine_type too
    assert plans["smithi002"]["action"] == "unchanged"
    assert set(plans["smithi002"]["held"]) == {"os_type", "os_version"}
    assert plans["smithi002"]["reason"] == "locked by bob@ctl: os_type, os_version left to its job"
    assert plans["smithi003"]["held"] == {"machine_type": {"old": "old", "new": "smithi"}}
    assert plans["smithi004"]["action"] == "unchanged"
    assert plans["gone001"]["action"] == "orphan"

    applied = run_cli("inventory", "--apply", config=config)
    assert applied.code == ExitCode.OK, applied.out
    assert server.node(f"smithi001.{DOMAIN}")["up"] is False
    two = server.node(f"smithi002.{DOMAIN}")
    assert (two["os_type"], two["locked"], two["locked_by"], two["description"]) == (
        "centos", True, "bob@ctl", "/archive/run/9")
    assert server.node(f"smithi003.{DOMAIN}")["machine_type"] == "old"
    assert f"gone001.{DOMAIN}" in {n["name"] for n in server.nodes()}  # never deleted
    assert not server.requests_to("PUT", r"/nodes/.*/lock/?")
    puts = server.requests_to("PUT", r"/nodes/[^/]+/?")
    assert all(set(r.body) <= {"up", "arch", "mac_address", "is_vm", "machine_type",
                               "os_type", "os_version"} for r in puts)


def test_unlocked_deployed_node_gets_maas_os(
    maas_sim: Any, empty_paddles: Any, config_for: Any
) -> None:
    server, url = empty_paddles
    maas_sim.sim.update_machine("smithi004", status="deployed", owner="teuthology",
                                osystem="ubuntu", distro_series="noble")
    server.add_node(f"smithi004.{DOMAIN}", "smithi", mac_address="52:54:00:00:00:04")
    result = run_cli("inventory", "--apply", "-m", "smithi",
                     config=config_for(maas_sim, lock_server=url))
    assert result.code == ExitCode.OK
    node = server.node(f"smithi004.{DOMAIN}")
    assert (node["os_type"], node["os_version"]) == ("ubuntu", "24.04")


def test_type_match_rules_pick_machines(
    maas_sim_factory: Any, empty_paddles: Any, config_for: Any
) -> None:
    handle = maas_sim_factory({"machines": [
        {"hostname": "node-a1", "tags": ["fast"], "architecture": "arm64/generic"},
        {"hostname": "gibba001", "architecture": "amd64/generic", "power_type": "virsh"},
        {"hostname": "other9", "architecture": "amd64/generic"},
    ]})
    _, url = empty_paddles
    config = config_for(handle, lock_server=url, machine_types=["mira", "gibba"],
                        type_match={"mira": {"tag": "fast"},
                                    "gibba": {"hostname": "^gibba[0-9]{3}$"}})
    result = run_cli("inventory", "--json", config=config)
    plans = {n["hostname"]: n for n in result.json()["nodes"]}
    assert set(plans) == {"node-a1", "gibba001"}
    assert plans["node-a1"]["fields"]["machine_type"] == "mira"
    assert plans["node-a1"]["fields"]["arch"] == "aarch64"
    assert plans["gibba001"]["fields"]["is_vm"] is True


@pytest.mark.parametrize(("rules", "words"), [
    ({"smithy": {"tag": "x"}}, "did you mean 'smithi'"),
    ({"smithi": {"hostname": "(["}}, "not a valid regular expression"),
    ({"smithi": {"label": "x"}}, "unknown key 'label'"),
    ({"smithi": {}}, "must be a mapping with one or more of tag, pool, hostname"),
])
def test_bad_type_match_is_a_usage_error(
    maas_sim: Any, empty_paddles: Any, config_for: Any, rules: Any, words: str
) -> None:
    _, url = empty_paddles
    result = run_cli("inventory", config=config_for(maas_sim, lock_server=url, type_match=rules))
    assert result.code == ExitCode.USAGE
    assert words in result.err


def test_a_value_paddles_cannot_hold_is_skipped_not_sent(
    maas_sim_factory: Any, empty_paddles: Any, config_for: Any
) -> None:
    handle = maas_sim_factory({"machines": [
        {"hostname": "smithi001", "tags": ["smithi"], "architecture": "amd64/generic"},
        {"hostname": "smithi002", "tags": ["smithi"],
         "architecture": "averyveryverylongarch/generic"},
    ]})
    server, url = empty_paddles
    result = run_cli("inventory", "--apply", "--json",
                     config=config_for(handle, lock_server=url))
    plans = {n["hostname"]: n for n in result.json()["nodes"]}
    assert plans["smithi002"]["action"] == "skip"
    assert "longer than paddles' 16 characters" in plans["smithi002"]["reason"]
    assert [n["name"] for n in server.nodes()] == [f"smithi001.{DOMAIN}"]


def test_paddles_double_refuses_what_real_paddles_refuses(empty_paddles: Any) -> None:
    server, url = empty_paddles
    ok = requests.post(f"{url}/nodes/", json={"name": "n1.x", "machine_type": "smithi"},
                       timeout=10)
    assert ok.status_code == 200
    for body, words in [
        ({"name": "n2.x", "mac_address": "52:54:00:00:00:01,52:54:00:00:00:02"},
         "character varying(17)"),
        ({"name": "n2.x", "up": "yes"}, "Not a boolean value"),
        ({"name": "n2.x", "is_vm": None}, "not-null"),
        ({"name": "n2.x", "arch": ["x86_64"]}, "can't adapt"),
        ({"name": "n2.x", "vm_host": "nowhere.x"}, "No row was found"),
    ]:
        refused = requests.post(f"{url}/nodes/", json=body, timeout=10)
        assert refused.status_code == 500 and words in refused.json()["message"], body
    assert [n["name"] for n in server.nodes()] == ["n1.x"]  # nothing stored
    put = requests.put(f"{url}/nodes/n1.x/", json={"machine_type": "x" * 33}, timeout=10)
    assert put.status_code == 500
    assert server.node("n1.x")["machine_type"] == "smithi"
    requests.put(f"{url}/nodes/n1.x/", json={"macs": ["a"]}, timeout=10)
    assert server.ignored_keys == [("PUT", "n1.x", "macs")]


def test_paddles_unreachable_exits_5(maas_sim: Any, config_for: Any) -> None:
    result = run_cli("inventory", "--lock-server", "http://127.0.0.1:9",
                     config=config_for(maas_sim))
    assert result.code == ExitCode.UNREACHABLE


def test_without_lab_domain_a_node_paddles_knows_by_fqdn_is_not_registered_twice(
    maas_sim: Any, empty_paddles: Any, config_for: Any
) -> None:
    server, url = empty_paddles
    server.add_node(f"smithi001.{DOMAIN}", "smithi", mac_address="52:54:00:00:00:01".upper())
    config = config_for(maas_sim, lock_server=url)
    config.write_text(config.read_text().replace(f"lab_domain: {DOMAIN}\n", ""))
    result = run_cli("inventory", "--json", config=config)
    plans = {n["hostname"]: n for n in result.json()["nodes"]}
    assert plans["smithi001"]["name"] == f"smithi001.{DOMAIN}"
    assert plans["smithi001"]["action"] == "unchanged"  # MAC case does not matter
    assert plans["smithi002"]["name"] == "smithi002"  # a new node: the name as configured


def test_machines_and_reconcile_use_type_match_too(
    maas_sim_factory: Any, empty_paddles: Any, config_for: Any
) -> None:
    handle = maas_sim_factory({"machines": [
        {"hostname": "node-a1", "tags": ["fast"], "architecture": "amd64/generic"},
        {"hostname": "mira001", "architecture": "amd64/generic"},
    ]})
    _, url = empty_paddles
    config = config_for(handle, lock_server=url, machine_types=["mira"],
                        type_match={"mira": {"tag": "fast"}})
    listed = run_cli("machines", "--json", config=config).json()["machines"]
    # the rule replaces the default for mira: mira001 (hostname only) is not a mira now
    assert [(m["hostname"], m["type"]) for m in listed] == [("node-a1", "mira")]


def test_hostile_names_are_printed_not_interpreted(
    maas_sim: Any, empty_paddles: Any, config_for: Any
) -> None:
    from tests._cli_support import CONTROL_CHARS

    server, url = empty_paddles
    server.add_node("evil\x1b[2J\x1b]0;pwned\x07.x", "smithi")
    maas_sim.sim.update_machine("smithi002", status="deployed", owner="teuthology",
                                osystem="ubuntu\x1b[31m", distro_series="jammy")
    result = run_cli("inventory", config=config_for(maas_sim, lock_server=url))
    assert "ORPHAN" in result.out
    assert not CONTROL_CHARS.search(result.out)
    plans = {n["hostname"]: n for n in run_cli(
        "inventory", "--json", config=config_for(maas_sim, lock_server=url)).json()["nodes"]}
    assert plans["smithi002"]["action"] == "skip"  # a hostile OS name never reaches paddles
