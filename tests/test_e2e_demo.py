"""`teuthology-maas demo` (what `make demo` runs), end to end, with a faster clock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from teuthology_maas.testing.processes import alive

pytestmark = [pytest.mark.e2e, pytest.mark.sshd, pytest.mark.slow]


def run_demo(home: Path, *args: str, timeout: float = 180) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TEUTHOLOGY"))}
    env["HOME"] = str(home)  # the demo must not need (or touch) the user's teuthology.yaml
    command = [str(Path(sys.executable).parent / "teuthology-maas"), "demo", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    return done.returncode, done.stdout + done.stderr


def test_demo_locks_reimages_unlocks_and_stops_everything(tmp_path):
    code, output = run_demo(tmp_path, "--time-factor", "600", "--machines", "4", "--count", "3")
    assert code == 0, output
    # the real teuthology-lock printed its targets YAML: three nodes with their host keys
    assert "$ teuthology-lock --lock-many 3 -m smithi --os-type ubuntu --os-version 22.04" \
        in output
    targets = re.findall(r"\]\s+(smithi\d{3}\.demo\.test): ssh-ed25519 ", output)
    assert len(set(targets)) == 3, output
    # progress while deploying, as MAAS showed it
    assert re.search(r"MAAS  smithi\d{3}: \w+ -> Deploying", output), output
    assert re.search(r"MAAS  smithi\d{3}: Deploying -> Deployed", output), output
    after_lock = output.split("MAAS after --lock-many:")[1].split("$ teuthology-lock")[0]
    assert after_lock.count("Deployed") == 3
    after_unlock = output.split("MAAS after --unlock:")[1]
    rows = re.findall(r"^\s+(smithi\d{3})\s+(\S+)", after_unlock, re.M)
    assert [status for _, status in rows] == ["Ready"] * 4, after_unlock
    # every process it started is gone
    pids = [int(p) for p in re.search(r"sshd 'nodes' \(pids ([\d ]+)\)", output)[1].split()]
    assert len(pids) == 4
    assert "STILL RUNNING" not in output
    assert not [pid for pid in pids if alive(pid)]
    # the log path it printed is gone at the end, and it says so (and how to keep it)
    assert "teuthology.log with it; run with --keep to keep it" in output
    lock_pids = [int(p) for p in re.findall(r"\(pid (\d+);", output)]
    assert len(lock_pids) == 2 and not [pid for pid in lock_pids if alive(pid)]


def test_demo_suite_runs_the_dispatcher_path_and_stops_everything(tmp_path, host_unchanged):
    code, output = run_demo(tmp_path, "--suite", "--time-factor", "600", "--machines", "4",
                            timeout=400)
    assert code == 0, output
    assert "$ teuthology-suite --suite maas-demo" in output
    assert re.search(r"\$ teuthology-dispatcher -v --tube smithi-demo\d+", output), output
    # each job's result, and its nodes' reimage timings
    assert re.search(r"job \d+  maas-demo/jammy  PASS", output), output
    assert re.search(r"job \d+  maas-demo/noble  PASS", output), output
    timings = re.findall(r"(smithi\d{3})\.demo\.test: ubuntu (\S+), reimaged in [\d.]+ s",
                         output)
    assert sorted(version for _, version in timings) == ["22.04", "22.04", "24.04"], output
    assert len({node for node, _ in timings}) == 3
    assert re.search(r"MAAS  smithi\d{3}: Deploying -> Deployed", output), output
    after = output.split("MAAS after the run:")[1]
    assert re.findall(r"^\s+smithi\d{3}\s+(\S+)", after, re.M) == ["Ready"] * 4, after
    # every process it started is gone
    assert "STILL RUNNING" not in output
    sshd = [int(p) for p in re.search(r"sandboxed \(pids ([\d ]+)\)", output)[1].split()]
    stopped = [int(p) for p in re.search(r"\(pids ([\d ]*):", output)[1].split()]
    beanstalkd = int(re.search(r"beanstalkd at \S+ \(pid (\d+)\)", output)[1])
    assert len(sshd) == 4 and stopped  # the dispatcher at least was still running
    assert not [pid for pid in [*sshd, *stopped, beanstalkd] if alive(pid)]
