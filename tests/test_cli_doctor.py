"""`teuthology-maas doctor` against the simulator: all OK, then one FAIL case per check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests._cli_support import CONTROL_CHARS, run_cli, write_config
from teuthology_maas.cli._common import ExitCode


def doctor(config: Path, *extra: str) -> tuple[int, dict[str, dict[str, str]]]:
    """Run doctor with --json; the checks by name."""
    result = run_cli("doctor", "--json", *extra, config=config)
    data = result.json()
    assert data["ok"] is (result.code == 0)
    return result.code, {c["check"]: c for c in data["checks"]}


def verdicts(checks: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


def test_all_ok(maas_sim: Any, config_for: Any, monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # where teuthology workers record metrics
    monkeypatch.delenv("TEUTHOLOGY_MAAS_METRICS", raising=False)
    (tmp_path / ".cache" / "teuthology-exporter").mkdir(parents=True)
    code, checks = doctor(config_for(maas_sim), "--os", "centos:9.stream")
    assert code == ExitCode.OK
    assert verdicts(checks) == {
        "config": "OK",
        "api": "OK",
        "api key": "OK",
        "maas version": "OK",
        "machines smithi": "OK",
        "image ubuntu 22.04": "OK",
        "image centos 9.stream": "OK",
        "user_data ubuntu 22.04": "OK",
        "user_data centos 9.stream": "OK",
        "ssh key": "OK",
        "metrics": "OK",
    }
    assert "6 machine(s), 6 Ready" in checks["machines smithi"]["detail"]
    assert "'teuthology' (non-admin)" in checks["api key"]["detail"]
    assert "3.5.4" in checks["maas version"]["detail"]
    assert "ubuntu/jammy synced for amd64/generic" in checks["image ubuntu 22.04"]["detail"]


def test_human_output_has_verdicts_hints_and_a_summary(
    maas_sim: Any, config_for: Any, monkeypatch: Any, tmp_path: Any
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no teuthology-exporter: metrics WARN
    monkeypatch.delenv("TEUTHOLOGY_MAAS_METRICS", raising=False)
    result = run_cli("doctor", config=config_for(maas_sim, ssh_keys=[]))
    assert result.code == ExitCode.DOCTOR_FAIL
    lines = result.out.splitlines()
    assert lines[0].startswith("OK    config")
    fail = next(i for i, line in enumerate(lines) if line.startswith("FAIL  ssh key"))
    assert "fix: create one (ssh-keygen" in lines[fail + 1]
    # one cause, one FAIL: the templates are still checked (with a stand-in key)
    warn = next(i for i, line in enumerate(lines) if line.startswith("WARN  metrics"))
    assert "fix: start teuthology-exporter" in lines[warn + 1]
    assert lines[-1] == "7 OK, 1 WARN, 1 FAIL"
    assert not CONTROL_CHARS.search(result.out)


def test_fail_config_invalid(maas_sim: Any, config_for: Any) -> None:
    code, checks = doctor(config_for(maas_sim, api_key="only-two:parts"))
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["config"]["status"] == "FAIL"
    assert "api_key" in checks["config"]["detail"]
    assert "maas.api_key" in checks["config"]["hint"]
    # nothing else could run: SKIPs, not a cascade of FAILs
    assert {v for k, v in verdicts(checks).items() if k != "config"} == {"SKIP"}


def test_fail_config_without_machine_types(maas_sim: Any, config_for: Any) -> None:
    code, checks = doctor(config_for(maas_sim, machine_types=[]))
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["config"]["status"] == "FAIL"
    assert "machine_types is empty" in checks["config"]["detail"]


def test_fail_api_unreachable(maas_sim_factory: Any, config_for: Any) -> None:
    handle = maas_sim_factory()
    config = config_for(handle)
    handle.stop()
    code, checks = doctor(config)
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["api"]["status"] == "FAIL"
    assert "cannot reach MAAS" in checks["api"]["detail"]
    assert "5240" in checks["api"]["hint"]
    assert checks["api key"]["status"] == "SKIP"


def test_fail_api_tls(maas_sim: Any, config_for: Any) -> None:
    # https to a port that speaks plain HTTP: the handshake fails
    code, checks = doctor(config_for(maas_sim, api_url=maas_sim.url.replace("http:", "https:")))
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["api"]["status"] == "FAIL"
    assert "TLS handshake" in checks["api"]["detail"]
    # the handshake met plain HTTP: the hint says so rather than suggest a CA bundle
    assert "https:// to a port that speaks plain HTTP" in checks["api"]["hint"]


def test_fail_api_url_not_maas(maas_sim: Any, config_for: Any) -> None:
    wrong = maas_sim.url.replace("/MAAS/", "/NOTMAAS/")
    code, checks = doctor(config_for(maas_sim, api_url=wrong))
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["api"]["status"] == "FAIL"
    assert "api_url" in checks["api"]["hint"]


def test_fail_api_key_rejected(maas_sim: Any, config_for: Any) -> None:
    consumer, token, _ = maas_sim.api_key.split(":")
    code, checks = doctor(config_for(maas_sim, api_key=f"{consumer}:{token}:notthesecret1234"))
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["api"]["status"] == "OK"
    assert checks["api key"]["status"] == "FAIL"
    assert "rejected" in checks["api key"]["detail"]
    assert "notthesecret1234" not in str(checks)
    assert checks["machines"]["status"] == "SKIP"


@pytest.mark.parametrize(("version", "verdict"), [("2.8.2", "FAIL"), ("3.2.9", "WARN")])
def test_maas_version(
    maas_sim_factory: Any, config_for: Any, version: str, verdict: str
) -> None:
    from tests.fixtures_simulator import default_inventory

    handle = maas_sim_factory({**default_inventory(), "maas_version": version})
    code, checks = doctor(config_for(handle))
    assert checks["maas version"]["status"] == verdict
    assert version in checks["maas version"]["detail"]
    assert code == (ExitCode.DOCTOR_FAIL if verdict == "FAIL" else ExitCode.OK)


def test_fail_machine_type_without_machines(maas_sim: Any, config_for: Any) -> None:
    code, checks = doctor(config_for(maas_sim, machine_types=["smithi", "mira"]))
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["machines smithi"]["status"] == "OK"
    assert checks["machines mira"]["status"] == "FAIL"
    assert "tag the machines 'mira'" in checks["machines mira"]["hint"]


def test_warn_machine_type_with_none_ready(maas_sim: Any, config_for: Any) -> None:
    for i in range(1, 7):
        maas_sim.sim.update_machine(f"smithi00{i}", status="deployed", owner="teuthology")
    code, checks = doctor(config_for(maas_sim))
    assert code == ExitCode.OK
    assert checks["machines smithi"]["status"] == "WARN"
    assert "none Ready" in checks["machines smithi"]["detail"]


def test_fail_image_not_synced_for_an_architecture(maas_sim_factory: Any, config_for: Any) -> None:
    inventory = {
        "machines": [
            {"hostname": "smithi001", "tags": ["smithi"], "architecture": "amd64/generic"},
            {"hostname": "smithi002", "tags": ["smithi"], "architecture": "arm64/generic"},
        ],
        "images": [{"name": "ubuntu/jammy", "architecture": "amd64/generic"}],
    }
    code, checks = doctor(config_for(maas_sim_factory(inventory)))
    assert code == ExitCode.DOCTOR_FAIL
    image = checks["image ubuntu 22.04"]
    assert image["status"] == "FAIL"
    assert image["detail"] == "ubuntu/jammy is not synced for arm64/generic"
    assert "import ubuntu/jammy" in image["hint"]


def test_fail_unknown_os(maas_sim: Any, config_for: Any) -> None:
    code, checks = doctor(config_for(maas_sim), "--os", "plan9:4")
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["image plan9 4"]["status"] == "FAIL"
    assert "image_map" in checks["image plan9 4"]["hint"]


def test_image_map_entries_are_checked(maas_sim: Any, config_for: Any) -> None:
    code, checks = doctor(config_for(maas_sim, image_map={"rocky 9": "custom/rocky9-lab"}))
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["image rocky 9"]["status"] == "FAIL"
    assert "custom/rocky9-lab" in checks["image rocky 9"]["detail"]


def test_fail_user_data_template_invalid(
    maas_sim: Any, config_for: Any, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "ubuntu-22.04.yaml").write_text(
        "#cloud-config\nhostname: {{ hostname }}\nbad: [unclosed\n", encoding="utf-8"
    )
    pattern = str(templates / "{os_type}-{os_version}.yaml")
    code, checks = doctor(config_for(maas_sim, user_data=pattern))
    assert code == ExitCode.DOCTOR_FAIL
    check = checks["user_data ubuntu 22.04"]
    assert check["status"] == "FAIL"
    assert "ubuntu-22.04.yaml" in check["detail"]


def test_fail_user_data_template_missing(
    maas_sim: Any, config_for: Any, tmp_path: Path
) -> None:
    pattern = str(tmp_path / "nowhere-{os_type}-{os_version}.yaml")
    code, checks = doctor(config_for(maas_sim, user_data=pattern))
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["user_data ubuntu 22.04"]["status"] == "FAIL"
    assert "no user_data template" in checks["user_data ubuntu 22.04"]["detail"]


def test_fail_no_ssh_key(maas_sim: Any, config_for: Any) -> None:
    code, checks = doctor(config_for(maas_sim, ssh_keys=[]))
    assert code == ExitCode.DOCTOR_FAIL
    assert checks["ssh key"]["status"] == "FAIL"
    assert "ssh_keys" in checks["ssh key"]["hint"]


def test_warn_without_lab_domain(maas_sim: Any, config_for: Any) -> None:
    config = config_for(maas_sim)
    config.write_text(config.read_text().replace("lab_domain: front.example.com\n", ""))
    assert "lab_domain" not in config.read_text()
    code, checks = doctor(config)
    assert code == ExitCode.OK
    assert checks["lab_domain"]["status"] == "WARN"
    assert "lab_domain" in checks["lab_domain"]["hint"]


def test_warns_about_a_results_server_with_a_trailing_slash(
    maas_sim: Any, ssh_keypair: Any, tmp_path: Path
) -> None:
    url = "http://paddles.example.com:8080"

    def config_with(server: str) -> Path:
        return write_config(tmp_path, maas_sim, top={"lock_server": server,
                                                     "results_server": server},
                            ssh_keys=[ssh_keypair.public_key])

    code, checks = doctor(config_with(url + "/"))
    assert code == ExitCode.OK  # a warning: the run can start, clean-up will not work
    assert checks["results_server"]["status"] == "WARN"
    assert "'http://paddles.example.com:8080//runs/...'" in checks["results_server"]["detail"]
    assert checks["results_server"]["hint"] == f"drop the trailing slash: results_server: {url}"
    _, fixed = doctor(config_with(url))
    assert (fixed["results_server"]["status"], fixed["results_server"]["detail"]) == ("OK", url)
