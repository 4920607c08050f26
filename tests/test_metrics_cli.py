"""`teuthology-maas metrics`: the metrics the processes of a host wrote (multiprocess mode),
printed or served as Prometheus scrapes them; only ours, never teuthology's own twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._cli_support import run_cli
from teuthology_maas.cli._common import ExitCode
from teuthology_maas.testing.ports import free_port

RECORD = textwrap.dedent("""
    from prometheus_client import Counter
    from teuthology_maas import metrics
    # teuthology's own metric, in the same directory as teuthology-exporter reads
    Counter("teuthology_reimaging_results", "teuthology's", ["machine_type", "status"]) \\
        .labels("smithi", "success").inc()
    with metrics.operation("create", node="smithi001", labels=metrics.Labels("smithi", "m")):
        with metrics.phase("deploy_wait"):
            pass
""")


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", RECORD], env=env, check=True, timeout=60)
    return directory


def families(text: str) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels.get("le")
    }


def test_prints_ours_only(recorded: Path) -> None:
    result = run_cli("metrics", "--dir", str(recorded))
    assert result.code == ExitCode.OK, result
    found = families(result.out)
    assert found["teuthology_maas_operations_total"] == 1
    assert found["teuthology_maas_phase_duration_seconds_count"] == 1
    assert not any(name.startswith("teuthology_reimaging") for name in found)


def test_a_missing_directory_says_where_metrics_come_from(tmp_path: Path) -> None:
    result = run_cli("metrics", "--dir", str(tmp_path / "absent"))
    assert result.code == ExitCode.USAGE, result
    assert "teuthology-exporter" in result.err and "absent" in result.err


def test_serves_them_until_interrupted(recorded: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "teuthology_maas.cli", "metrics", "--dir", str(recorded),
               "--serve", str(port), "--bind", "127.0.0.1"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "TEUTHOLOGY_MAAS_ACTIVATE": "0"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                break
            except OSError:
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline, "the metrics server never answered"
                time.sleep(0.1)
        assert families(text)["teuthology_maas_operations_total"] == 1
    finally:
        server.send_signal(signal.SIGINT)
        _out, err = server.communicate(timeout=30)
    assert server.returncode == ExitCode.INTERRUPTED, err
    assert f"http://127.0.0.1:{port}/metrics" in err
