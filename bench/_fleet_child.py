"""The provisioning process of one benchmark variant (run by fleet_bench.py, never by hand).

Reads a JSON job on stdin, reimages every named node at once (one thread per node, which is a
greenlet once teuthology has monkey-patched), and prints one JSON line: for every node when
create() started and returned (time.monotonic(), comparable across processes on Linux), when
the status read that showed it Deployed was sent, and any error.

Both implementations are driven the same way and with the same two changes, both recorded in
"notes": sleeping is scaled to the simulator's time factor, and the SSH check after Deployed is
replaced by a stub (there are no real nodes; both sides still lock the node in MAAS).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
import types
from typing import Any

JOB: dict[str, Any] = json.loads(sys.stdin.read())
if JOB["mode"] == "gevent" or JOB["impl"] == "upstream":
    # What teuthology does on import (gevent's monkey-patching), done first, before anything
    # imports threading. Upstream's code cannot run without it; `--mode threads` is ours only.
    import teuthology  # noqa: F401

FACTOR: float = float(JOB["factor"])
_real_sleep = time.sleep


class SeenDeployed:
    """For each node, the send time of the first status read that answered Deployed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at: dict[str, float] = {}

    def saw(self, key: str, sent: float) -> None:
        with self.lock:
            self.at.setdefault(key, sent)


SEEN = SeenDeployed()
NOTES: list[str] = []
POLLS: list[float] = []  # send times of the shared poller's list requests


def run_upstream(hostnames: list[str]) -> dict[str, Any]:
    import teuthology.contextutil
    import teuthology.provision.maas as upstream
    from teuthology.config import config

    config.maas = {
        "api_url": JOB["api_url"],
        "api_key": JOB["api_key"],
        "machine_types": ["bench"],
        # safe_while counts the seconds it slept (unscaled); MAAS's own deploy bound is 30 min.
        "timeout": 1800,
    }
    config.lab_domain = JOB["lab_domain"]
    # safe_while sleeps through the module-level `time` of teuthology.contextutil: scale it.
    teuthology.contextutil.time = types.SimpleNamespace(  # type: ignore[assignment]
        sleep=lambda seconds: _real_sleep(seconds / FACTOR)
    )
    NOTES.append(
        f"upstream: teuthology.contextutil's time.sleep scaled by 1/{FACTOR:g} (its 60 s status "
        f"poll sleeps {60 / FACTOR:.3f} s real); maas.timeout=1800; _verify_installed_os "
        "(SSH) stubbed out"
    )
    upstream.MAAS._verify_installed_os = lambda self: None
    original = upstream.MAAS.get_machines_data

    def recording(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        sent = time.monotonic()
        data: dict[str, Any] = original(self, *args, **kwargs)
        if str(data.get("status_name", "")).lower() == "deployed":
            SEEN.saw(self.shortname, sent)
        return data

    upstream.MAAS.get_machines_data = recording

    def create(hostname: str) -> None:
        upstream.MAAS(f"{hostname}.{JOB['lab_domain']}", "ubuntu", "22.04").create()

    return drive(hostnames, create)


def run_ours(hostnames: list[str]) -> dict[str, Any]:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.endpoint import endpoint_for
    from teuthology_maas.maas.client import MaasClient
    from teuthology_maas.node import provisioner

    cfg = MaasConfig.from_mapping(
        {
            "api_url": JOB["api_url"],
            "api_key": JOB["api_key"],
            "machine_types": ["bench"],
            # The configured ticks, scaled like everything else that waits.
            "poll_interval": 10.0 / FACTOR,
            "poll_min_interval": 0.5 / FACTOR,
            "install_poll_interval": 120.0 / FACTOR,
            "host_store": JOB["host_store"],
            "ssh_keys": [JOB["ssh_public_key"]],
            "lock_after_deploy": True,
        },
        top={"lab_domain": JOB["lab_domain"]},
    )
    NOTES.append(
        f"ours: poll_interval={cfg.poll_interval:.4g} s, poll_min_interval="
        f"{cfg.poll_min_interval:.4g} s, install_poll_interval={cfg.install_poll_interval:.4g} "
        f"s (10 s, 0.5 s and 120 s scaled by 1/{FACTOR:g}); SSH probe from the simulator's "
        "per-node files; a fresh host store; one "
        "MaasProvisioner per node sharing the process's Endpoint (one client, one poller), as "
        "the teuthology adapter makes them; lock_after_deploy=true; verify_ssh (SSH) stubbed out"
    )
    endpoint = endpoint_for(cfg)
    provisioner.verify_ssh = lambda fqdn, config, **kw: {"ID": "ubuntu", "VERSION_ID": "22.04"}
    # The probe near the end of a deployment: what a login would find, from the simulator's
    # per-node files (key authorized, cloud-init's sentinel present), instead of SSH.
    from pathlib import Path

    from teuthology_maas.testing.simulated_ssh import probe_from_files

    provisioner.probe_ready = probe_from_files(Path(JOB["ssh_root"]))  # type: ignore[assignment]
    original = MaasClient.list_machines

    def recording(self: MaasClient, **kwargs: Any) -> list[Any]:
        sent = time.monotonic()
        if kwargs.get("id"):
            POLLS.append(sent)
        machines: list[Any] = original(self, **kwargs)
        for machine in machines:
            if machine.status_name == "Deployed":
                SEEN.saw(machine.hostname, sent)
        return machines

    MaasClient.list_machines = recording  # type: ignore[method-assign]

    def create(hostname: str) -> None:
        provisioner.MaasProvisioner(
            f"{hostname}.{JOB['lab_domain']}", "ubuntu", "22.04", config=cfg, endpoint=endpoint
        ).create()

    result = drive(hostnames, create)
    pollers = [endpoint.status_poller()]
    result["poller"] = {
        "ticks": sum(p.stats.ticks for p in pollers),
        "requests": sum(p.stats.requests for p in pollers),
        "errors": sum(p.stats.errors for p in pollers),
        "sent": POLLS,
        # Which finish-time models held for each status_message (see _fleet_estimate).
        "models": {
            message: {
                "additive": "fits" if not fits.additive.broken else "noisy",
                "proportional": "fits" if not fits.proportional.broken else "noisy",
            }
            for p in pollers
            for (_, message), fits in p.history._fits.items()
        },
    }
    return result


def drive(hostnames: list[str], create: Any) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}

    def one(hostname: str) -> None:
        record: dict[str, Any] = {"hostname": hostname, "started": time.monotonic()}
        nodes[hostname] = record
        try:
            create(hostname)
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"[:500]
            record["traceback"] = traceback.format_exc()[-2000:]
        record["returned"] = time.monotonic()

    threads = [threading.Thread(target=one, args=(h,), name=h) for h in hostnames]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ended = time.monotonic()
    for hostname, record in nodes.items():
        record["noticed"] = SEEN.at.get(hostname)
    return {"nodes": list(nodes.values()), "began": began, "ended": ended}


def main() -> None:
    hostnames: list[str] = JOB["hostnames"]
    result = run_upstream(hostnames) if JOB["impl"] == "upstream" else run_ours(hostnames)
    result["notes"] = NOTES
    result["mode"] = JOB["mode"]
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
