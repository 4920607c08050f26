"""End to end with two MAAS installations (`maas: regions:`): stock teuthology 1.3.0's
`teuthology-lock` (through the activation hook, in its own processes) locks and reimages
nodes of two machine types, each by its own MAAS, and unlocking releases each there; with one
installation's key wrong, only its type fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures_e2e import LAB_DOMAIN, OWNER, TIME_FACTOR
from teuthology_maas.testing.lockserver import LockServer
from teuthology_maas.testing.teuthology_lab import Support, TeuthologyLab

pytestmark = [pytest.mark.e2e, pytest.mark.sshd, pytest.mark.slow]

HOSTS = {"smithi001": "smithi", "mira001": "mira"}


@pytest.fixture
def two_maas_lab(
    tmp_path: Path,
    e2e_support: Support,
    maas_sim_factory: Callable[..., Any],
    sshd_fleet: Callable[..., Any],
) -> Iterator[Callable[..., tuple[TeuthologyLab, dict[str, Any], LockServer]]]:
    from teuthology_maas.simulator import ScaledClock

    handles: list[Any] = []

    def build(**octo_overrides: Any) -> tuple[TeuthologyLab, dict[str, Any], LockServer]:
        ssh_root = tmp_path / "ssh-root"
        fleet = sshd_fleet(list(HOSTS), ssh_root)
        sims = {
            kind: maas_sim_factory(
                inventory_dict={"machines": [{"hostname": host, "tags": [kind],
                                              "ssh_port": fleet.port_of(host)}]},
                clock=ScaledClock(TIME_FACTOR), ssh_root=ssh_root,
            )
            for host, kind in HOSTS.items()
        }  # fmt: skip
        paddles = LockServer(
            {"name": f"{host}.{LAB_DOMAIN}", "machine_type": kind} for host, kind in HOSTS.items()
        )
        handle = paddles.serve()
        handles.append(handle)
        maas = {
            "poll_interval": 0.2,
            "poll_min_interval": 0.05,
            "ssh_timeout": 30,
            "ssh_keys": [fleet.public_key],
            "regions": {
                "sepia": {"api_url": sims["smithi"].url, "api_key": sims["smithi"].api_key,
                          "machine_types": ["smithi"]},
                "octo": {"api_url": sims["mira"].url, "api_key": sims["mira"].api_key,
                         "machine_types": ["mira"], "erase": "none", **octo_overrides},
            },
        }  # fmt: skip
        lab = TeuthologyLab.create(
            tmp_path / "lab", e2e_support, mode="activation", lab_domain=LAB_DOMAIN,
            lock_server=handle.url, maas=maas, ssh_key=fleet.private_key_path,
            ssh_config=fleet.ssh_config_path,
        )  # fmt: skip
        return lab, sims, paddles

    yield build
    for handle in handles:
        handle.stop()


def lock_one(lab: TeuthologyLab, kind: str) -> Any:
    return lab.run("teuthology-lock", "--lock-many", "1", "-m", kind, "--os-type", "ubuntu",
                   "--os-version", "22.04", "--owner", OWNER)  # fmt: skip


def test_teuthology_locks_each_type_through_its_own_maas(two_maas_lab):
    lab, sims, _ = two_maas_lab()
    for host, kind in HOSTS.items():
        done = lock_one(lab, kind)
        assert done.returncode == 0, done.stderr[-4000:]
        assert list(yaml.safe_load(done.stdout)["targets"]) == [f"{host}.{LAB_DOMAIN}"]
        machine = sims[kind].sim.machine(host)
        assert (machine["status_name"], machine["owner"]) == ("Deployed", "teuthology")
    # each MAAS was asked only about its own node
    for kind, sim in ((k, s.sim) for k, s in sims.items()):
        asked = {h for r in sim.requests() for h in r.param_list("hostname")}
        assert asked <= {h for h, k in HOSTS.items() if k == kind}, (kind, asked)
    for host in HOSTS:
        done = lab.run("teuthology-lock", "--unlock", f"{host}.{LAB_DOMAIN}", "--owner", OWNER)
        assert done.returncode == 0, done
    for host, kind in HOSTS.items():
        assert sims[kind].sim.machine(host)["owner"] is None
    # octo's own erase setting (none) reached its release; sepia's default (quick) reached its
    releases = {kind: [r for r in sims[kind].sim.requests(op="release") if r.system_id]
                for kind in sims}  # fmt: skip
    assert releases["mira"][-1].param("quick_erase") in (None, "false")
    assert releases["smithi"][-1].param("quick_erase") == "true"


def test_a_wrong_key_for_one_maas_fails_only_its_type(two_maas_lab):
    lab, sims, _ = two_maas_lab()
    config = lab.config()
    config["maas"]["regions"]["octo"]["api_key"] = sims["smithi"].api_key  # sepia's key
    lab.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = lock_one(lab, "smithi")
    assert done.returncode == 0, done
    done = lock_one(lab, "mira")
    assert done.returncode != 0, done
    assert "401" in done.output or "API key" in done.output, done
    assert "region 'octo'" in done.output, done
    assert sims["mira"].sim.machine("mira001")["status_name"] == "Ready"
    assert sims["smithi"].sim.machine("smithi001")["status_name"] == "Deployed"
