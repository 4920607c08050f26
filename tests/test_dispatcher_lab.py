"""The dispatcher lab's own pieces, without teuthology: reading reimage timings from a
supervisor's log, and finding a lab's detached processes and ending them by PID."""

from __future__ import annotations

import os
import subprocess
import sys

from teuthology_maas.testing.dispatcher_lab import Reimage, reimages
from teuthology_maas.testing.processes import (
    alive,
    descendants,
    end_processes,
    marked_processes,
)

SUPERVISOR_LOG = """\
2026-12-06T04:18:39.782 INFO:teuthology.lock.ops:Start node 'n1.lab.test' reimaging
2026-12-06T04:18:39.803 INFO:teuthology_maas.teuthology.n1:Reimaging n1.lab.test with ubuntu 22.04 through MAAS
2026-12-06T04:18:39.839 INFO:teuthology_maas.teuthology.n2:Reimaging n2.lab.test with ubuntu 22.04 through MAAS
2026-12-06T04:18:39.840 INFO:teuthology_maas.teuthology.n3:Reimaging n3.lab.test with centos 9.stream through MAAS
2026-12-06T04:18:41.110 INFO:teuthology_maas.teuthology.n1:Reimaged n1.lab.test with ubuntu 22.04 in 1 s
2026-12-06T04:18:45.339 ERROR:teuthology_maas.teuthology.n2:Reimaging n2.lab.test through MAAS failed after 6 s: n2 (abc123): Failed deployment: curtin failed
"""  # noqa: E501


def test_reimage_timings_come_from_the_supervisors_log():
    assert reimages(SUPERVISOR_LOG) == [
        Reimage("n1.lab.test", "ubuntu 22.04", 1.3),
        Reimage("n2.lab.test", "ubuntu 22.04", 5.5,
                "n2 (abc123): Failed deployment: curtin failed"),
        Reimage("n3.lab.test", "centos 9.stream", None),  # still running when the log ends
    ]
    assert reimages("") == []


def test_a_labs_detached_processes_are_found_by_marker_and_ended_by_pid(tmp_path):
    marker = ("TEUTHOLOGY_MAAS_LAB", str(tmp_path))
    env = {**os.environ, marker[0]: marker[1]}
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    # one in a session of its own, as the dispatcher starts supervisors; one not ours
    ours = subprocess.Popen(sleeper, env=env, start_new_session=True)
    other = subprocess.Popen(sleeper, env={**env, marker[0]: marker[1] + "-other"})
    try:
        assert marked_processes(*marker) == [ours.pid]
        assert end_processes([ours.pid], grace=5) == []  # SIGTERM was enough
        ours.wait(timeout=5)
        assert not alive(ours.pid) and alive(other.pid)
        assert marked_processes(*marker) == []
    finally:
        for process in (ours, other):
            process.kill()
            process.wait(timeout=5)


def test_descendants_include_children_in_sessions_of_their_own():
    # a parent whose child starts its own session, as sshd's per-connection children do
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert descendants(parent.pid) == [child]
        assert os.getsid(child) != os.getsid(parent.pid)  # a process-group kill misses it
        end_processes([child], grace=5)
        assert not alive(child)
    finally:
        parent.kill()
        parent.wait(timeout=5)
