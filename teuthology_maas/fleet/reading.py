"""How the shared poller reads MAAS and hands the answers to its waiters (mixed into
`fleet.poller.StatusPoller`): one list request per chunk of due machines, a machine missing
from a list read on its own before anyone believes it is gone, transient trouble noted and
retried, permanent refusals ending the affected waits, and what finished waits teach handed to
the estimator (and, outside the lock, to whoever saves it: the host store)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import requests

from teuthology_maas.errors import (
    MaasAuthError,
    MaasBadRequest,
    MaasError,
    MaasNotFound,
    MaasPermissionDenied,
    MachineNotFound,
)
from teuthology_maas.fleet.estimate import Bracket, FinishEstimator
from teuthology_maas.fleet.waiter import PollerStats, Waiter
from teuthology_maas.models import Machine

log = logging.getLogger("teuthology_maas.fleet")

# Errors that end every wait on the chunk at once: waiting cannot make them go away.
PERMANENT_ERRORS: tuple[type[MaasError], ...] = (
    MaasAuthError,
    MaasPermissionDenied,
    MaasBadRequest,
)

# Told each time a wait begun right after its action reached its target: (kind, when it
# finished, the status messages it showed), all relative to the start of the wait.
OnLearn = Callable[[str, Bracket, dict[str, Bracket]], None]


class PollingClient(Protocol):
    """The part of `MaasClient` the poller uses."""

    @property
    def base_url(self) -> str: ...

    def list_machines(self, *, id: Sequence[str]) -> list[Machine]: ...

    def get_machine(self, system_id: str) -> Machine: ...


class MaasReads:
    """The reading half of the poller; the poller's lock guards everything here."""

    client: PollingClient
    chunk_size: int
    history: FinishEstimator
    stats: PollerStats
    on_learn: OnLearn | None
    _cond: threading.Condition
    _waiters: list[Waiter]
    _last_error: str | None
    _blind: int

    def _remove(self, waiter: Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._blind -= waiter.blind

    def _poll(self, system_ids: list[str]) -> None:
        self.stats.ticks += 1
        for start in range(0, len(system_ids), self.chunk_size):
            chunk = system_ids[start : start + self.chunk_size]
            sent = time.monotonic()
            try:
                self.stats.requests += 1
                answer = self.client.list_machines(id=chunk)
            except PERMANENT_ERRORS as exc:
                self._fail(chunk, exc)
                continue
            except (MaasError, requests.RequestException, OSError) as exc:
                self._note_error(exc, chunk)
                continue
            wanted = set(chunk)
            self._deliver(
                {m.system_id: m for m in answer if m.system_id in wanted}, sent, time.monotonic()
            )
            for system_id in chunk:
                if not any(m.system_id == system_id for m in answer):
                    self._reread(system_id)

    def _reread(self, system_id: str) -> None:
        """A machine missing from a list answer (MAAS under load answers an empty list now and
        then): ask for it alone before believing it is gone."""
        self.stats.rereads += 1
        self.stats.requests += 1
        sent = time.monotonic()
        try:
            machine = self.client.get_machine(system_id)
        except MaasNotFound as exc:
            gone = MachineNotFound(
                f"machine {system_id} disappeared from MAAS while we waited for it "
                f"(MAAS said: {exc.maas_message or exc.message})",
                system_id=system_id,
                http_status=404,
            )
            self._fail([system_id], gone)
        except PERMANENT_ERRORS as exc:
            self._fail([system_id], exc)
        except (MaasError, requests.RequestException, OSError) as exc:
            self._note_error(exc, [system_id])
        else:
            self._deliver({system_id: machine}, sent, time.monotonic())

    def _note_error(self, exc: BaseException, system_ids: Sequence[str]) -> None:
        text = f"{type(exc).__name__}: {exc}"
        log.warning(
            "polling %d machine(s) at %s failed, will retry: %s",
            len(system_ids),
            self.client.base_url,
            text,
        )
        with self._cond:
            self.stats.errors += 1
            self._last_error = text

    def _fail(self, system_ids: Sequence[str], exc: BaseException) -> None:
        wanted = set(system_ids)
        with self._cond:
            self.stats.errors += 1
            for waiter in [w for w in self._waiters if w.system_id in wanted]:
                waiter.error = exc
                self._remove(waiter)
                waiter.wake.set()

    def _deliver(self, machines: dict[str, Machine], sent: float, received: float) -> None:
        """Hand what one request answered to the waiters; `sent`/`received` bracket when MAAS
        looked."""
        learned: list[tuple[str, Bracket, dict[str, Bracket]]] = []
        with self._cond:
            if machines:
                self._last_error = None
            for waiter in list(self._waiters):
                machine = machines.get(waiter.system_id)
                if machine is None:
                    continue
                reached = waiter.observe(machine, sent, received)
                if reached is not None and waiter.anchored:
                    self.history.learn(waiter.kind, reached, waiter.seen)
                    if waiter.label is not None:
                        learned.append((waiter.label, reached, dict(waiter.seen)))
                if waiter.outcome is not None:
                    self._remove(waiter)
        if self.on_learn is not None:
            for kind, reached, seen in learned:
                try:
                    self.on_learn(kind, reached, seen)
                except Exception:  # saving what was learned must never break a wait
                    log.exception("saving learned timings failed")
