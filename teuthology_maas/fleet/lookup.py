"""Hostname lookups of one MAAS endpoint, coalesced (see `teuthology_maas.fleet`).

teuthology's lock-many starts one greenlet per node, and each node's provisioner first looks its
machine up by hostname: without coalescing that is one `GET machines/?hostname=...` per node at
the same moment. Here the first caller sends its request at once (a lone node waits for nobody),
and every caller that arrives while a lookup request is in flight joins the next batch, sent as
one `GET machines/?hostname=a&hostname=b...` (chunked) as soon as the request in flight has been
answered. Each caller gets back exactly the machines MAAS listed under its own hostname, so "no
machine" and "two machines" are seen per hostname as a lone request would have seen them.

Only `threading` primitives, which gevent's monkey-patching makes cooperative.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from teuthology_maas.errors import MaasBadRequest
from teuthology_maas.models import Machine

# Like the poller's id lists: MAAS answers 100 names in one round trip.
LOOKUP_CHUNK_SIZE = 100


class LookupClient(Protocol):
    """The part of `MaasClient` a hostname lookup uses."""

    @property
    def base_url(self) -> str: ...

    def list_machines(self, *, hostname: Sequence[str]) -> list[Machine]: ...


@dataclass
class LookupStats:
    """Counters for logs, tests and the benchmark."""

    lookups: int = 0  # callers served
    requests: int = 0  # list requests sent for them
    batches: int = 0  # batches sent (one or more requests each)


@dataclass(eq=False)
class _Batch:
    """Hostnames waiting to be asked about together, and what MAAS answered."""

    # Callers per hostname, so that an interrupted caller can take its name back out.
    wanted: Counter[str] = field(default_factory=Counter)
    sent: bool = False
    done: bool = False
    answers: dict[str, list[Machine]] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)


class HostnameLookups:
    """Coalesces concurrent hostname lookups against one MAAS endpoint and user."""

    def __init__(self, *, chunk_size: int = LOOKUP_CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size!r}")
        self.chunk_size = chunk_size
        self.stats = LookupStats()
        self._cond = threading.Condition()
        # The batch whose request is in flight, and the one that fills up meanwhile.
        self._in_flight: _Batch | None = None
        self._pending: _Batch | None = None

    def __repr__(self) -> str:
        return f"HostnameLookups(waiting={self.waiting}, in_flight={self.in_flight})"

    @property
    def waiting(self) -> int:
        """Callers queued for the next batch (not yet sent)."""
        with self._cond:
            return sum(self._pending.wanted.values()) if self._pending is not None else 0

    @property
    def in_flight(self) -> bool:
        with self._cond:
            return self._in_flight is not None

    def machines(self, client: LookupClient, hostname: str) -> list[Machine]:
        """Every machine MAAS lists with exactly this short `hostname` (possibly none, possibly
        several: deciding what that means is the caller's job).

        The request goes out through `client` when this caller ends up sending the batch;
        callers coalesced into one batch must share the endpoint and MAAS user, which is what
        `fleet.hostname_lookups_for()` guarantees. A failed request raises its error in every
        caller of that batch (they would each spend the client's retry budget on the same
        outage in turn otherwise)."""
        while True:
            batch, sender = self._join(hostname)
            if sender:
                self._send(client, batch)
            else:
                with self._cond:
                    while not batch.done:
                        self._cond.wait()
            if hostname in batch.errors:
                raise batch.errors[hostname]
            if hostname in batch.answers:
                with self._cond:
                    self.stats.lookups += 1
                return list(batch.answers[hostname])
            # The sender was interrupted (KeyboardInterrupt, GreenletExit): ask again.

    # -- internals ------------------------------------------------------------------------------

    def _join(self, hostname: str) -> tuple[_Batch, bool]:
        """Queue `hostname` and wait until its batch may be sent. Returns the batch and whether
        this caller sends it (the batch is then no longer open to newcomers)."""
        with self._cond:
            if self._pending is None:
                self._pending = _Batch()
            batch = self._pending
            batch.wanted[hostname] += 1
            try:
                # Nothing in flight: go at once. Otherwise the first of the batch to see the
                # request in flight answered sends the batch.
                while self._in_flight is not None and not batch.sent:
                    self._cond.wait()
            except BaseException:  # any way out of the wait (Ctrl-C, GreenletExit): undo, re-raise
                if not batch.sent:  # interrupted while queued: nobody must ask for it in vain
                    batch.wanted[hostname] -= 1
                    if batch.wanted[hostname] <= 0:
                        del batch.wanted[hostname]
                    if not batch.wanted and self._pending is batch:
                        self._pending = None
                raise
            if batch.sent:
                return batch, False
            batch.sent = True
            self._pending = None
            self._in_flight = batch
            return batch, True

    def _send(self, client: LookupClient, batch: _Batch) -> None:
        """Ask MAAS about every hostname of `batch` (this caller's job alone: the batch is
        closed) and wake its callers."""
        answers: dict[str, list[Machine]] = {}
        errors: dict[str, Exception] = {}
        names = list(batch.wanted)
        try:
            with self._cond:
                self.stats.batches += 1
            for start in range(0, len(names), self.chunk_size):
                chunk = names[start : start + self.chunk_size]
                try:
                    found = self._list(client, chunk)
                except MaasBadRequest as exc:
                    if len(chunk) == 1:
                        errors[chunk[0]] = exc
                        continue
                    # One malformed name must not fail the others that shared its request.
                    for name in chunk:
                        try:
                            answers[name] = self._list(client, [name])
                        except Exception as exc:  # handed to that name's caller, who raises it
                            errors[name] = exc
                    continue
                for name in chunk:
                    answers[name] = [m for m in found if m.hostname == name]
        except Exception as exc:  # each caller raises it: whatever it is, it is their answer
            # MAAS unreachable or refusing: the rest of the batch would meet the same answer.
            for name in names:
                if name not in answers:
                    errors.setdefault(name, exc)
        finally:
            with self._cond:
                batch.answers, batch.errors = answers, errors
                batch.done = True
                self._in_flight = None
                self._cond.notify_all()

    def _list(self, client: LookupClient, hostnames: list[str]) -> list[Machine]:
        with self._cond:
            self.stats.requests += 1
        return client.list_machines(hostname=hostnames)
