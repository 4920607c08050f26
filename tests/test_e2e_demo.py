"""`teuthology-maas demo` (what `make demo` runs), end to end, with a faster clock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.sshd, pytest.mark.slow]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_demo_locks_reimages_unlocks_and_stops_everything(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TEUTHOLOGY"))}
    env["HOME"] = str(tmp_path)  # the demo must not need (or touch) the user's teuthology.yaml
    command = [str(Path(sys.executable).parent / "teuthology-maas"), "demo",
               "--time-factor", "600", "--machines", "4", "--count", "3"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
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
