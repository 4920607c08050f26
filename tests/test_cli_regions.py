"""`doctor`, `machines` and `reconcile` with several MAAS endpoints, over real HTTP.

Two installations (`maas: regions:`, two simulators): every command covers both; one whose
key is refused fails only its own machine types, named in the report, and the command exits
5 (3 for doctor). HA (`api_url` as a list, one simulator on two ports): doctor checks every
region URL, and one that is down is a WARN while another answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._cli_support import run_cli
from teuthology_maas.cli._common import ExitCode
from teuthology_maas.testing.lockserver import LockServer

DOMAIN = "front.example.com"
NODES = ["smithi001", "smithi002", "mira001", "mira002", "qa-box"]


def write(tmp_path: Path, section: dict[str, Any], **top: Any) -> Path:
    path = tmp_path / "teuthology.yaml"
    document = {"lab_domain": DOMAIN, **top, "maas": section}
    path.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    return path


@pytest.fixture
def lab_paddles():
    kinds = {"smithi001": "smithi", "smithi002": "smithi"}
    server = LockServer(
        [{"name": f"{n}.{DOMAIN}", "machine_type": kinds.get(n, "mira")} for n in NODES]
    )
    handle = server.serve()
    yield handle.url
    handle.stop()


def test_machines_lists_every_installation_with_its_region(two_installations, tmp_path):
    config = write(tmp_path, two_installations.section())
    result = run_cli("machines", "--json", config=config)
    assert result.code == ExitCode.OK, result.err
    rows = {row["hostname"]: row["region"] for row in result.json()["machines"]}
    assert rows == {"smithi001": "sepia", "smithi002": "sepia", "mira001": "octo",
                    "mira002": "octo", "qa-box": "octo"}  # fmt: skip
    assert result.json()["region_errors"] == []
    text = run_cli("machines", config=config)
    assert "REGION" in text.out.splitlines()[0]
    only = run_cli("machines", "--json", "-m", "mira", config=config)
    assert {row["region"] for row in only.json()["machines"]} == {"octo"}


def test_machines_with_one_installation_refusing_its_key(two_installations, tmp_path):
    two_installations.keys["octo"] = two_installations.sepia.handle.api_key
    config = write(tmp_path, two_installations.section())
    result = run_cli("machines", "--json", config=config)
    assert result.code == ExitCode.UNREACHABLE
    data = result.json()
    assert {row["hostname"] for row in data["machines"]} == {"smithi001", "smithi002"}
    [error] = data["region_errors"]
    assert (error["region"], error["machine_types"], error["error"]) == (
        "octo", ["mira"], "MaasAuthError"
    )
    assert "region 'octo'" in result.err and "not listed" in result.err
    secret = two_installations.sepia.handle.api_key.split(":")[2]
    assert secret not in result.out + result.err


def test_doctor_checks_each_installation_on_its_own(two_installations, tmp_path):
    config = write(tmp_path, two_installations.section())
    result = run_cli("doctor", "--json", config=config)
    checks = {c["check"]: c["status"] for c in result.json()["checks"]}
    assert result.code == ExitCode.OK, checks
    for region, kind in (("sepia", "smithi"), ("octo", "mira")):
        assert checks[f"api [{region}]"] == "OK"
        assert checks[f"api key [{region}]"] == "OK"
        assert checks[f"machines {kind} [{region}]"] == "OK"
    assert "regions sepia (smithi); octo (mira)" in result.json()["checks"][0]["detail"]

    two_installations.keys["octo"] = two_installations.sepia.handle.api_key
    config = write(tmp_path, two_installations.section())
    result = run_cli("doctor", "--json", config=config)
    checks = {c["check"]: c["status"] for c in result.json()["checks"]}
    assert result.code == ExitCode.DOCTOR_FAIL
    assert checks["api key [octo]"] == "FAIL"
    assert checks["machines [octo]"] == "SKIP", checks
    assert checks["api key [sepia]"] == "OK" and checks["machines smithi [sepia]"] == "OK"


def test_reconcile_covers_every_installation(two_installations, tmp_path, lab_paddles):
    from teuthology_maas.node.provisioner import MaasProvisioner

    # a leak in each installation: deployed to our user, unlocked in paddles
    cfg = two_installations.config()
    for node in ("smithi001", "mira001"):
        MaasProvisioner(node, config=cfg).create()
    config = write(tmp_path, two_installations.section(), lock_server=lab_paddles)
    result = run_cli("reconcile", "--json", config=config)
    assert result.code == ExitCode.FINDINGS, result.err
    data = result.json()
    assert sorted((f["hostname"], f["kind"]) for f in data["findings"]) == [
        ("mira001", "leak"), ("smithi001", "leak")
    ]
    assert [r["region"] for r in data["regions"]] == ["sepia", "octo"]

    two_installations.keys["octo"] = two_installations.sepia.handle.api_key
    config = write(tmp_path, two_installations.section(), lock_server=lab_paddles)
    result = run_cli("reconcile", "--json", config=config)
    assert result.code == ExitCode.UNREACHABLE
    data = result.json()
    assert [(f["hostname"], f["kind"]) for f in data["findings"]] == [("smithi001", "leak")]
    assert [e["region"] for e in data["region_errors"]] == ["octo"]
    assert "region 'octo'" in result.err and "not checked" in result.err


def test_doctor_checks_every_region_url_of_an_ha_maas(ha_regions, tmp_path):
    regions = ha_regions(ssh=False)
    section = {
        "api_url": [regions.url_a, regions.url_b],
        "api_key": regions.lab.handle.api_key,
        "machine_types": ["smithi"],
        "ssh_keys": list(regions.lab.config.ssh_keys),
    }
    config = write(tmp_path, section)
    result = run_cli("doctor", "--json", config=config)
    checks = {c["check"]: c for c in result.json()["checks"]}
    api = regions.url_a + "api/2.0/"
    assert checks[f"api {api}"]["status"] == "OK", checks
    assert result.code == ExitCode.OK
    regions.region_a.refuse_connections()
    result = run_cli("doctor", "--json", config=config)
    checks = {c["check"]: c for c in result.json()["checks"]}
    assert checks[f"api {api}"]["status"] == "WARN"
    assert "fail over" in checks[f"api {api}"]["detail"]
    assert checks[f"api {regions.url_b}api/2.0/"]["status"] == "OK"
    assert checks["api key"]["status"] == "OK"  # checked through the region that answers
    assert result.code == ExitCode.OK
    regions.region_b.refuse_connections()
    result = run_cli("doctor", "--json", config=config)
    assert result.code == ExitCode.DOCTOR_FAIL


def test_deploy_and_release_act_through_the_node_s_own_installation(two_installations, tmp_path):
    two = two_installations
    config = write(tmp_path, two.section())
    result = run_cli("deploy", "qa-box", config=config)  # its name does not say its type
    assert result.code == ExitCode.OK, result.out + result.err
    assert two.octo.state("qa-box")["status_name"] == "Deployed"
    assert not two.sepia.sim.requests(op="deploy")
    result = run_cli("deploy", "-m", "smithi", config=config)
    assert result.code == ExitCode.OK, result.out + result.err
    assert len(two.sepia.sim.requests(op="deploy")) == 1
    result = run_cli("release", "qa-box", config=config)
    assert result.code == ExitCode.OK, result.out + result.err
    assert two.octo.state("qa-box")["status_name"] == "Ready"


@pytest.fixture
def empty_paddles():
    server = LockServer()
    handle = server.serve()
    yield server, handle.url
    handle.stop()


def test_inventory_registers_every_installation_s_nodes(two_installations, tmp_path,
                                                         empty_paddles):
    server, url = empty_paddles
    config = write(tmp_path, two_installations.section(), lock_server=url)
    result = run_cli("inventory", "--apply", "--json", config=config)
    assert result.code == ExitCode.OK, result.out + result.err
    data = result.json()
    assert data["region_errors"] == []
    assert {(n["hostname"], n["region"], n["result"]) for n in data["nodes"]} == {
        ("smithi001", "sepia", "created"), ("smithi002", "sepia", "created"),
        ("mira001", "octo", "created"), ("mira002", "octo", "created"),
        ("qa-box", "octo", "created"),  # tagged mira in octo: octo's rule
    }
    assert {n["name"]: n["machine_type"] for n in server.nodes()} == {
        f"{n}.{DOMAIN}": ("smithi" if n.startswith("smithi") else "mira") for n in NODES
    }
    # a second run has nothing to do anywhere; the text names each node's region
    again = run_cli("inventory", config=config)
    assert again.code == ExitCode.OK, again.out + again.err
    assert f"UNCHANGED  qa-box.{DOMAIN}  (mira, region octo)" in again.out.splitlines()


def test_inventory_with_one_installation_refusing_its_key(two_installations, tmp_path,
                                                          empty_paddles):
    server, url = empty_paddles
    server.add_node(f"mira001.{DOMAIN}", "mira")  # octo's, not to be called an orphan
    two_installations.keys["octo"] = two_installations.sepia.handle.api_key
    config = write(tmp_path, two_installations.section(), lock_server=url)
    result = run_cli("inventory", "--apply", "--json", config=config)
    assert result.code == ExitCode.UNREACHABLE, result.out + result.err
    data = result.json()
    assert sorted((n["hostname"], n["action"], n["result"]) for n in data["nodes"]) == [
        ("smithi001", "create", "created"), ("smithi002", "create", "created")
    ]
    [error] = data["region_errors"]
    assert (error["region"], error["machine_types"], error["error"]) == (
        "octo", ["mira"], "MaasAuthError"
    )
    assert "region 'octo'" in result.err and "not planned" in result.err
    assert sorted(n["name"] for n in server.nodes()) == [
        f"mira001.{DOMAIN}", f"smithi001.{DOMAIN}", f"smithi002.{DOMAIN}"
    ]
    secret = two_installations.sepia.handle.api_key.split(":")[2]
    assert secret not in result.out + result.err


QUARANTINED = "teuthology-maas quarantine: 3 failed deployments in a row (quarantine_after 3)"


def test_quarantine_lists_every_installation_and_releases_through_the_node_s(
    two_installations, tmp_path, lab_paddles
):
    two = two_installations
    for lab, node in ((two.sepia, "smithi002"), (two.octo, "qa-box")):
        lab.sim.update_machine(node, status="broken", error_description=QUARANTINED)
    config = write(tmp_path, two.section(), lock_server=lab_paddles)
    listed = run_cli("quarantine", "list", "--json", config=config)
    assert listed.code == ExitCode.OK, listed.err
    rows = {r["hostname"]: r for r in listed.json()["quarantined"]}
    assert {h: r["region"] for h, r in rows.items()} == {"smithi002": "sepia", "qa-box": "octo"}
    assert rows["qa-box"]["machine_type"] == "mira"
    assert rows["qa-box"]["paddles"]["up"] is True
    assert "region octo" in run_cli("quarantine", "list", config=config).out

    # marking fixed is an admin's action: each installation's own admin key
    two.keys.update(sepia=two.sepia.handle.key_for("admin"),
                    octo=two.octo.handle.key_for("admin"))
    admin = write(tmp_path, two.section(), lock_server=lab_paddles)
    released = run_cli("quarantine", "release", "qa-box", config=admin)
    assert released.code == ExitCode.OK, released.out + released.err
    assert two.octo.state("qa-box")["status_name"] == "Ready"
    assert two.sepia.state("smithi002")["status_name"] == "Broken"
    assert not two.sepia.sim.requests(op="mark_fixed")
    left = run_cli("quarantine", "list", "--json", config=config).json()["quarantined"]
    assert [r["hostname"] for r in left] == ["smithi002"]


def test_quarantine_list_with_one_installation_refusing_its_key(two_installations, tmp_path):
    two = two_installations
    two.sepia.sim.update_machine("smithi002", status="broken", error_description=QUARANTINED)
    two.keys["octo"] = two.sepia.handle.api_key
    config = write(tmp_path, two.section())
    listed = run_cli("quarantine", "list", "--json", config=config)
    assert listed.code == ExitCode.UNREACHABLE
    data = listed.json()
    assert [r["hostname"] for r in data["quarantined"]] == ["smithi002"]
    assert [e["region"] for e in data["region_errors"]] == ["octo"]
    assert "region 'octo'" in listed.err
