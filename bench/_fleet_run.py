"""One benchmark run: a fresh simulator, K child processes (_fleet_child.py) started together,
and what the run measured (fleet_bench.py runs many and compares them).

Measured, per node: added latency = the moment create() returned minus the moment MAAS reached
Deployed, in unscaled seconds. From Deployed to the first request whose answer showed the
machine Deployed (whoever sent it: a status read, a shared poller, a confirmation after an SSH
signal) the process was sleeping, which the run scaled down: that part is multiplied by the
factor. From that request to the return of create() is real work (the read, the lock, the SSH
check, returning): counted as measured. Per run: MAAS requests and machine objects rendered
into answers (the simulator's request log), each child's peak RSS (os.wait4) and the CPU
time each spent provisioning (its own getrusage around the create() calls).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from _fleet_model import DEPLOY_MAX, MACHINE_TYPE, Shape, inventory_for

from teuthology_maas.simulator import ScaledClock, ServerHandle, Simulator
from teuthology_maas.simulator.app import RequestRecord

CHILD = Path(__file__).resolve().parent / "_fleet_child.py"
LAB_DOMAIN = "bench.test"
# Any syntactically valid key: nothing logs in (SSH readiness is read from the node files).
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJbenchmarkbenchmarkbenchmarkbenchmark00 bench"


@dataclass
class Host:
    """A lab host that runs jobs one after another against one MAAS: its home directory
    (whatever the library keeps per host), and the MAAS endpoint and key its processes use,
    the same for every run on it (port 0: any free one, then kept)."""

    home: Path
    api_key: str
    port: int = 0


@dataclass
class Run:
    shape: str
    impl: str
    seed: int
    factor: float
    nodes: int
    processes: int
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # unscaled seconds
    waits: list[float] = field(default_factory=list)  # the scaled part, unscaled seconds
    works: list[float] = field(default_factory=list)  # real seconds, counted 1:1
    naive: list[float] = field(default_factory=list)  # everything x factor
    requests: int = 0
    rendered: int = 0
    kinds: dict[str, list[int]] = field(default_factory=dict)  # kind -> [requests, rendered]
    rss_mb: list[float] = field(default_factory=list)  # peak RSS of each process
    cpu_seconds: float = 0.0  # all processes, while provisioning
    provisioning_real: float = 0.0  # first create() start to last return, real seconds
    wall_real: float = 0.0
    go: tuple[float, float, float] = (0.0, 0.0, 0.0)  # monotonic, simulated, wall at the start
    notes: list[str] = field(default_factory=list)

    @property
    def cpu_percent(self) -> float:
        """CPU over the provisioning's unscaled duration, as % of one core."""
        unscaled = self.provisioning_real * self.factor
        return 100.0 * self.cpu_seconds / unscaled if unscaled else float("nan")

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["errors"] = self.errors[:5]
        data["cpu_percent"] = self.cpu_percent
        return data


def request_kind(record: RequestRecord) -> str:
    path = record.path.removeprefix("/MAAS/api/2.0/")
    if record.system_id:
        resource = "machines/<id>/" if path.startswith("machines/") else path
    else:
        resource = path
    kind = f"{record.method} {resource}"
    if record.op:
        return f"{kind} op={record.op}"
    if record.method == "GET" and resource == "machines/":
        if record.param_list("hostname"):
            return "GET machines/?hostname="
        if record.param_list("id"):
            return "GET machines/?id="
    return kind


class _Child:
    def __init__(self, job: dict[str, Any], env: dict[str, str], stderr: IO[bytes]) -> None:
        self.stderr = stderr
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr, env=env,
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.stdin.write((json.dumps(job) + "\n").encode())
        self.stdin.flush()

    def line(self) -> dict[str, Any] | None:
        """The child's next JSON object; None when it exited first. Anything else it prints
        on stdout (a library's stray print) is skipped."""
        for raw in iter(self.stdout.readline, b""):
            if raw.startswith(b"{"):
                try:
                    message: dict[str, Any] = json.loads(raw)
                except ValueError:
                    continue
                return message
        return None

    def tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-3000:]


def _environment(impl: str, home: Path) -> dict[str, str]:
    # The host: whatever the library keeps per host (files and sockets under $HOME, $XDG_*,
    # $TMPDIR) is shared by the processes given the same home, and by nobody else.
    names = {"XDG_RUNTIME_DIR": "run", "XDG_CACHE_HOME": "cache", "XDG_STATE_HOME": "state",
             "TMPDIR": "tmp"}  # fmt: skip
    dirs = {name: home / short for name, short in names.items()}
    for path in dirs.values():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home), **{k: str(v) for k, v in dirs.items()})
    # Upstream must run teuthology's own MAAS code, not our activation hook's dispatchers.
    env["TEUTHOLOGY_MAAS_ACTIVATE"] = "0" if impl == "upstream" else "1"
    return env


def run(
    shape: Shape, impl: str, seed: int, factor: float, model: str, host: Host | None = None
) -> Run:
    """One run, on `host` (None: a fresh host, endpoint and key for this run only)."""
    result = Run(shape.name, impl, seed, factor, shape.nodes, shape.processes)
    clock = ScaledClock(factor)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        lab = inventory_for(shape, model, seed, host.api_key if host else None)
        sim = Simulator(lab, clock=clock, ssh_root=Path(tmp, "ssh"))
        with _serve(sim, host) as server:
            home = host.home if host else Path(tmp, "h")
            _drive(result, sim, server.api_url, Path(tmp), shape, clock, home)
    return result


def _serve(sim: Simulator, host: Host | None) -> ServerHandle:
    if host is None:
        return sim.serve()
    try:
        server = sim.serve(port=host.port)
    except OSError:  # someone took the port meanwhile: the host's MAAS moves, once
        server = sim.serve()
    host.port = server.port
    return server


def _drive(
    result: Run, sim: Simulator, api_url: str, tmp: Path, shape: Shape, clock: ScaledClock,
    host: Path,
) -> None:  # fmt: skip
    impl, factor = result.impl, result.factor
    env = _environment(impl, host)
    common = {
        "impl": impl, "factor": factor, "api_url": api_url,
        "api_key": sim.api_key("teuthology"), "lab_domain": LAB_DOMAIN,
        "machine_type": MACHINE_TYPE, "ssh_public_key": PUBLIC_KEY,
        "ssh_root": str(tmp / "ssh"),
    }  # fmt: skip
    spawned = time.monotonic()
    # Generous: start-up under load, the longest deploy, upstream's last 60 s sleep, N nodes.
    deadline = 180 + (DEPLOY_MAX + 900) / factor + 0.2 * shape.nodes
    children: list[_Child] = []

    def kill_all() -> None:
        for child in children:
            child.proc.kill()

    watchdog = threading.Timer(deadline, kill_all)
    watchdog.start()
    with contextlib.ExitStack() as files:
        try:
            for hostnames in shape.hostnames():
                stderr = files.enter_context(tempfile.TemporaryFile(dir=tmp))
                children.append(_Child({**common, "hostnames": hostnames}, env, stderr))
            outputs = _start_and_collect(result, shape, children, clock)
        finally:
            watchdog.cancel()
            for child in children:
                if child.proc.returncode is None:
                    child.proc.kill()
                    child.proc.wait()
                for pipe in (child.stdin, child.stdout):
                    with contextlib.suppress(OSError):
                        pipe.close()
    result.wall_real = time.monotonic() - spawned
    log = list(sim.request_log)
    _count_requests(result, log)
    real0, sim0, wall0 = result.go
    deployed = _deployed_at(sim, real0, sim0, factor)
    noticed = _first_shown_deployed(sim, log, real0 - wall0)
    finished = [o for o in outputs if o is not None]
    if finished:
        result.provisioning_real = max(o["ended"] for o in finished) - min(
            o["began"] for o in finished
        )
        result.cpu_seconds = sum(o["cpu"] for o in finished)
        result.notes = list(dict.fromkeys(n for o in finished for n in o["notes"]))
    for node in (n for o in finished for n in o["nodes"]):
        _node_latency(result, node, deployed.get(node["hostname"]), noticed.get(node["hostname"]))


def _start_and_collect(
    result: Run, shape: Shape, children: list[_Child], clock: ScaledClock
) -> list[dict[str, Any] | None]:
    """Wait until every process is ready, start them together, collect their outputs."""
    impl = result.impl
    readies = [child.line() for child in children]
    for child, ready in zip(children, readies, strict=True):
        if ready is None:
            raise RuntimeError(f"{impl} {shape.name}: a process did not start:\n{child.tail()}")
        if ready["activated"] != (impl == "ours"):
            raise RuntimeError(
                f"{impl} {shape.name}: teuthology.provision.maas.MAAS is {ready['entry']}, "
                f"activated={ready['activated']}: not the code this side must run"
            )
    # The same instant on the three clocks: simulated event times and the request log's
    # wall times become monotonic seconds, which the children report.
    result.go = (time.monotonic(), clock.now(), time.time())
    for child in children:
        child.stdin.write(b"go\n")
        child.stdin.close()
    outputs = [child.line() for child in children]
    for child, output in zip(children, outputs, strict=True):
        _, status, usage = os.wait4(child.proc.pid, 0)
        child.proc.returncode = os.waitstatus_to_exitcode(status)
        result.rss_mb.append(usage.ru_maxrss / 1024.0)  # KiB on Linux
        if output is None or child.proc.returncode != 0:
            result.errors.append(
                f"process {child.proc.pid} exited {child.proc.returncode}: {child.tail()}"
            )
    return outputs


def _count_requests(result: Run, log: list[RequestRecord]) -> None:
    result.requests = len(log)
    for record in log:
        result.rendered += record.rendered
        counts = result.kinds.setdefault(request_kind(record), [0, 0])
        counts[0] += 1
        counts[1] += record.rendered


def _deployed_at(sim: Simulator, real0: float, sim0: float, factor: float) -> dict[str, float]:
    """When each machine reached Deployed, in monotonic seconds (the event log keeps the exact
    simulated time; the API's `created` has whole seconds)."""
    deployed: dict[str, float] = {}
    with sim.state.lock:
        for record in sim.state.machines.values():
            for event in sim.state.events.for_node(record.system_id):
                if event.type == "Deployed":
                    deployed[record.hostname] = real0 + (event.created - sim0) / factor
    return deployed


def _first_shown_deployed(
    sim: Simulator, log: list[RequestRecord], wall_to_monotonic: float
) -> dict[str, float]:
    """For each machine, when the first request whose answer showed it Deployed arrived."""
    hostnames = {m.system_id: m.hostname for m in sim.state.machines.values()}
    first: dict[str, float] = {}
    for record in log:
        for system_id, status in record.shown:
            if status == "Deployed":
                hostname = hostnames.get(system_id, system_id)
                moment = record.time + wall_to_monotonic
                first[hostname] = min(first.get(hostname, moment), moment)
    return first


def _node_latency(
    result: Run, node: dict[str, Any], done: float | None, seen: float | None
) -> None:
    if node.get("error"):
        result.errors.append(f"{node['hostname']}: {node['error']}")
        return
    if done is None or seen is None:
        result.errors.append(f"{node['hostname']}: no Deployed event, or no answer showed it")
        return
    result.ok += 1
    factor = result.factor
    wait = max(0.0, seen - done) * factor
    work = node["returned"] - max(seen, done)
    result.waits.append(wait)
    result.works.append(work)
    result.latencies.append(wait + work)
    result.naive.append((node["returned"] - done) * factor)
