"""The follower's side of host sharing: its connection to the leader, and what it asked.

A thread (a greenlet under gevent) reads the leader's answers and hands each to the request it
answers; an answer about another machine than the one asked about, or one that does not parse
as a MAAS machine, is dropped with a log line. When the connection ends, every request still
open is woken with `lost` set, and its waiter re-registers wherever the host's leader now is.

A wait's probe (a callable: the node's own SSH check) cannot travel: it stays here, and the
leader asks for it (`probe {id}`) when its schedule says the node is due. It runs in a thread
of ours (a greenlet under gevent), one at a time per wait, and its answer goes back as
`probed {id, ready}`; the leader never waits for it.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from teuthology_maas.errors import MaasError, MaasTimeout
from teuthology_maas.fleet._hostwire import Channel, error_from_json, machine_from_json, to_json
from teuthology_maas.fleet.poller import OnChange
from teuthology_maas.fleet.waiter import Waiter
from teuthology_maas.models import Machine

log = logging.getLogger("teuthology_maas.fleet.hostshare")


class LinkLost(OSError):
    """The connection to the leader ended."""


class WaitHere(Exception):
    """Wait for this one from this process (the leader cannot, or answered nonsense)."""


class Stalled(LinkLost):
    """The leader keeps its connection open but no longer answers."""


@dataclass(eq=False)
class Pending:
    """One request of ours the leader is working on."""

    ident: int
    system_id: str | None
    event: threading.Event = field(default_factory=threading.Event)
    changes: list[Machine] = field(default_factory=list)
    outcome: Machine | None = None
    machines: list[Machine] | None = None
    error: MaasError | None = None
    unsupported: bool = False
    probe: Callable[[], bool] | None = None
    probing: bool = False  # a probe of this wait runs now (asked again meanwhile: ignored)


class Link:
    """The follower's connection to the leader, read by a thread of its own."""

    def __init__(self, sock: socket.socket) -> None:
        self.channel = Channel(sock)
        self.lock = threading.Lock()
        self.lost = False
        self.heard = time.monotonic()  # when the leader last said anything
        self._pinged = 0.0
        self._pending: dict[int, Pending] = {}
        self._ids = itertools.count(1)
        threading.Thread(target=self._read, name="maas-hostshare link", daemon=True).start()

    def request(
        self,
        op: str,
        about: str | None = None,
        *,
        local_probe: Callable[[], bool] | None = None,
        **fields: Any,
    ) -> Pending:
        """Send a request; `about` is the machine its answers must be about, `local_probe`
        the wait's own probe (run here when the leader asks)."""
        pending = Pending(next(self._ids), about, probe=local_probe)
        with self.lock:
            if self.lost:
                raise LinkLost("the leader's connection is closed")
            self._pending[pending.ident] = pending
        try:
            self.channel.send({"op": op, "id": pending.ident, **fields})
        except OSError as exc:
            self.lose()
            raise LinkLost(f"sending to the leader failed: {exc}") from exc
        return pending

    def forget(self, pending: Pending) -> None:
        with self.lock:
            self._pending.pop(pending.ident, None)

    def _read(self) -> None:
        try:
            while (message := self.channel.receive()) is not None:
                self._dispatch(message)
        except OSError as exc:
            log.info("host sharing: the leader's connection ended: %s", exc)
        finally:
            self.lose()

    def stalled(self, *, every: float, limit: float) -> bool:
        """Whether the leader has said nothing for `limit` seconds although asked (a ping
        every `every` seconds of silence): a process stopped or stuck, whose socket the kernel
        still keeps open."""
        now = time.monotonic()
        silent = now - self.heard
        if silent >= every and now - self._pinged >= every:
            self._pinged = now
            self.channel.send_quietly({"op": "ping"})
        return silent >= limit and self._pinged > self.heard

    def _dispatch(self, message: dict[str, Any]) -> None:
        op, ident = message["op"], message.get("id")
        self.heard = time.monotonic()
        if op == "pong":
            return
        with self.lock:
            pending = self._pending.get(ident) if isinstance(ident, int) else None
        if op == "probe":
            self._probe(pending)
            return
        if pending is None:
            if op not in ("change", "done", "failed", "found"):
                log.warning("host sharing: dropped a message of unknown kind %.40r", op)
            return  # an answer for a wait that already ended
        if op in ("change", "done"):
            machine = machine_from_json(message.get("machine"))
            if machine is None or machine.system_id != pending.system_id:
                log.warning("host sharing: dropped an answer about another machine for %s",
                            pending.system_id)  # fmt: skip
                return
        elif op == "found":
            raw = message.get("machines")
            found = [machine_from_json(m) for m in raw] if isinstance(raw, list) else [None]
        with self.lock:
            if op == "change" and machine is not None:
                pending.changes.append(machine)
            elif op == "done" and machine is not None:
                pending.outcome = machine
            elif op == "failed":
                pending.error = error_from_json(message.get("error"))
                pending.unsupported = message.get("unsupported") is True
            elif op == "found" and None not in found:
                pending.machines = [m for m in found if m is not None]
            else:
                log.warning("host sharing: dropped a malformed %.40r message", op)
                return
        pending.event.set()

    def _probe(self, pending: Pending | None) -> None:
        """The leader asks for a wait's probe: run it in a thread of ours, once at a time."""
        with self.lock:
            if pending is None or pending.probe is None or pending.probing:
                return  # a wait that ended, has no probe, or is being probed already
            pending.probing = True
        probe = pending.probe

        def run() -> None:
            try:
                ready = bool(probe())
            except Exception as exc:  # a probe is a hint: failing, it says "not yet"
                log.debug("probe for %s failed: %s", pending.system_id, exc)
                ready = False
            finally:
                with self.lock:
                    pending.probing = False
            self.channel.send_quietly({"op": "probed", "id": pending.ident, "ready": ready})

        try:
            threading.Thread(target=run, name="maas-hostshare probe", daemon=True).start()
        except RuntimeError:  # no new thread (interpreter exiting): "not yet"
            with self.lock:
                pending.probing = False

    def lose(self) -> None:
        with self.lock:
            self.lost = True
            pending = list(self._pending.values())
        self.channel.close()
        for each in pending:
            each.event.set()

    def wait(
        self,
        record: Waiter,
        args: dict[str, Any],
        deliver: OnChange,
        check: Callable[[], None] | None,
        check_interval: float,
        timeout: float,
        *,
        grace: float,
        every: float,
        limit: float,
    ) -> Machine:
        """One wait() answered by the leader, until `record`'s own deadline (the leader's
        outlives it by `grace`). Raises WaitHere when this process must wait by itself, LinkLost
        when the connection ended, Stalled when the leader stopped answering (a ping after
        `every` seconds of silence, given up after `limit`)."""
        link = self
        remaining = max(0.0, record.deadline - time.monotonic())
        probe = args.get("probe")
        args = {k: v for k, v in args.items() if k != "probe"}
        try:
            sent = to_json({**args, "timeout": remaining + grace})
        except TypeError as exc:  # an argument only this process can use (a callable)
            log.debug("host sharing: waiting for %s from this process: %s", record.system_id, exc)
            raise WaitHere from exc
        extra = {"probe": True} if probe is not None else {}
        pending = link.request("wait", record.system_id, local_probe=probe,
                               system_id=record.system_id, args=sent, **extra)  # fmt: skip
        finished = False
        try:
            while True:
                if check is not None:
                    check()
                remaining = record.deadline - time.monotonic()
                if remaining > 0:
                    pending.event.wait(min(remaining, check_interval if check else every))
                with link.lock:
                    pending.event.clear()
                    changes, pending.changes = pending.changes, []
                    outcome, error, lost = pending.outcome, pending.error, link.lost
                for machine in changes:
                    deliver(machine)
                if error is not None:
                    finished = True
                    if pending.unsupported:
                        log.warning("host sharing: the leader cannot take this wait (%s); "
                                    "waiting from this process", error)  # fmt: skip
                        raise WaitHere
                    if isinstance(error, MaasTimeout):
                        raise record.timeout_error(timeout, None)
                    raise error
                if outcome is not None:
                    finished = True
                    if outcome.status in record.targets | record.failures:
                        deliver(outcome)
                        return outcome
                    log.warning("host sharing: the leader ended the wait for %s at %s, which "
                                "it was not waiting for; waiting from this process",
                                record.system_id, outcome.status_name)  # fmt: skip
                    raise WaitHere
                if lost:
                    raise LinkLost("the leader went away")
                if link.stalled(every=every, limit=limit):
                    raise Stalled("the leader stopped answering")
                if time.monotonic() >= record.deadline:
                    raise record.timeout_error(timeout, None)
        finally:
            link.forget(pending)
            if not finished and not link.lost:
                link.channel.send_quietly({"op": "cancel", "id": pending.ident})
