"""One supervisor-shaped process of a benchmark run (started by _fleet_run.py, never by hand).

Like `teuthology-supervisor`, it imports teuthology (gevent's monkey-patching first, then the
supervisor's own modules: provision, orchestra, lock, ...), points teuthology's config at the
simulator and calls the real entry point, `teuthology.provision.maas.MAAS(fqdn, "ubuntu",
"22.04").create()`, for each of its nodes at once (one thread, i.e. greenlet, per node). Which
code answers is decided the way a lab decides it: with our activation hook on, our adapter;
with TEUTHOLOGY_MAAS_ACTIVATE=0 (set by the parent), upstream teuthology 1.3.0's own class.

Protocol: the job is one JSON line on stdin; the child prints {"ready": ...} once imported and
configured, waits for a "go" line (so that all processes of a run start create() together),
then prints one JSON line with each node's create() start and return (time.monotonic(), which
is system-wide on Linux) and its error, if any, and its own CPU time over the provisioning.

The benchmark changes exactly three things, all listed in "notes": the sleeping is scaled to
the simulator's time factor, teuthology's config is set here (no ~/.teuthology.yaml, no lock
server), and SSH reads the simulator's per-node files instead of logging in (`use_simulated_ssh`,
the one place SSH is patched).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
import traceback
import types
from dataclasses import fields
from pathlib import Path
from typing import Any

JOB: dict[str, Any] = json.loads(sys.stdin.readline())
OURS = JOB["impl"] == "ours"

# What teuthology-supervisor imports, in this order: teuthology's package (gevent
# monkey-patching) first, before anything imports threading.
import teuthology  # noqa: E402
import teuthology.dispatcher.supervisor  # noqa: E402
import teuthology.provision  # noqa: E402
import teuthology.provision.maas  # noqa: E402
from teuthology.config import config as teuthology_config  # noqa: E402

FACTOR: float = float(JOB["factor"])
SSH_ROOT = Path(JOB["ssh_root"])
NOTES: list[str] = []
_real_sleep = time.sleep
# SSH functions of teuthology_maas.node.ssh -> their file-backed doubles in
# teuthology_maas.testing.simulated_ssh (each takes the simulator's ssh_root).
SSH_SEAMS = {"verify_ssh": "verify_ssh_from_files", "probe_ready": "probe_from_files"}


def scaled_intervals() -> dict[str, float]:
    """Every polling interval of our config (fields named *interval*), scaled by 1/factor:
    whatever ticks the library has, they tick as often in simulated time as against a real
    MAAS. Timeouts stay unscaled (longer in simulated time: they never decide a run)."""
    from teuthology_maas.config import MaasConfig

    defaults = MaasConfig.from_mapping({"api_url": JOB["api_url"], "api_key": JOB["api_key"]})
    return {
        f.name: float(getattr(defaults, f.name)) / FACTOR
        for f in fields(MaasConfig)
        if "interval" in f.name and isinstance(getattr(defaults, f.name), int | float)
    }


def configure() -> None:
    section: dict[str, Any] = {
        "api_url": JOB["api_url"],
        "api_key": JOB["api_key"],
        "machine_types": [JOB["machine_type"]],
    }
    if OURS:
        intervals = scaled_intervals()
        section.update(intervals, ssh_keys=[JOB["ssh_public_key"]], lock_after_deploy=True)
        shown = ", ".join(f"{k}={v * FACTOR:g} s" for k, v in sorted(intervals.items()))
        NOTES.append(f"ours: config defaults, with {shown} scaled by 1/{FACTOR:g}")
    else:
        # safe_while counts the seconds it slept (unscaled); MAAS's own deploy bound is 30 min.
        section["timeout"] = 1800
        # safe_while sleeps through the module-level `time` of teuthology.contextutil.
        import teuthology.contextutil

        teuthology.contextutil.time = types.SimpleNamespace(
            sleep=lambda seconds: _real_sleep(seconds / FACTOR)
        )
        NOTES.append(
            f"upstream: teuthology.contextutil's time.sleep scaled by 1/{FACTOR:g} (its 60 s "
            f"status poll sleeps {60 / FACTOR:.3f} s real); maas.timeout=1800"
        )
    teuthology_config.maas = section
    teuthology_config.lab_domain = JOB["lab_domain"]
    teuthology_config.lock_server = None  # no paddles in the benchmark: nothing to stamp from
    NOTES.append(f"{JOB['impl']}: teuthology config set in the process; no lock server")


def use_simulated_ssh() -> None:
    """SSH answers as the simulator's per-node files say (they appear when the machine is
    Deployed: our key, the cloud-init sentinel, os-release), on both sides."""
    if OURS:
        # What the activation's dispatcher imports on the first call, imported now so that
        # the modules holding the SSH functions are there to patch.
        import teuthology_maas.teuthology.adapter  # noqa: F401
        from teuthology_maas.node import ssh
        from teuthology_maas.testing import simulated_ssh

        for real_name, double_name in SSH_SEAMS.items():
            real = getattr(ssh, real_name, None)
            if real is None:
                continue
            factory = getattr(simulated_ssh, double_name, None)
            if factory is None:
                NOTES.append(f"ours: node.ssh.{real_name} has no file-backed double "
                             f"(testing.simulated_ssh.{double_name}): left as it is")  # fmt: skip
                continue
            fake = factory(SSH_ROOT)
            # Every module that imported the real function by name gets the file-backed one.
            patched = [
                name
                for name, module in list(sys.modules.items())
                if name.startswith("teuthology_maas") and getattr(module, real_name, None) is real
            ]
            for name in patched:
                setattr(sys.modules[name], real_name, fake)
            NOTES.append(f"ours: {real_name} reads the simulator's node files "
                         f"({', '.join(patched)})")  # fmt: skip
        return
    from teuthology.orchestra.opsys import OS

    def verify_installed_os(self: Any) -> None:
        # Upstream reads /etc/os-release over SSH (Remote.os) and compares it; same here.
        try:
            text = (SSH_ROOT / self.shortname / "os-release").read_text()
        except OSError as exc:
            raise RuntimeError(f"{self.shortname}: cannot read /etc/os-release: {exc}") from exc
        wanted, found = OS(name=self.os_type, version=self.os_version), OS.from_os_release(text)
        if found != wanted:
            raise RuntimeError(
                f"Expected {self.shortname}'s OS to be '{wanted}' but found '{found}'"
            )

    teuthology.provision.maas.MAAS._verify_installed_os = verify_installed_os
    NOTES.append("upstream: _verify_installed_os reads os-release from the simulator's node files")


def drive(hostnames: list[str]) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}

    def one(hostname: str) -> None:
        record: dict[str, Any] = {"hostname": hostname, "started": time.monotonic()}
        nodes[hostname] = record
        try:
            entry = teuthology.provision.maas.MAAS
            entry(f"{hostname}.{JOB['lab_domain']}", "ubuntu", "22.04").create()
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"[:500]
            record["traceback"] = traceback.format_exc()[-2000:]
        record["returned"] = time.monotonic()

    threads = [threading.Thread(target=one, args=(h,), name=h) for h in hostnames]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ended = time.monotonic()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"nodes": list(nodes.values()), "began": began, "ended": ended, "cpu": cpu}


def main() -> None:
    configure()
    use_simulated_ssh()
    entry = teuthology.provision.maas.MAAS
    answered_by = f"{entry.__module__}.{entry.__qualname__}"
    hooked = bool(getattr(entry, "__teuthology_maas__", False))  # the activation's dispatcher
    ready = {"ready": True, "entry": answered_by, "activated": hooked, "pid": os.getpid()}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        return
    result = drive(JOB["hostnames"])
    result["notes"] = NOTES
    result["entry"] = answered_by
    result["activated"] = hooked
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
