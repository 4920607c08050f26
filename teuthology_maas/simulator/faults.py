"""Fault injection: scripted failures, from the inventory (`faults:`) or at run time.

Two families:

* request faults change how one HTTP request is answered: `error` (any status, e.g. 503 with
  Retry-After, 409 with or without it, 500, 504), `slow` (answer late), `drop` (close the
  connection without answering, `when: before` or `after` the state change is applied);
* behaviour faults change what a machine does after an accepted operation: `deploy_fail`,
  `deploy_stuck`, `deploy_revert` (BMC failure, back to Allocated), `missing_image`,
  `release_stuck`, `release_fail`, `erase_fail`.

Each fault matches on any of method, path (a glob under /MAAS/api/2.0/), op, machine
(hostname or system_id) and user; fires `times` times (unlimited when absent) after skipping
the first `skip` matches, each time with `probability`.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

REQUEST_KINDS = frozenset({"error", "slow", "drop"})
BEHAVIOUR_KINDS: dict[str, str] = {
    "deploy_fail": "deploy",
    "deploy_stuck": "deploy",
    "deploy_revert": "deploy",
    "missing_image": "deploy",
    "release_stuck": "release",
    "release_fail": "release",
    "erase_fail": "release",
}
KINDS = REQUEST_KINDS | set(BEHAVIOUR_KINDS)

_DEFAULT_BODIES = {
    409: "Conflict: the machine is being modified by another request.",
    500: "Internal server error (injected fault).",
    502: "Bad Gateway",
    503: "Unable to connect to any rack controller; no connections available.",
    504: "Timed out waiting for the rack controller to answer.",
}
_CONFLICT_HTML = (
    "<!DOCTYPE html>\n<html><head><title>409 Conflict</title></head><body>"
    "<h1>Conflict</h1><p>The request could not be completed because of a database conflict; "
    "please retry.</p></body></html>\n"
)


@dataclass
class Fault:
    kind: str
    method: str | None = None
    path: str | None = None
    op: str | None = None
    machine: str | None = None
    user: str | None = None
    times: int | None = None
    skip: int = 0
    probability: float = 1.0
    status: int | None = None
    retry_after: int | None = None
    body: str | None = None
    delay: float = 0.0
    when: str = "before"
    reason: str | None = None
    image: str | None = None
    seen: int = field(default=0, compare=False)
    fired: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.kind == "error" and self.status is None:
            raise ValueError("an 'error' fault needs 'status' (e.g. 503, 409, 500, 504)")
        if self.kind == "drop" and self.when not in ("before", "after"):
            raise ValueError(
                f"a 'drop' fault's 'when' must be 'before' or 'after', not {self.when!r}"
            )
        if self.kind == "slow" and self.delay <= 0:
            raise ValueError("a 'slow' fault needs 'delay' (real seconds, > 0)")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"fault probability must be within [0, 1], got {self.probability!r}")
        if self.times is not None and self.times < 0:
            raise ValueError(f"fault 'times' must be >= 0, got {self.times!r}")
        if self.kind in BEHAVIOUR_KINDS and self.op is None:
            self.op = BEHAVIOUR_KINDS[self.kind]
        if self.method is not None:
            self.method = self.method.upper()

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def response_body(self) -> str:
        if self.body is not None:
            return self.body
        if self.status == 409 and self.retry_after is not None:
            return _CONFLICT_HTML
        return _DEFAULT_BODIES.get(self.status or 500, "Injected fault.")

    def response_content_type(self) -> str:
        if self.status == 409 and self.retry_after is not None and self.body is None:
            return "text/html; charset=utf-8"
        return "text/plain; charset=utf-8"


_FAULT_KEYS = {f.name for f in fields(Fault)} - {"seen", "fired"}


def fault_from_mapping(data: Mapping[str, Any]) -> Fault:
    unknown = set(data) - _FAULT_KEYS
    if unknown:
        raise ValueError(
            f"fault: unknown key(s) {sorted(unknown)}; expected some of {sorted(_FAULT_KEYS)}"
        )
    if "kind" not in data:
        raise ValueError(f"fault: 'kind' is required (one of {sorted(KINDS)})")
    return Fault(**dict(data))


@dataclass(frozen=True)
class RequestInfo:
    method: str
    path: str  # below /MAAS/api/2.0/, e.g. "machines/abc123/"
    op: str | None
    machine_names: frozenset[str]
    user: str | None


class FaultSet:
    """The active faults; thread-safe; `seed` makes probabilistic faults reproducible."""

    def __init__(self, seed: int | None = None) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def add(self, kind: str | Fault, **options: Any) -> Fault:
        fault = kind if isinstance(kind, Fault) else fault_from_mapping({"kind": kind, **options})
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f is not fault]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    def __len__(self) -> int:
        return len(self.active())

    def _fires(self, fault: Fault) -> bool:
        # Called under the lock for a fault whose filters matched.
        if fault.exhausted:
            return False
        fault.seen += 1
        if fault.seen <= fault.skip:
            return False
        if fault.probability < 1.0 and self._random.random() >= fault.probability:
            return False
        fault.fired += 1
        return True

    def for_request(self, info: RequestInfo) -> list[Fault]:
        """Request faults that fire for this request, in the order they were added. Slow and
        drop-after faults combine with others; an error or a drop-before ends the list (later
        faults are not consumed by a request they could not affect)."""
        fired: list[Fault] = []
        with self._lock:
            for fault in self._faults:
                if fault.kind in REQUEST_KINDS and _matches(fault, info) and self._fires(fault):
                    fired.append(fault)
                    if fault.kind == "error" or (fault.kind == "drop" and fault.when == "before"):
                        break
        return fired

    def behaviour(
        self,
        kinds: Collection[str],
        *,
        machine_names: Collection[str],
        user: str | None,
        image: str | None = None,
    ) -> Fault | None:
        """The first behaviour fault of `kinds` that fires for this machine, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds:
                    continue
                if fault.machine is not None and fault.machine not in machine_names:
                    continue
                if fault.user is not None and fault.user != user:
                    continue
                if fault.image is not None and image is not None and fault.image != image:
                    continue
                if self._fires(fault):
                    return fault
        return None


def _matches(fault: Fault, info: RequestInfo) -> bool:
    if fault.method is not None and fault.method != info.method:
        return False
    if fault.op is not None and fault.op != info.op:
        return False
    if fault.user is not None and fault.user != info.user:
        return False
    if fault.machine is not None and fault.machine not in info.machine_names:
        return False
    return fault.path is None or fnmatch.fnmatchcase(info.path, fault.path.lstrip("/"))
