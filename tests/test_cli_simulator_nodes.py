"""`teuthology-maas simulator --with-nodes`: the simulator plus loopback sshd nodes reachable
by name, a paddles double and a teuthology config; `deploy`, `release`, `reconcile` and the
library's is_ready() then work from the command line as in a lab. Everything is separate
processes talking over real HTTP and SSH."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CLI = [sys.executable, "-m", "teuthology_maas.cli"]


def start_simulator(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([*CLI, "simulator", "--with-nodes", "--port", "0", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        raise AssertionError(f"the simulator did not start: {proc.stderr.read()}")
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def lab() -> Iterator[dict[str, Any]]:
    proc, info = start_simulator("--machines", "2", "--time-factor", "300")
    try:
        yield info
    finally:
        if proc.poll() is None:
            stop(proc)


def cli(info: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TEUTHOLOGY_CONFIG": info["config"]}
    env.pop("NO_COLOR", None)
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=180, env=env)


def test_the_written_config_points_at_everything_it_started(lab: dict[str, Any]) -> None:
    config = yaml.safe_load(Path(lab["config"]).read_text())
    maas = config["maas"]
    assert maas["api_url"] == lab["url"]
    assert maas["api_key"] == lab["api_keys"]["teuthology"]
    assert maas["machine_types"] == ["smithi"]
    assert maas["ssh_config"] == lab["ssh_config"]
    assert config["lock_server"] == lab["lock_server"]
    assert config["lab_domain"] == lab["lab_domain"]
    assert sorted(lab["nodes"]) == ["smithi001", "smithi002"]
    assert all(listening(port) for port in lab["nodes"].values())
    # the ssh_config maps both the short name and the FQDN to the node's sshd
    ssh_config = Path(lab["ssh_config"]).read_text()
    port = lab["nodes"]["smithi001"]
    assert f"Host smithi001 smithi001.*\n    HostName 127.0.0.1\n    Port {port}" in ssh_config


def test_deploy_is_ready_and_release_work_from_the_command_line(lab: dict[str, Any]) -> None:
    doctor = cli(lab, "doctor")
    assert doctor.returncode == 0, doctor.stdout
    deployed = cli(lab, "deploy", "smithi001")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert deployed.stdout.splitlines()[-1].startswith("smithi001: deployed ubuntu 22.04 in ")
    assert any(": SSH to " in line and "ready after" in line
               for line in deployed.stdout.splitlines())
    ready = cli(lab, "--json", "machines", "--status", "deployed").stdout
    assert [m["hostname"] for m in json.loads(ready)["machines"]] == ["smithi001"]
    # the library, as teuthology would call it, with the same config
    is_ready = subprocess.run(
        [sys.executable, "-c", "from teuthology_maas import MaasProvisioner; "
         "print(MaasProvisioner('smithi001').is_ready(), MaasProvisioner('smithi002').is_ready())"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TEUTHOLOGY_CONFIG": lab["config"]},
    )
    assert is_ready.stdout.split() == ["True", "False"], is_ready.stderr
    # nothing holds it in paddles: reconcile sees the leak a CLI deploy leaves
    assert cli(lab, "reconcile").returncode == 4
    released = cli(lab, "release", "smithi001")
    assert released.returncode == 0, released.stdout + released.stderr
    assert released.stdout.splitlines()[-1].startswith("smithi001: released in ")
    assert cli(lab, "reconcile").returncode == 0


def test_stopping_it_stops_the_nodes_and_removes_its_directory() -> None:
    proc, info = start_simulator("--machines", "1")
    workdir = Path(info["workdir"])
    assert workdir.is_dir() and listening(info["nodes"]["smithi001"])
    assert stop(proc) == 0
    assert not listening(info["nodes"]["smithi001"])
    assert not workdir.exists()  # a temporary directory of its own


def test_a_workdir_given_is_kept(tmp_path: Path) -> None:
    proc, info = start_simulator("--machines", "1", "--workdir", str(tmp_path / "lab"))
    assert info["config"] == str(tmp_path / "lab" / "teuthology.yaml")
    assert stop(proc) == 0
    assert (tmp_path / "lab" / "teuthology.yaml").is_file()


def test_the_text_output_says_how_to_use_it() -> None:
    proc = subprocess.Popen([*CLI, "simulator", "--with-nodes", "--port", "0", "--machines", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Stop with Ctrl-C"):
            break
    stop(proc)
    text = "".join(lines)
    assert "ssh_config: " in text and "ssh -F " in text
    assert "export TEUTHOLOGY_CONFIG=" in text
    assert "teuthology-maas deploy smithi001" in text


def test_workdir_without_with_nodes_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "simulator", "--workdir", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "--workdir goes with --with-nodes" in proc.stderr
