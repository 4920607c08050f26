"""The multi-process race lab and its audit (tests/test_concurrency_processes.py).

A simulator served over HTTP on loopback (scaled clock), a paddles double, and racer
processes (tests/_racer.py): separate OS processes, each with its own clients, pollers and
threads, all using the same MAAS API key as a lab's teuthology workers do. The audit reads
what MAAS itself recorded: the request log, in the order the region applied the requests
(`seq`), with each machine's state just before each request (`before`), and who sent it (the
attempt token or actor every comment carries).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests._waiting import wait_until
from tests.fixtures_reliability import TEST_PUBLIC_KEY
from teuthology_maas.node.ownership import TOKEN_KEY, comment_actor, parse_tag
from teuthology_maas.simulator import Inventory, ScaledClock, Simulator
from teuthology_maas.testing.lockserver import LockServer

REPO = Path(__file__).resolve().parent.parent
USER = "teuthology"
# Simulated seconds per real second, and the simulated length of each asynchronous step: a
# deployment takes 0.6 s of real time, a stagger of 10 simulated seconds 1 s.
TIME_FACTOR = 10.0
TIMINGS = {
    "deploying": 6.0,
    "releasing": 1.0,
    "disk_erasing": 2.0,
    "disk_erasing_quick": 2.0,
    "disk_erasing_secure": 2.0,
    "aborting": 1.0,
    "power": 0.5,
    "bmc_failure": 2.0,
}
BOOT_TIME = 0.3  # real seconds between Deployed and SSH answering (simulated SSH)
HELD_STATUSES = frozenset({"Allocated", "Deploying", "Deployed", "Failed deployment"})


@dataclass
class Racer:
    proc: subprocess.Popen[str]
    pid: int
    lines: queue.Queue[dict[str, Any]]


@dataclass
class Result:
    """What one command in a racer process ended with."""

    id: int
    kind: str
    node: str
    actor: str
    ok: bool
    started: float
    ended: float
    error: str = ""
    tokens: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def token(self) -> str | None:
        return self.tokens[0] if self.tokens else None


class RaceLab:
    def __init__(self, tmp: Path, nodes: int) -> None:
        self.tmp = tmp
        self.hostnames = [f"race{i:03d}" for i in range(1, nodes + 1)]
        (tmp / "ssh").mkdir()
        inventory = {
            "machines": [{"hostname": h, "tags": ["race"]} for h in self.hostnames],
            "timings": TIMINGS,
        }
        self.sim = Simulator(
            Inventory.from_mapping(inventory),
            clock=ScaledClock(TIME_FACTOR),
            ssh_root=tmp / "ssh",
        )
        self.server = self.sim.serve()
        self.paddles = LockServer(
            [{"name": self.fqdn(h), "machine_type": "race"} for h in self.hostnames]
        )
        self.paddles_handle = self.paddles.serve()
        self.racers: list[Racer] = []
        self._logs: list[Any] = []
        self._ids = 0

    def fqdn(self, hostname: str) -> str:
        return f"{hostname}.race.test"

    def section(self) -> dict[str, Any]:
        return {
            "api_url": self.server.url,
            "api_key": self.sim.api_key(USER),
            "machine_types": ["race"],
            "lab_domain": "race.test",
            "ssh_keys": [TEST_PUBLIC_KEY],
            "erase": "none",
            "deploy_timeout": 60,
            "release_timeout": 60,
            "abort_timeout": 30,
            "ssh_timeout": 30,
            "poll_interval": 0.05,
            "poll_min_interval": 0.02,
            "http_timeout": 10,
        }

    def config_file(self) -> Path:
        """A teuthology config file for the CLI (maas: section and lock_server)."""
        path = self.tmp / "teuthology.yaml"
        document = {"lock_server": self.paddles_handle.url, "maas": self.section()}
        path.write_text(json.dumps(document))
        return path

    def start(self, count: int) -> list[Racer]:
        setup = json.dumps(
            {"maas": self.section(), "ssh_root": str(self.tmp / "ssh"), "boot_time": BOOT_TIME}
        )
        for _ in range(count):
            name = f"racer{len(self.racers)}"
            env = {**os.environ, "PYTHONPATH": str(REPO), "TEUTHOLOGY_OWNER": name}
            log = (self.tmp / f"racer{len(self.racers)}.log").open("w")
            self._logs.append(log)
            proc = subprocess.Popen(
                [sys.executable, str(REPO / "tests" / "_racer.py"), setup],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=REPO,
                env=env,
            )
            lines: queue.Queue[dict[str, Any]] = queue.Queue()
            threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
            self.racers.append(Racer(proc, proc.pid, lines))
        for racer in self.racers[-count:]:
            ready = racer.lines.get(timeout=60)
            assert ready.get("ready") == racer.pid, ready
        return self.racers[-count:]

    def run(
        self, plan: Iterable[tuple[int, dict[str, Any]]], *, timeout: float = 120.0
    ) -> list[Result]:
        """Send each (racer index, command) and collect every result. Commands carry `delay`
        (simulated seconds after a common start) which becomes an absolute wall-clock `at`."""
        start = time.time() + 0.5
        sent: dict[int, dict[str, Any]] = {}
        for index, command in plan:
            self._ids += 1
            command = {**command, "id": self._ids}
            command["at"] = start + command.pop("delay", 0.0) / TIME_FACTOR
            sent[self._ids] = {**command, "racer": index}
            proc = self.racers[index].proc
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        results: list[Result] = []
        deadline = time.monotonic() + timeout
        pending = set(sent)
        while pending:
            for racer in self.racers:
                try:
                    raw = racer.lines.get(timeout=0.05)
                except queue.Empty:
                    continue
                command = sent[raw["id"]]
                assert "traceback" not in raw, raw.get("traceback")
                results.append(
                    Result(
                        id=raw["id"],
                        kind=raw["kind"],
                        node=command.get("node") or command.get("target", ""),
                        actor=command.get("owner") or f"racer{command['racer']}",
                        ok=bool(raw.get("ok")),
                        started=raw["started"],
                        ended=raw["ended"],
                        error=raw.get("error", "") or raw.get("stderr", ""),
                        tokens=tuple(raw.get("tokens", ())),
                        raw=raw,
                    )
                )
                pending.discard(raw["id"])
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"racers never answered {[sent[i] for i in sorted(pending)]}\n{self.stacks()}"
                )
        return results

    def stacks(self) -> str:
        """Every racer's threads, as faulthandler shows them, and the end of its log."""
        for racer in self.racers:
            if racer.proc.poll() is None:
                racer.proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        return "\n".join(
            f"--- racer{i} ---\n{(self.tmp / f'racer{i}.log').read_text()[-12000:]}"
            for i in range(len(self.racers))
        )

    def settle(self) -> None:
        """Wait until no machine is mid-release (clean-ups that requested one finish it)."""
        wait_until(
            lambda: all(
                m["status_name"] not in ("Releasing", "Disk erasing") for m in self.sim.machines()
            ),
            timeout=30,
            failure="machines never settled",
        )

    def close(self) -> None:
        for racer in self.racers:
            if racer.proc.poll() is None and racer.proc.stdin is not None:
                try:
                    racer.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                    racer.proc.stdin.flush()
                except OSError:
                    pass
        for racer in self.racers:
            try:
                racer.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                racer.proc.kill()
                racer.proc.wait()
        for log in self._logs:
            log.close()
        self.paddles_handle.stop()
        self.server.stop()


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[dict[str, Any]]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            lines.put(json.loads(line))


# -- the audit -----------------------------------------------------------------------------------


def sender(record: Any) -> str | None:
    """Who sent a request: the attempt token its comment (or stamp) carries, else the actor
    its comment names (`teuthology-maas release for racer1`)."""
    tag = parse_tag(record.param("comment"))
    if tag is not None and tag.deployment:
        return tag.token
    if record.op == "set_owner_data":
        return record.param(TOKEN_KEY) or None
    actor = comment_actor(record.param("comment"))
    return actor[1] if actor else None


def applied_posts(sim: Any, system_id: str) -> list[Any]:
    """The POSTs MAAS applied to one machine, in the order it applied them."""
    found = [
        r
        for r in list(sim.request_log)
        if r.method == "POST"
        and r.status is not None
        and r.status < 300
        and (r.system_id or r.param("system_id")) == system_id
    ]
    return sorted(found, key=lambda r: r.seq or 0)


# What an attempt may find it has sent onto a machine taken over in the same instant: the read
# before a request and the request are two calls (MAAS has no conditional request), so a deploy
# or lock already on its way lands on the taker's claim. Neither undoes anything; the attempt
# sees the taker's token in MAAS's answer and stops there, and the taker aborts or unlocks it.
IN_FLIGHT_OVERLAP = frozenset({"deploy", "lock"})


def foreign_touches(
    sim: Any, hostname: str, tokens: Iterable[str], *, claims: bool = False
) -> list[str]:
    """Requests of a create() attempt (its token) applied while the machine carried another
    attempt's deployment: a clean-up, abort, release, unlock or deploy on a deployment that was
    not its own. An unstamped machine held by us belongs to whoever acquired it last. With
    `claims` (attempts that may take over), the taking over itself (unlock, then stamp) is
    allowed, and so is one request in flight during a takeover (see IN_FLIGHT_OVERLAP) when it
    is the displaced attempt's last; those are listed in `overlaps[hostname]`."""
    ours = set(tokens)
    problems: list[str] = []
    acquired_by: str | None = None
    records = applied_posts(sim, sim.system_id(hostname))
    last_of = {sender(r): r.seq for r in records}
    for record in records:
        who = sender(record)
        before = record.before or {}
        stamped = (before.get("owner_data") or {}).get(TOKEN_KEY)
        held = before.get("owner") == USER and before.get("status") not in ("Ready", "New")
        if record.op == "allocate" or (record.op == "deploy" and before.get("status") == "Ready"):
            acquired_by = who
        if who not in ours or record.op == "allocate":
            continue
        owner = stamped or (acquired_by if held else None)
        if owner in (None, who):
            continue
        if claims and record.op in ("unlock", "set_owner_data"):
            continue
        if claims and record.op in IN_FLIGHT_OVERLAP and last_of.get(who) == record.seq:
            overlaps.setdefault(hostname, []).append(f"{record.op} by {who[:12]}")
            continue
        problems.append(
            f"{hostname}: {record.op} by {who[:12]} (seq {record.seq}) on {before.get('status')} "
            f"carrying {owner[:12]}"
        )
    return problems


overlaps: dict[str, list[str]] = {}


def touches_after(sim: Any, hostname: str, when: float, allowed: Iterable[str]) -> list[str]:
    """State-changing requests applied to the machine that started after `when` by anyone
    but `allowed` senders."""
    keep = set(allowed)
    return [
        f"{hostname}: {r.op} by {sender(r)} at +{r.time - when:.2f}s"
        for r in applied_posts(sim, sim.system_id(hostname))
        if r.time > when and sender(r) not in keep
    ]


def final_state(sim: Any, hostname: str) -> tuple[str, bool, str | None, str | None]:
    machine = sim.machine(hostname)
    data = machine.get("owner_data") or {}
    return (
        machine["status_name"],
        bool(machine["locked"]),
        machine.get("owner"),
        data.get(TOKEN_KEY),
    )


def classify(error: str) -> str:
    """The race a failed create() lost, from the words of its error."""
    text = error
    for needle, label in (
        ("No machine with system ID", "lost the allocate"),
        ("refusing to redeploy", "refused: another deployment holds it"),
        ("stopped at wait", "stood down in a status wait"),
        ("stopped at verify", "stood down in the SSH wait"),
        ("stopped at hand over", "stood down at hand-over"),
        ("stopped at lock", "stood down at lock"),
        ("stopped at deploy", "stood down at deploy"),
        ("stopped at set_owner_data", "stood down at stamp"),
        ("was aborted by", "aborted by another actor"),
        ("was released by", "released under it"),
        ("was released (", "released under it"),
        ("was unlocked in MAAS", "unlocked under it"),
        ("taken over", "taken over"),
    ):
        if needle in text:
            return label
    return "other: " + text[:80]
