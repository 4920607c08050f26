"""Typos at the command line and in the configuration are caught by the command: the nearest
known name, a non-zero exit, and nothing touched in MAAS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests._cli_support import run_cli
from teuthology_maas.cli._common import ExitCode


def posts(handle: Any, since: int) -> list[str]:
    return [str(r.op) for r in list(handle.sim.request_log)[since:]
            if r.method in ("POST", "PUT", "DELETE")]


def test_an_os_type_typo_is_a_usage_error_naming_the_os(maas_sim: Any, config_for: Any) -> None:
    before = len(maas_sim.sim.request_log)
    result = run_cli("deploy", "smithi001", "--os-type", "ubunto", config=config_for(maas_sim))
    assert result.code == ExitCode.USAGE
    assert "unknown os_type 'ubunto'; did you mean 'ubuntu'?" in result.err
    assert "image_map" not in result.err
    assert posts(maas_sim, before) == []


def test_an_os_version_typo_names_the_nearest_version(maas_sim: Any, config_for: Any) -> None:
    result = run_cli("deploy", "smithi001", "--os-version", "22.4", config=config_for(maas_sim))
    assert result.code == ExitCode.USAGE
    assert "did you mean '22.04'?" in result.err


def test_a_hostname_typo_names_the_nearest_machine(maas_sim: Any, config_for: Any) -> None:
    result = run_cli("release", "smithi01", config=config_for(maas_sim))
    assert result.code == ExitCode.FAILURE
    assert "no machine named 'smithi01'" in result.err
    assert "did you mean 'smithi001'?" in result.err


def test_a_machine_outside_machine_types_is_refused_unless_forced(
    maas_sim: Any, config_for: Any
) -> None:
    maas_sim.sim.add_machine("mira001", tags=["mira"], pool="mira")
    config = config_for(maas_sim)  # machine_types: [smithi]
    before = len(maas_sim.sim.request_log)
    for command in (["deploy", "mira001"], ["release", "mira001"], ["abort", "mira001"]):
        refused = run_cli(*command, config=config)
        assert refused.code == ExitCode.USAGE, command
        assert "mira001 belongs to none of the configured machine types (smithi)" in refused.err
        assert "--force" in refused.err
    assert posts(maas_sim, before) == []
    forced = run_cli("release", "mira001", "--force", config=config)
    assert forced.code == ExitCode.OK, forced.err
    assert forced.out.splitlines()[-1] == "mira001: already Ready: nothing to release"


def test_abort_with_nothing_to_abort_says_so(maas_sim: Any, config_for: Any) -> None:
    result = run_cli("abort", "smithi001", config=config_for(maas_sim))
    assert result.code == ExitCode.OK
    assert result.out.splitlines()[-1] == "smithi001: nothing to abort (Ready)"
    as_json = run_cli("abort", "smithi001", "--json", config=config_for(maas_sim)).json()
    assert as_json["action"] == "abort" and as_json["outcome"] == "nothing to abort (Ready)"


def _with_keys(config: Path, **keys: Any) -> Path:
    document = yaml.safe_load(config.read_text())
    document["maas"].update(keys)
    config.write_text(yaml.safe_dump(document))
    return config


def test_a_config_key_typo_is_warned_with_the_nearest_key(maas_sim: Any, config_for: Any) -> None:
    config = _with_keys(config_for(maas_sim), timeuot=5)
    proc = subprocess.run([sys.executable, "-m", "teuthology_maas.cli", "--config", str(config),
                           "machines"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "ignoring unknown maas key(s): 'timeuot' (did you mean 'timeout'?)" in proc.stderr


def test_doctor_warns_about_unknown_keys(maas_sim: Any, config_for: Any) -> None:
    config = config_for(maas_sim)
    document = yaml.safe_load(config.read_text())
    document["maas"]["machine_type"] = document["maas"].pop("machine_types")
    document["maas"]["timeuot"] = 5
    config.write_text(yaml.safe_dump(document))
    result = run_cli("doctor", "--json", config=config)
    checks = {c["check"]: c for c in result.json()["checks"]}
    assert checks["config keys"]["status"] == "WARN"
    assert "'machine_type' (did you mean 'machine_types'?)" in checks["config keys"]["detail"]
    assert "'timeuot' (did you mean 'timeout'?)" in checks["config keys"]["detail"]
    assert checks["config"]["status"] == "FAIL"  # and machine_types is empty because of it
    text = run_cli("doctor", config=config)
    assert "WARN  config keys" in text.out


def test_doctor_warns_about_an_admin_key(maas_sim: Any, config_for: Any) -> None:
    result = run_cli("doctor", "--json",
                     config=config_for(maas_sim, api_key=maas_sim.key_for("admin")))
    key = next(c for c in result.json()["checks"] if c["check"] == "api key")
    assert key["status"] == "WARN"
    assert "'admin' is an administrator" in key["detail"]
    assert "non-admin" in key["hint"]
    plain = run_cli("doctor", "--json", config=config_for(maas_sim))
    key = next(c for c in plain.json()["checks"] if c["check"] == "api key")
    assert key["status"] == "OK" and "(non-admin)" in key["detail"]


def test_a_url_without_maas_gets_a_hint_outside_doctor(maas_sim: Any, config_for: Any) -> None:
    wrong = maas_sim.url.replace("/MAAS/", "/")
    result = run_cli("machines", config=config_for(maas_sim, api_url=wrong))
    assert result.code != ExitCode.OK
    assert "hint: maas.api_url" in result.err and "has no /MAAS/ in its path" in result.err
    as_json = run_cli("machines", "--json", config=config_for(maas_sim, api_url=wrong)).json()
    assert "/MAAS/" in as_json["hint"]


def test_https_to_an_http_port_gets_a_hint_outside_doctor(maas_sim: Any, config_for: Any) -> None:
    result = run_cli("deploy", "smithi001",
                     config=config_for(maas_sim, api_url=maas_sim.url.replace("http:", "https:")))
    assert result.code == ExitCode.UNREACHABLE
    assert "hint: https:// to a port that speaks plain HTTP" in result.err
