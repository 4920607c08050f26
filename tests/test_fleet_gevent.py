"""The shared poller inside a gevent-patched process, as it runs inside teuthology.

gevent's monkey-patching must happen before anything imports threading, so each scenario runs
in a fresh interpreter that patches first, then drives the poller with greenlets and prints a
JSON verdict for the assertions here."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

PRELUDE = """
from gevent import monkey
monkey.patch_all()

import json, sys, threading, time
import gevent
sys.path.insert(0, {tests!r})
from test_fleet import FakeMaas
from teuthology_maas import fleet
from teuthology_maas.errors import MaasTimeout, MaasUnavailable
from teuthology_maas.models import DEPLOY_FAILURE, DEPLOY_TARGET, NodeStatus
"""


def run_patched(body: str) -> dict:
    script = PRELUDE.format(tests=str(TESTS)) + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_many_greenlets_share_one_poller_greenlet_and_all_wake():
    verdict = run_patched(
        """
        class Recording(FakeMaas):
            native_ids = set()
            def list_machines(self, *, id):
                self.native_ids.add(threading.get_native_id())
                return super().list_machines(id=id)
        client = Recording()
        ids = [f"g{i:03d}" for i in range(60)]
        for sid in ids:
            client.add(sid, NodeStatus.DEPLOYING, "Installing OS")
        poller = fleet.StatusPoller(client, min_interval=0.01, max_interval=0.05, chunk_size=25)
        results = {}
        def wait(sid):
            results[sid] = poller.wait(sid, targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE,
                                       timeout=20).status_name
        greenlets = [gevent.spawn(wait, sid) for sid in ids]
        # the hub keeps running other greenlets while everyone waits: the waits cooperate
        ticks = 0
        while poller.waiting < len(ids) or len(client.list_calls()) < 6:
            gevent.sleep(0.005)
            ticks += 1
        # under gevent the poller "thread" is a greenlet on the main native thread
        poller_is_greenlet = client.native_ids == {threading.get_native_id()}
        for n, sid in enumerate(ids):
            client.set(sid, NodeStatus.FAILED_DEPLOYMENT if n % 10 == 0 else NodeStatus.DEPLOYED)
        gevent.joinall(greenlets, timeout=20)
        deadline = time.monotonic() + 5
        while poller.running and time.monotonic() < deadline:
            gevent.sleep(0.01)
        print(json.dumps({
            "results": results,
            "largest_request": max(len(c) for c in client.list_calls()),
            "kinds": sorted({kind for kind, _ in client.calls}),
            "main_loop_ran": ticks,
            "patched": poller_is_greenlet,
            "stopped": not poller.running,
        }))
        """
    )
    results = verdict["results"]
    assert len(results) == 60
    assert sum(1 for v in results.values() if v == "Failed deployment") == 6
    assert sum(1 for v in results.values() if v == "Deployed") == 54
    assert verdict["largest_request"] == 25
    assert verdict["kinds"] == ["list"]
    assert verdict["main_loop_ran"] > 0
    assert verdict["patched"] is True
    assert verdict["stopped"] is True


def test_timeouts_and_unreachable_maas_under_gevent():
    verdict = run_patched(
        """
        client = FakeMaas()
        client.add("slow", NodeStatus.DEPLOYING, "Installing OS")
        client.add("ok", NodeStatus.DEPLOYED)
        client.list_errors = [MaasUnavailable("MAAS at http://127.0.0.1:1/ is unreachable")] * 3
        poller = fleet.StatusPoller(client, min_interval=0.01, max_interval=0.05)
        out = {}
        def slow():
            try:
                poller.wait("slow", targets=DEPLOY_TARGET, timeout=0.3)
            except MaasTimeout as exc:
                out["timeout"] = [exc.last_status, str(exc)]
        def ok():
            out["ok"] = poller.wait("ok", targets=DEPLOY_TARGET, timeout=10).status_name
        gevent.joinall([gevent.spawn(slow), gevent.spawn(ok)], timeout=20)
        out["errors"] = poller.stats.errors
        print(json.dumps(out))
        """
    )
    assert verdict["ok"] == "Deployed"
    assert verdict["errors"] == 3
    last_status, text = verdict["timeout"]
    assert last_status == "Deploying"
    assert "did not reach Deployed within 0.3 s" in text
