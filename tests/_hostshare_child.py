"""One supervisor-like process for tests/test_fleet_hostshare.py: wait for one machine through
`endpoint_for(config).status_poller(config)`, as node code does, and report as JSON lines.

argv[1] is a JSON object: url, key, dir, system_id, timeout, gevent (bool), sharing (bool),
lookup (a hostname to look up first, or null), poll (fast, slow), fork (a leader forks
a child that sleeps a minute), probe (a path: the wait is a long job, as a deployment's,
with a probe that says "ready" once that file exists and appends a line to `probe`.log each
time it runs), failure_interval (for a long job), wait_kind (the wait's `kind`). Lines
printed: {"role"} once the host-sharing role is chosen, {"looked": [...]} after a lookup,
then {"status", "elapsed", "stats"} or {"error", "kind", "elapsed", "stats"}; `stats` are this
process's own poller's (what it asked MAAS, probes it ran or asked for, confirmations).
"""

from __future__ import annotations

import json
import sys

JOB = json.loads(sys.argv[1])
if JOB.get("gevent"):
    from gevent import monkey

    monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from teuthology_maas.config import MaasConfig  # noqa: E402
from teuthology_maas.endpoint import endpoint_for  # noqa: E402
from teuthology_maas.models import DEPLOY_FAILURE, DEPLOY_TARGET  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    fast, slow = JOB.get("poll", (0.1, 0.5))
    cfg = MaasConfig.from_mapping({
        "api_url": JOB["url"], "api_key": JOB["key"], "machine_types": ["smithi"],
        "poll_min_interval": fast, "poll_interval": slow, "http_timeout": 10,
        "host_sharing": JOB.get("sharing", True), "host_sharing_dir": JOB["dir"],
    })  # fmt: skip
    endpoint = endpoint_for(cfg)
    poller = endpoint.status_poller(cfg)
    poller.kick()  # chooses the role, as the provisioner's first action does
    role = getattr(poller, "role", "in-process")
    if JOB.get("fork") and role == "leader":
        pid = os.fork()  # a child that outlives us, holding whatever it inherited
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        say(forked=pid)
    say(role=role)
    if JOB.get("lookup"):
        say(looked=[m.system_id for m in endpoint.lookup_hostname(JOB["lookup"])])
    extra: dict[str, object] = {}
    if JOB.get("probe"):
        ready = JOB["probe"]

        def probe() -> bool:
            with open(ready + ".log", "a") as log:
                log.write(f"{os.getpid()}\n")
            return os.path.exists(ready)

        extra["probe"] = probe
    if JOB.get("failure_interval"):
        extra["failure_interval"] = JOB["failure_interval"]
    if JOB.get("wait_kind"):
        extra["kind"] = JOB["wait_kind"]
    start = time.monotonic()
    own = getattr(poller, "poller", poller)  # a HostShare's own StatusPoller
    try:
        machine = poller.wait(
            JOB["system_id"], targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE,
            timeout=JOB["timeout"], check=lambda: None, **extra,
        )  # fmt: skip
    except Exception as exc:
        say(error=str(exc), kind=type(exc).__name__, elapsed=time.monotonic() - start,
            stats=vars(own.stats))  # fmt: skip
        return
    say(status=machine.status_name, elapsed=time.monotonic() - start, stats=vars(own.stats))


if __name__ == "__main__":
    main()
