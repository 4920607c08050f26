"""One wait() of the shared poller: what it has seen of its machine, and how it ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field

from teuthology_maas.errors import MaasTimeout
from teuthology_maas.fleet.estimate import Bracket
from teuthology_maas.fleet.policy import WaitTiming
from teuthology_maas.models import Machine, NodeStatus


@dataclass
class PollerStats:
    """Counters for logs, tests and the benchmark."""

    ticks: int = 0
    requests: int = 0
    errors: int = 0
    rereads: int = 0
    probes: int = 0  # the waiters' own signals tried (SSH), which cost MAAS nothing
    probes_deferred: int = 0  # due, but as many as a process runs at once were running
    confirms: int = 0  # reads asked for because a probe answered
    unconfirmed: int = 0  # of those, how many MAAS did not confirm


def _identity(machine: Machine) -> tuple[object, ...]:
    return (
        machine.status,
        machine.status_message,
        machine.owner,
        machine.locked,
        tuple(sorted(machine.owner_data.items())),
    )


def labels(statuses: Collection[NodeStatus]) -> str:
    return ", ".join(sorted(s.label for s in statuses)) or "(none)"


@dataclass(eq=False)
class Waiter:
    system_id: str
    targets: frozenset[NodeStatus]
    failures: frozenset[NodeStatus]
    started: float
    deadline: float
    expected: float | None
    wake: threading.Event = field(default_factory=threading.Event)
    changes: list[Machine] = field(default_factory=list)
    last: Machine | None = None
    outcome: Machine | None = None
    error: BaseException | None = None
    message_first_seen: dict[str, float] = field(default_factory=dict)
    # When each status_message appeared, bracketed by polls, relative to `started`.
    seen: dict[str, Bracket] = field(default_factory=dict)
    # Send time of the latest poll that answered about this machine.
    last_sent: float | None = None
    # Whether the wait began right after an action, so its timings can teach the estimator.
    anchored: bool = False
    # What the estimator learns this wait as (a deploy of a machine type, a release ...).
    label: str | None = None
    # A long job: MAAS is read for failures every `calm` seconds (see fleet.policy).
    calm: float | None = None
    # The caller's own free signal that the target is reached (an SSH probe), run in the
    # caller's thread; only ever a reason to read MAAS, never believed by itself.
    probe: Callable[[], bool] | None = None
    # When this machine is next read (monotonic), and the delay that was wished for it.
    due: float | None = None
    interval: float = 0.0
    # A probe answered: read MAAS at once. `unconfirmed`: how often MAAS then disagreed.
    confirming: bool = False
    unconfirmed: int = 0
    probe_last: float | None = None
    # Probing from the start, nothing being known yet about when it may finish (the first
    # few deployments of their kind in a process with no learned timings: see fleet.schedule).
    blind: bool = False
    # The probing window (fleet.schedule.probe_window) and what it was computed from.
    window: tuple[float, float] | None = None
    window_key: tuple[object, ...] | None = None

    @property
    def kind(self) -> Hashable:
        return self.label if self.label is not None else self.targets

    def timing(self) -> WaitTiming:
        message = self.last.status_message if self.last is not None else None
        since = self.message_first_seen.get(message) if message is not None else None
        return WaitTiming(
            started=self.started,
            kind=self.kind,
            expected=self.expected,
            message=message,
            message_since=since,
            seen=self.seen,
            calm=self.calm,
            probing=self.probe is not None,
        )

    def observe(self, machine: Machine, sent: float, received: float) -> Bracket | None:
        """Take in what a poll sent at `sent` and answered at `received` showed. Returns when
        the target was reached (relative to `started`) if it just was and that is known; sets
        `outcome` when the wait is over. Caller holds the poller's lock."""
        previous = self.last
        # A change of hands (owner, lock, owner data) counts too: the waiter may be watching
        # for another process taking the machine over.
        changed = previous is None or _identity(previous) != _identity(machine)
        self.last = machine
        message = machine.status_message
        if message is not None and message not in self.message_first_seen:
            self.message_first_seen[message] = received
            if self.last_sent is not None:
                # New since the previous poll, which MAAS answered after it was sent.
                self.seen[message] = Bracket(self.last_sent - self.started, received - self.started)
        if changed:
            self.changes.append(machine)
        reached: Bracket | None = None
        if machine.status in self.targets and self.last_sent is not None:
            # (Not narrowed by the probes that found nothing: a node may answer over SSH a
            # little after MAAS says Deployed, and a bracket too narrow misleads the model.)
            reached = Bracket(self.last_sent - self.started, received - self.started)
        if self.confirming:
            self.confirming = False
            if machine.status not in self.targets:
                self.unconfirmed += 1
        self.last_sent = sent
        if machine.status in self.targets or machine.status in self.failures:
            self.outcome = machine
            self.wake.set()
        elif changed:
            self.wake.set()
        return reached

    def timeout_error(self, timeout: float, last_error: str | None) -> MaasTimeout:
        last = self.last
        name = last.describe() if last is not None else self.system_id
        if last is None:
            seen = "MAAS never answered about it"
            last_status = None
        else:
            seen = f"MAAS last showed '{last.status_name}'"
            if last.status_message:
                seen += f" ({last.status_message})"
            last_status = last.status_name
        text = f"{name} did not reach {labels(self.targets)} within {timeout:g} s: {seen}"
        if last_error is not None:
            text += f"; the last poll of MAAS failed: {last_error}"
        return MaasTimeout(
            text,
            last_status=last_status,
            machine=last.hostname if last is not None else None,
            system_id=self.system_id,
            maas_message=last.status_message if last is not None else None,
        )
