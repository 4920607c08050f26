"""`reconcile --apply`: release the leaks, a few at a time, saying what each one is doing.

Each release goes through the provisioner (so its ownership rules hold) after paddles is read
again (a node locked since the check is in use, not leaked), and undoes only the deployment
the check found leaked (its token): one made since is someone's new job, refused untouched.
At most `MAX_PARALLEL` releases run at once; one watcher polls all of them in one request and
prints every status change, so a two-erase apply is not half a minute of silence."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

from teuthology_maas.cli._progress import format_elapsed, stamp
from teuthology_maas.cli._reconcile import Finding
from teuthology_maas.errors import MaasError
from teuthology_maas.teuthology.paddles import PaddlesReader

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.endpoint import Endpoint
    from teuthology_maas.maas.client import MaasClient

# Releases in flight at once: enough to overlap erases, few enough not to load MAAS (the
# client's own action cap, max_concurrent_actions, still applies below this).
MAX_PARALLEL = 4


class NodeLines:
    """Plain progress lines for several machines at once: `[ 0:12] smithi003: Disk erasing`."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def say(self, hostname: str, text: str) -> None:
        with self._lock:
            self._stream.write(f"{stamp(self.elapsed)} {hostname}: {text}\n")
            self._stream.flush()


class _StatusWatcher:
    """One thread, one request per tick for every machine being released."""

    def __init__(self, client: MaasClient, system_ids: Sequence[str], lines: NodeLines) -> None:
        self._client = client
        self._ids = list(system_ids)
        self._lines = lines
        self._seen: dict[str, tuple[str, str | None]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconcile-watch", daemon=True)

    def __enter__(self) -> _StatusWatcher:
        self._poll(report=False)  # what they are now is already in the findings
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._poll(report=True)

    def _poll(self, *, report: bool) -> None:
        try:
            machines = self._client.list_machines(id=self._ids)
        except MaasError:
            return  # a missed tick only delays a line
        for machine in machines:
            state = (machine.status_name, machine.status_message)
            if self._seen.get(machine.system_id) == state:
                continue
            self._seen[machine.system_id] = state
            if report:
                shown = f" ({state[1]})" if state[1] and state[1] != state[0] else ""
                self._lines.say(machine.hostname, f"{state[0]}{shown}")


def apply_leaks(
    cfg: MaasConfig,
    endpoint: Endpoint,
    watch_client: MaasClient,
    paddles: PaddlesReader,
    findings: list[Finding],
    stream: IO[str],
) -> bool:
    """Release every leak through the provisioner, in parallel (bounded), with a line per
    step. Sets each leak's `action`; returns True when any release failed."""
    leaks = [f for f in findings if f.kind == "leak"]
    if not leaks:
        return False
    lines = NodeLines(stream)
    failures: list[bool] = []

    def release(finding: Finding) -> None:
        failures.append(_release_one(cfg, endpoint, paddles, finding, lines))

    with (
        _StatusWatcher(watch_client, [f.system_id for f in leaks], lines),
        ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(leaks))) as pool,
    ):
        list(pool.map(release, leaks))
    return any(failures)


def _release_one(
    cfg: MaasConfig, endpoint: Endpoint, paddles: PaddlesReader, finding: Finding,
    lines: NodeLines,
) -> bool:
    """Release one leak; True when it failed."""
    from teuthology_maas.node.ownership import Authority
    from teuthology_maas.node.provisioner import MaasProvisioner

    name = finding.hostname
    node_name = str(finding.extra.get("paddles_name") or cfg.fqdn(name))
    try:
        # paddles may have locked it since we looked: then it is in use, not leaked
        if paddles.node(node_name).locked:
            finding.action = "skipped: locked in paddles since the check"
            lines.say(name, "skipped: locked in paddles since the check")
            return False
    except MaasError as exc:
        finding.action = f"skipped: cannot re-check paddles: {exc}"
        lines.say(name, finding.action)
        return True
    lines.say(name, f"releasing ({finding.status}, unlocked in paddles)")
    started = time.monotonic()
    try:
        # Only the deployment found leaked: one that appeared since is someone's new job.
        authority = Authority.exactly(finding.extra.get("deployment"))
        MaasProvisioner(name, config=cfg, endpoint=endpoint).release(authority=authority)
    except MaasError as exc:
        finding.action = f"release failed: {type(exc).__name__}: {exc}"
        lines.say(name, f"release FAILED after {format_elapsed(time.monotonic() - started)}: "
                  f"{type(exc).__name__}")
        return True
    finding.action = "released"
    lines.say(name, f"released in {format_elapsed(time.monotonic() - started)}")
    return False


def mark_quarantined_down(url: str, findings: list[Finding], timeout: float) -> bool:
    """Finish a quarantine in paddles (down; the quarantine as description when nobody holds
    the node), for the quarantined machines paddles knows; True when a write failed."""
    from teuthology_maas.teuthology.paddles_nodes import mark_down

    failed = False
    for finding in findings:
        name = finding.extra.get("paddles_name")
        if finding.kind != "quarantined" or not name:
            continue
        try:
            finding.action = mark_down(url, str(name), str(finding.extra["quarantine"]),
                                       timeout=timeout)
        except (MaasError, ValueError) as exc:
            finding.action = f"paddles not updated: {exc}"
            failed = True
    return failed


def _plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def summary(findings: Sequence[Finding], *, checked: int, dry_run: bool) -> str:
    """The closing line in plain words: `6 machines checked: 2 leaks released, 1 drift`."""
    parts: list[str] = []
    leaks = [f for f in findings if f.kind == "leak"]
    if leaks and dry_run:
        parts.append(_plural(len(leaks), "leak"))
    elif leaks:
        released = sum(1 for f in leaks if f.action == "released")
        skipped = sum(1 for f in leaks if (f.action or "").startswith("skipped: locked"))
        failed = len(leaks) - released - skipped
        for count, words in ((released, "released"), (failed, "NOT released"),
                             (skipped, "skipped (locked again in paddles)")):
            if count:
                parts.append(f"{_plural(count, 'leak')} {words}")
    named = {"kept": ("machine kept for debugging", "machines kept for debugging"),
             "drift": ("drift", "drifts"), "stuck": ("stuck machine", "stuck machines"),
             "quarantined": ("quarantined machine", "quarantined machines")}
    for kind, (one, many) in named.items():
        count = sum(1 for f in findings if f.kind == kind)
        if count:
            parts.append(_plural(count, one, many))
    head = f"{_plural(checked, 'machine')} checked: "
    if dry_run:
        tail = " (dry run: nothing changed; --apply releases the leaks)" if leaks else \
            " (dry run: nothing changed)"
    else:
        tail = ""
    return head + ", ".join(parts) + tail


def count_summary(findings: Sequence[Finding]) -> dict[str, Any]:
    """The JSON counts: one per kind that needs attention (kept machines are intended)."""
    return {k: sum(1 for f in findings if f.kind == k)
            for k in ("leak", "drift", "stuck", "quarantined")}
