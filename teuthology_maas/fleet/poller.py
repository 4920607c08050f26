"""The shared status poller itself (see `teuthology_maas.fleet` for what it is for)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping

from teuthology_maas.fleet import schedule
from teuthology_maas.fleet.estimate import Bracket, FinishEstimator
from teuthology_maas.fleet.policy import TickPolicy
from teuthology_maas.fleet.reading import MaasReads, OnLearn, PollingClient
from teuthology_maas.fleet.waiter import PollerStats, Waiter
from teuthology_maas.models import Machine, NodeStatus

log = logging.getLogger("teuthology_maas.fleet")

DEFAULT_MIN_INTERVAL = 0.5
DEFAULT_MAX_INTERVAL = 10.0
# MAAS answers a 100-id list in one round trip; beyond that URLs get long and answers slow.
CHUNK_SIZE = 100
# Probes (SSH logins) one process runs at once. Each is a key exchange and an authentication,
# tens of ms of CPU: at N=200 a hundred nodes can be in their finish windows together, and
# a process trying them all at once would spend its whole core logging in. A probe that finds
# every slot taken is tried again a quarter of a probe gap later.
PROBES_IN_FLIGHT = 4

OnChange = Callable[[Machine], None]


class PollerStartError(RuntimeError):
    """The poller's thread could not be started, so a wait() could not begin."""


class StatusPoller(MaasReads):
    """Waits for machines of one MAAS endpoint to reach a status; see the module docstring."""

    def __init__(
        self,
        client: PollingClient,
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        max_interval: float = DEFAULT_MAX_INTERVAL,
        chunk_size: int = CHUNK_SIZE,
        policy: TickPolicy | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size!r}")
        self.client = client
        self.chunk_size = chunk_size
        self.policy = policy or TickPolicy(min_interval, max_interval)
        self.history = FinishEstimator()
        self.stats = PollerStats()
        self._cond = threading.Condition()
        self._waiters: list[Waiter] = []
        self._thread: threading.Thread | None = None
        self._last_poll: float | None = None
        self._last_kick: float | None = None
        self._due: float | None = None
        self._last_error: str | None = None
        self._blind = 0  # waits probing with no finish window known (fleet.schedule)
        self._probe_slots = threading.BoundedSemaphore(PROBES_IN_FLIGHT)
        # Called (in the poller's thread, outside its lock) with what a finished wait taught.
        self.on_learn: OnLearn | None = None

    def __repr__(self) -> str:
        return (
            f"StatusPoller({self.client.base_url!r}, waiting={self.waiting}, "
            f"fast={self.policy.fast:g}s, slow={self.policy.slow:g}s)"
        )

    # -- public -------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiters)

    @property
    def running(self) -> bool:
        with self._cond:
            return self._thread is not None

    def configure(
        self, *, min_interval: float | None = None, max_interval: float | None = None
    ) -> None:
        """Change the fastest/slowest tick (from `poll_min_interval` / `poll_interval`)."""
        with self._cond:
            fast = self.policy.fast if min_interval is None else min_interval
            slow = self.policy.slow if max_interval is None else max_interval
            # A slowest tick below the fastest one means "always the fastest", not an error.
            slow = max(slow, fast)
            if (fast, slow) != (self.policy.fast, self.policy.slow):
                self.policy = TickPolicy(fast, slow, jitter=self.policy.jitter)
                now = time.monotonic()
                schedule.plan(self._waiters, (), self.policy, self.history, now=now, since=now)
                self._next_tick(now)
                self._cond.notify_all()

    def adopt_history(self, history: FinishEstimator) -> None:
        """Take `history` as what is known about finish times from now on (a new leader of the
        host takes the host store's, newer than what it loaded when its process started)."""
        with self._cond:
            # Versions only grow: a window a waiter keeps is computed again (fleet.schedule).
            # Due times stay as they are (a confirmation due at once stays due): each waiter's
            # next one is planned with this history.
            history.version += self.history.version + 1
            self.history = history

    def kick(self) -> None:
        """An action was just taken: poll soon (once, within a near tick of the previous poll;
        a new wait() ticks fast by itself).

        Kicks do not make the whole fleet tick fast: in a 200-node run every node's lock or
        deploy kicks, and each would otherwise cost a burst of polls for everyone. A wait()
        begun right after a kick is taken to time the action itself, and what it sees teaches
        the finish-time estimator."""
        with self._cond:
            now = time.monotonic()
            self._last_kick = now
            earliest = now if self._last_poll is None else self._last_poll + self.policy.near
            schedule.earlier(self._waiters, max(now, earliest))
            self._next_tick(now)
            self._cond.notify_all()

    def wait(
        self,
        system_id: str,
        *,
        targets: Collection[NodeStatus],
        failures: Collection[NodeStatus] = (),
        timeout: float,
        on_change: OnChange | None = None,
        expected_duration: float | None = None,
        check: Callable[[], None] | None = None,
        check_interval: float = 0.5,
        failure_interval: float | None = None,
        probe: Callable[[], bool] | None = None,
        kind: str | None = None,
        started_ago: float = 0.0,
        anchored: bool | None = None,
        seen: Mapping[str, tuple[float, float]] | None = None,
    ) -> Machine:
        """Block until MAAS shows `system_id` in one of `targets` or `failures` and return the
        machine as MAAS showed it; the caller decides what a failure status means.

        `on_change` is called (in the caller's thread) with the machine each time its status or
        status_message changes, the first observation included. Raises `MaasTimeout` when
        `timeout` seconds pass first, `MachineNotFound` when MAAS no longer knows the machine,
        and the client's error when MAAS refuses the poll for good (401/403/400). Transient
        trouble (MAAS unreachable, 5xx, a machine missing from a list answer) is retried until
        the deadline. `check` is called in the caller's thread at least every
        `check_interval` seconds; whatever it raises (or `on_change` raises) ends the wait.

        A long job (a deployment) gives `failure_interval`: MAAS is then read about it only
        that often while it cannot be near its finish (a failure still shows within that
        time). `probe`, called in the caller's thread near the expected finish, is a signal
        that costs MAAS nothing (the node answering over SSH); when it returns True, MAAS is
        read about the machine at once (together with any other confirmation due), and only
        what MAAS shows ends the wait. `kind` names what the wait times ("deploy smithi
        ubuntu/jammy"), so that learned timings are kept apart and can be shared.

        A wait taken over from another poller (host sharing: a follower's wait, or one moved
        when its leader left) gives `started_ago`, how long it has been waiting already, so
        that its finish window and cadence count from when it really began, and `anchored`,
        whether it began right after its action (else: whether a kick just came here), and
        `seen`: when each status_message it was shown appeared, bracketed in seconds from its
        start, so that its finish window is narrowed by the messages it has already shown (a
        wait moved in its last phase would otherwise learn "Rebooting" anew, only now).
        """
        target_set = frozenset(NodeStatus(s) for s in targets)
        failure_set = frozenset(NodeStatus(s) for s in failures)
        if not target_set:
            raise ValueError(f"wait for {system_id}: targets must name at least one status")
        now = time.monotonic()
        waiter = Waiter(
            system_id=system_id,
            targets=target_set,
            failures=failure_set,
            started=now - max(0.0, started_ago),
            deadline=now + max(0.0, timeout),
            expected=expected_duration,
            label=kind,
            calm=failure_interval,
            probe=probe,
        )
        for message, (low, high) in (seen or {}).items():
            waiter.seen[message] = Bracket(low, high)
            waiter.message_first_seen[message] = waiter.started + high
        with self._cond:
            # Learned timings count from the start of the wait; that is the start of the job
            # only when the wait follows the action (and its kick) at once, not for a machine
            # found already busy.
            waiter.anchored = (
                anchored
                if anchored is not None
                else self._last_kick is not None and now - self._last_kick <= self.policy.fast
            )
            waiter.blind = schedule.blind(waiter, self.history)
            self._blind += waiter.blind
            self._waiters.append(waiter)
            # Only the newcomer's wish can move the next poll earlier: no need to ask everyone
            # (a 200-node start would cost 200 x 200 evaluations).
            schedule.plan(
                [waiter], self._waiters, self.policy, self.history, now=now, since=now
            )
            self._next_tick(now)
            try:
                self._ensure_thread(system_id)
            except BaseException:  # any way out: undo, then re-raise
                # Nobody would ever poll for this waiter: leave no trace of it.
                self._remove(waiter)
                self._due = None
                self._next_tick(now)
                raise
            self._cond.notify_all()
        try:
            return self._wait_for(waiter, timeout, on_change, check, check_interval)
        finally:
            with self._cond:
                self._remove(waiter)

    # -- the waiter's side ----------------------------------------------------------------------

    def _wait_for(
        self,
        waiter: Waiter,
        timeout: float,
        on_change: OnChange | None,
        check: Callable[[], None] | None = None,
        check_interval: float = 0.5,
    ) -> Machine:
        while True:
            if check is not None:
                check()
            probe_at = self._maybe_probe(waiter)
            now = time.monotonic()
            remaining = waiter.deadline - now
            if remaining > 0:
                pause = remaining if check is None else min(remaining, check_interval)
                if probe_at is not None:
                    pause = min(pause, max(0.0, probe_at - now))
                waiter.wake.wait(pause)
            with self._cond:
                waiter.wake.clear()
                changes, waiter.changes = waiter.changes, []
                outcome, error = waiter.outcome, waiter.error
                timed_out = (
                    outcome is None and error is None and time.monotonic() >= waiter.deadline
                )
                last_error = self._last_error
            if on_change is not None:
                for machine in changes:
                    on_change(machine)
            if error is not None:
                raise error
            if outcome is not None:
                return outcome
            if timed_out:
                raise waiter.timeout_error(timeout, last_error)

    def _maybe_probe(self, waiter: Waiter) -> float | None:
        """Run the waiter's probe when it is due (in the caller's thread); when it answers,
        ask for one read of the machine at once. Returns when the next probe is due."""
        if waiter.probe is None:
            return None
        with self._cond:
            now = time.monotonic()
            at = schedule.probe_at(
                waiter, self.policy, self.history, now=now, blind=self._blind
            )
        if at is None or at > now:
            return at
        if not self._probe_slots.acquire(blocking=False):
            with self._cond:
                self.stats.probes_deferred += 1
            return now + self.policy.probe_gap / 4
        try:
            answered = bool(waiter.probe())
        except Exception as exc:  # a probe is a hint: failing, it says "not yet"
            log.debug("probe for %s failed: %s", waiter.system_id, exc)
            answered = False
        finally:
            self._probe_slots.release()
        with self._cond:
            now = time.monotonic()
            self.stats.probes += 1
            waiter.probe_last = now
            if answered and waiter.outcome is None and waiter in self._waiters:
                # Only MAAS says whether it is done (the node may answer for another
                # deployment): read it now, with any other confirmation due.
                self._confirm([waiter], now)
            return schedule.probe_at(
                waiter, self.policy, self.history, now=now, blind=self._blind
            )

    def confirm(self, system_id: str) -> bool:
        """Something that costs MAAS nothing says `system_id` may have reached its target:
        read it now (with any other confirmation due), not waiting for its due time. Only
        what MAAS shows ends a wait. False when nobody waits for it. (A waiter's own probe
        does this; a process forwarding waits to another can call it.)"""
        with self._cond:
            waiters = [w for w in self._waiters if w.system_id == system_id]
            if waiters:
                self._confirm(waiters, time.monotonic())
            return bool(waiters)

    def _confirm(self, waiters: list[Waiter], now: float) -> None:
        for waiter in waiters:
            self.stats.confirms += 1
            waiter.confirming = True
            waiter.due = now
        self._next_tick(now)
        self._cond.notify_all()

    # -- the poller's side ----------------------------------------------------------------------

    def _ensure_thread(self, system_id: str) -> None:
        """Start the polling thread unless it runs (caller holds the lock, so the new thread
        cannot look at the waiters before `_thread` says it exists)."""
        if self._thread is not None:
            return
        thread = threading.Thread(
            target=self._run, name=f"maas-poller {self.client.base_url}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as exc:  # at interpreter shutdown, or out of threads
            # `_thread` stays None: the next wait() tries again instead of trusting a thread
            # that never ran.
            raise PollerStartError(
                f"cannot wait for {system_id}: the status poller thread for MAAS at "
                f"{self.client.base_url} could not be started ({type(exc).__name__}: {exc}); "
                f"expected a new thread to be possible (is the interpreter shutting down?)"
            ) from exc
        self._thread = thread

    def _next_tick(self, now: float) -> None:
        """When the next poll is due, from every waiter's due time (caller holds the lock)."""
        floor = None if self._last_poll is None else self._last_poll + self.policy.fast
        self._due = schedule.next_tick(self._waiters, now=now, floor=floor)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._waiters:
                        # Nobody waits: end the thread; the next wait() starts a new one.
                        self._thread = None
                        self._due = None
                        return
                    now = time.monotonic()
                    if self._due is None:
                        self._next_tick(now)
                    assert self._due is not None
                    if self._due <= now:
                        reading = schedule.due_now(self._waiters, now=now, policy=self.policy)
                        if reading:
                            break
                        self._next_tick(now)
                        continue
                    self._cond.wait(self._due - now)
                system_ids = list(dict.fromkeys(w.system_id for w in reading))
                self._last_poll = now
                self._due = None
            try:
                self._poll(system_ids)
            except Exception:  # never let the shared thread die under the waiters
                log.exception("polling MAAS at %s failed unexpectedly", self.client.base_url)
                with self._cond:
                    self.stats.errors += 1
                    self._last_error = "unexpected error in the poller (logged)"
            with self._cond:
                now = time.monotonic()
                for waiter in reading:
                    waiter.confirming = False  # answered or failed: the probe may try again
                left = [w for w in reading if w in self._waiters]
                schedule.plan(
                    left, self._waiters, self.policy, self.history, now=now, since=self._last_poll
                )
                # Any kick or new waiter during the poll set its own due time meanwhile.
                self._next_tick(now)
