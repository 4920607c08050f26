"""`teuthology-maas doctor` checks the deploy settings against the simulated MAAS: the kernel is
offered for the type's images, MAAS's version deploys to memory, the key may set storage and
bonds, the named disks and interfaces exist on every machine of the type; leftover bonds warn."""

from __future__ import annotations

from typing import Any

from tests._cli_support import run_cli
from teuthology_maas.cli._common import ExitCode

MACHINES = [
    {"hostname": f"smithi00{i}", "tags": ["smithi"], "interfaces": ["eno1", "eno2"],
     "disks": [{"name": "sda", "size_gb": 480}, {"name": "sdb", "size_gb": 4000}]}
    for i in range(1, 4)
]  # fmt: skip
BOND = {"name": "bond0", "interfaces": ["eno1", "eno2"], "mode": "802.3ad"}
SMITHI = {"hwe_kernel": "hwe-22.04", "storage": {"layout": "flat", "root_device": "sda"},
          "bonds": [BOND]}  # fmt: skip


def doctor(config: Any) -> tuple[int, dict[str, dict[str, str]]]:
    result = run_cli("doctor", "--json", config=config)
    return result.code, {c["check"]: c for c in result.json()["checks"]}


def lab(maas_sim_factory: Any, machines: list[dict[str, Any]] = MACHINES, **inventory: Any) -> Any:
    return maas_sim_factory({"machines": machines, **inventory})


def test_settings_that_fit_every_machine_are_ok(maas_sim_factory: Any, config_for: Any) -> None:
    handle = lab(maas_sim_factory)
    deploy = {"machine_types": {"smithi": SMITHI}, "os": {"centos": {"ephemeral": True}}}
    code, checks = doctor(config_for(handle, api_key=handle.key_for("admin"), deploy=deploy))
    assert code == ExitCode.OK, checks
    check = checks["deploy smithi ubuntu 22.04"]
    assert check["status"] == "OK"
    assert check["detail"] == (
        "kernel hwe-22.04, storage flat (root_device=sda), bond0 (802.3ad of eno1, eno2): "
        "fits all 3 machine(s)"
    )
    assert "deploy bonds" not in checks


def test_each_setting_maas_would_refuse_is_a_fail(maas_sim_factory: Any, config_for: Any) -> None:
    machines = [*MACHINES[:2], {**MACHINES[2], "interfaces": ["eno1"]}]
    handle = lab(maas_sim_factory, machines, maas_version="3.4.2")
    deploy = {"machine_types": {"smithi": {**SMITHI, "hwe_kernel": "hwe-22.04-lowlatency"}},
              "os": {"ubuntu 22.04": {"ephemeral": False}, "centos": {"ephemeral": True}}}
    image_map = {"centos 9": "centos/centos9-stream"}
    code, checks = doctor(config_for(handle, deploy=deploy, image_map=image_map))
    assert code == ExitCode.DOCTOR_FAIL
    ubuntu = checks["deploy smithi ubuntu 22.04"]
    assert ubuntu["status"] == "FAIL"
    problems = ubuntu["detail"].split("; deploy.")
    assert len(problems) == 3
    assert "setting storage and bonds needs a MAAS administrator's API key" in problems[0]
    assert "smithi003 (" in problems[1] and "has no interface 'eno2'" in problems[1]
    assert "hwe-22.04-lowlatency is not available for ubuntu/jammy on amd64/generic" in (
        problems[2]
    )
    assert "Kernels MAAS offers for ubuntu/jammy on amd64: ga-22.04, hwe-22.04" in problems[2]
    assert "maas.deploy" in ubuntu["hint"]
    centos = checks["deploy smithi centos 9"]
    assert "MAAS 3.4.2 cannot deploy to memory" in centos["detail"]


def test_a_missing_interface_names_the_machine(maas_sim_factory: Any, config_for: Any) -> None:
    machines = [*MACHINES[:2], {**MACHINES[2], "interfaces": ["eno1"]}]
    handle = lab(maas_sim_factory, machines)
    deploy = {"machine_types": {"smithi": {"bonds": [BOND]}}}
    code, checks = doctor(config_for(handle, api_key=handle.key_for("admin"), deploy=deploy))
    assert code == ExitCode.DOCTOR_FAIL
    detail = checks["deploy smithi ubuntu 22.04"]["detail"]
    assert detail.startswith("deploy.machine_types.smithi.bonds: bond0: smithi003 (")
    assert "has no interface 'eno2'; its interfaces: eno1" in detail
    assert "smithi001" not in detail


def test_a_bond_left_on_a_free_machine_is_a_warning(maas_sim_factory: Any, config_for: Any) -> None:
    handle = lab(maas_sim_factory)
    admin = handle.http("admin")
    system_id = handle.sim.system_id("smithi002")
    ids = [n["id"] for n in admin.get(f"nodes/{system_id}/interfaces/").json()]
    made = admin.post(f"nodes/{system_id}/interfaces/", "create_bond",
                      [("name", "bond0"), ("parents", str(ids[0])), ("parents", str(ids[1])),
                       ("tags", "teuthology-maas")])  # fmt: skip
    assert made.status_code == 200, made.text
    code, checks = doctor(config_for(handle))
    assert code == ExitCode.OK
    warning = checks["deploy bonds"]
    assert warning["status"] == "WARN"
    assert "bond0 on smithi002 (" in warning["detail"]
