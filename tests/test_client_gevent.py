"""MaasClient inside a gevent-patched process, as it runs inside teuthology: greenlets share
one client, the per-endpoint action cap holds, and reads proceed concurrently.

gevent must patch before anything imports threading or socket, so the scenario runs in a fresh
interpreter that patches first and prints a JSON verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SCRIPT = """
from gevent import monkey
monkey.patch_all()

import json, sys, threading
import gevent
sys.path.insert(0, {tests!r})
from _maas_wire import API_KEY, FakeMaas
from teuthology_maas.maas.client import MaasClient, RetryPolicy

fake = FakeMaas()
fake.hold = 0.05
client = MaasClient(fake.url, API_KEY, max_concurrent_actions=2,
                    retry=RetryPolicy(max_attempts=2, max_total=5, backoff_initial=0.01))
actions = [gevent.spawn(client.abort, "abc123") for _ in range(10)]
gevent.joinall(actions, timeout=20, raise_error=True)
posts_max = fake.max_in_flight

fake.hold = 0.0
barrier = threading.Barrier(5, timeout=5)
def behaviour(method, path, op):
    barrier.wait()  # passes only when five reads are in flight at once
    return ("json", 200, {{"system_id": "abc123", "status": 4}})
fake.behaviour = behaviour
reads = [gevent.spawn(client.get_machine, "abc123") for _ in range(5)]
gevent.joinall(reads, timeout=20, raise_error=True)
client.close()
fake.close()
print(json.dumps({{
    "patched": monkey.is_module_patched("threading") and monkey.is_module_patched("socket"),
    "actions_done": sum(1 for g in actions if g.successful()),
    "posts": sum(1 for r in fake.requests if r["method"] == "POST"),
    "posts_max_in_flight": posts_max,
    "reads_done": sum(1 for g in reads if g.successful()),
}}))
"""


def test_client_under_gevent_caps_actions_and_runs_reads_concurrently():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tests=str(TESTS))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    verdict = json.loads(done.stdout.strip().splitlines()[-1])
    assert verdict["patched"] is True
    assert verdict["actions_done"] == 10
    assert verdict["posts"] == 10
    assert 1 <= verdict["posts_max_in_flight"] <= 2
    assert verdict["reads_done"] == 5
