"""One status poller and one hostname-lookup batcher per host and MAAS endpoint.

teuthology-dispatcher runs one supervisor process per job, each reimaging 1-3 nodes with the
same API key: with a poller per process, MAAS gets one poll stream (and renders the waiting
machines) per process. Here the processes of one host elect a leader per endpoint with a file
lock (`fcntl.flock`, never blocking); the leader polls with an ordinary `StatusPoller` and
looks up with an ordinary `HostnameLookups`, and serves the others over a unix socket beside
the lock (`fleet._hostleader`, wire in `fleet._hostwire`, directory and checks in
`fleet._hostdir`). `HostShare` has the poller's interface (`wait`, `kick`, `configure`), so
the node code does not know which process polls.

Reliability:

* A follower's wait keeps its own deadline. When the leader goes (exit, SIGKILL: the socket
  closes), the waiting thread takes the lock and leads, or connects to whoever did, and
  registers the wait again with the time left; a wait is never lost, and a reconnection that
  fails ends in polling from this process (`solo`), as does any failure to set sharing up.
* What the leader sends only wakes waits: machines are validated like MAAS answers, must be the
  machine waited for, and an end must be a target or failure status. The node code never acts
  on a polled machine without its own fresh read (node.custody), shared or not.
* Everything on disk is refused unless it is ours (`fleet._hostdir`); a malformed message is
  dropped with a log line. A leader process that exits removes its socket and lock file.
* Fork: a HostShare serves the process that made it (the Endpoint makes its child a new one).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from teuthology_maas.errors import MaasTimeout
from teuthology_maas.fleet._hostdir import (
    HostLock,
    HostShareRefused,
    check_peer,
    check_socket_path,
    runtime_dir,
)
from teuthology_maas.fleet._hostleader import MAX_MESSAGE, MAX_SEEN, LeaderServer
from teuthology_maas.fleet._hostlink import Link, LinkLost, Pending, Stalled, WaitHere
from teuthology_maas.fleet.estimate import FinishEstimator
from teuthology_maas.fleet.lookup import HostnameLookups
from teuthology_maas.fleet.policy import TickPolicy
from teuthology_maas.fleet.poller import OnChange, StatusPoller
from teuthology_maas.fleet.reading import PollingClient
from teuthology_maas.fleet.waiter import PollerStats, Waiter
from teuthology_maas.fleet.waiter import _identity as identity
from teuthology_maas.models import Machine, NodeStatus

log = logging.getLogger("teuthology_maas.fleet.hostshare")

# How long to look for a leader (one holds the lock but has not bound its socket yet), and
# the pauses between tries (doubling).
CONNECT_WAIT = 5.0
CONNECT_RETRY_FIRST = 0.002
CONNECT_RETRY_LAST = 0.05
# After a failure to set sharing up, poll from this process for this long before trying again.
SOLO_RETRY = 60.0
# The leader's wait outlives ours by this much, so that our own deadline (and message) decides.
GRACE = 5.0
# A lookup the leader does not answer within this long is made from this process instead.
LOOKUP_WAIT = 300.0
# A leader silent this long while we wait is asked whether it lives (ping); one that still
# says nothing after STALL_LIMIT is left: this process polls for itself for SOLO_RETRY.
PING_EVERY = 10.0
STALL_LIMIT = 30.0


class HostShare:
    """The host's poller and lookups for one endpoint, as this process reaches them."""

    _all: weakref.WeakSet[HostShare] = weakref.WeakSet()

    def __init__(
        self,
        client: Any,
        *,
        name: str,
        directory: str | None = None,
        min_interval: float,
        max_interval: float,
        on_poller: Callable[[StatusPoller], None] | None = None,
    ) -> None:
        self.client = client  # a PollingClient and LookupClient (the Endpoint's MaasClient)
        self.name = name
        self.pid = os.getpid()
        self._directory = directory
        # Called with each poller this share makes (the one it leads or polls alone with),
        # and again when this process takes the lead: the Endpoint gives it the host store's
        # learned timings and saves what it learns.
        self._on_poller = on_poller
        self.poller = self._new_poller(min_interval, max_interval)
        self.lookups = HostnameLookups()
        self._lock = threading.RLock()
        self._role: str | None = None  # leader, follower, solo; None: not chosen yet
        self._solo_until = 0.0
        self._link: Link | None = None
        self._server: LeaderServer | None = None
        self._held: HostLock | None = None
        self._exit_hook = False
        self._last_kick: float | None = None
        HostShare._all.add(self)

    def __repr__(self) -> str:
        return f"HostShare({self.client.base_url!r}, role={self._role})"

    # -- the poller's interface -------------------------------------------------------------

    @property
    def role(self) -> str | None:
        return self._role

    @property
    def policy(self) -> TickPolicy:
        return self.poller.policy

    @property
    def stats(self) -> PollerStats:
        return self.poller.stats

    @property
    def history(self) -> FinishEstimator:
        return self.poller.history

    @property
    def waiting(self) -> int:
        return self.poller.waiting

    @property
    def running(self) -> bool:
        return self.poller.running

    @property
    def polling_client(self) -> PollingClient:
        return self.poller.client

    def configure(self, *, min_interval: float | None = None,
                  max_interval: float | None = None) -> None:  # fmt: skip
        before = (self.poller.policy.fast, self.poller.policy.slow)
        self.poller.configure(min_interval=min_interval, max_interval=max_interval)
        after = (self.poller.policy.fast, self.poller.policy.slow)
        link = self._link
        if after != before and link is not None:
            link.channel.send_quietly({"op": "configure", "fast": after[0], "slow": after[1]})

    def kick(self) -> None:
        link = self._route()
        if link is None or not link.channel.send_quietly({"op": "kick"}):
            self.poller.kick()
        self._last_kick = time.monotonic()

    def wait(
        self,
        system_id: str,
        *,
        timeout: float,
        on_change: OnChange | None = None,
        check: Callable[[], None] | None = None,
        check_interval: float = 0.5,
        **args: Any,
    ) -> Machine:
        """StatusPoller.wait(), answered by the host's leader; `args` (targets, failures,
        expected_duration, and whatever the poller takes) go to its poller as they are."""
        now = time.monotonic()
        # Whether the wait times its action (it follows the action's kick at once): decided
        # here, since the kick and the wait reach the leader as two messages.
        kicked = self._last_kick is not None and now - self._last_kick <= self.poller.policy.fast
        record = Waiter(
            system_id=system_id,
            targets=frozenset(NodeStatus(s) for s in args.get("targets", ())),
            failures=frozenset(NodeStatus(s) for s in args.get("failures", ())),
            started=now, deadline=now + max(0.0, timeout), expected=None,
        )  # fmt: skip

        # When each status_message appeared (seconds from the start, between the change
        # before it and its own), for the poller that takes the wait over if it moves.
        seen: dict[str, tuple[float, float]] = {}
        changed_at: float | None = None

        def deliver(machine: Machine) -> None:  # each state once, whichever process polled
            nonlocal changed_at
            if record.last is None or identity(record.last) != identity(machine):
                at = time.monotonic() - now
                message = machine.status_message
                # Not the first state shown: that one may have been there before the wait.
                if (changed_at is not None and message is not None and message not in seen
                        and len(seen) < MAX_SEEN and len(message) <= MAX_MESSAGE):
                    seen[message] = (changed_at, at)
                changed_at = at
                record.last = machine
                if on_change is not None:
                    on_change(machine)

        moved = False
        local = False
        while True:
            link = None if local else self._route()
            # Wherever the wait goes (again, after a leader left), it counts from its start.
            args = {**args, "started_ago": time.monotonic() - now, "anchored": kicked}
            if seen:
                args["seen"] = dict(seen)
            if link is None:
                remaining = max(0.0, record.deadline - time.monotonic())
                try:
                    return self.poller.wait(
                        system_id, timeout=remaining, on_change=deliver, check=check,
                        check_interval=check_interval, **args,
                    )  # fmt: skip
                except MaasTimeout as exc:
                    if not moved:
                        raise
                    raise record.timeout_error(timeout, None) from exc
            try:
                return link.wait(record, args, deliver, check, check_interval, timeout,
                                 grace=GRACE, every=PING_EVERY, limit=STALL_LIMIT)  # fmt: skip
            except WaitHere:
                local = True
            except Stalled:
                self._stalled(link)
            except LinkLost:
                self._lost(link)
            moved = True

    def lookup(self, hostname: str) -> list[Machine]:
        """HostnameLookups.machines(), coalesced with the lookups of every process of the host."""
        for _ in range(3):
            link = self._route()
            if link is None:
                break
            try:
                pending = link.request("lookup", hostname=hostname)
            except LinkLost:
                self._lost(link)
                continue
            try:
                self._await(link, pending)
            finally:
                link.forget(pending)
            if pending.error is not None:
                raise pending.error
            if pending.machines is not None:
                return pending.machines
            if link.lost:
                self._lost(link)
                continue
            break  # no answer in time: ask MAAS ourselves
        return self.lookups.machines(self.client, hostname)

    def close(self) -> None:
        """Stop sharing (the Endpoint closes, the process exits): a leader removes its socket
        and lock file, so that a follower takes over at once; waits go on from here."""
        with self._lock:
            if self.pid != os.getpid():
                return
            # Our socket file goes while we still hold the lock (nobody else can have bound
            # that path yet), then the lock, then the connections: the followers, woken by
            # theirs closing, find the lock free at once instead of retrying (at a time factor
            # of 40 each handover of a leader cost them seconds).
            if self._server is not None:
                self._server.stop_listening()
            if self._held is not None:
                self._held.release()
                self._held = None
            if self._server is not None:
                self._server.close()
                self._server = None
            if self._link is not None:
                self._link.channel.close()
                self._link = None
            self._role, self._solo_until = "solo", float("inf")

    def _forked(self) -> None:
        """In a forked child: let go of the descriptors inherited from the parent without
        touching what they refer to (no shutdown, no unlink). A child keeping a copy of the
        lock or of a follower's connection would keep the lock held and the connection open
        after the parent died, and nobody would take over."""
        if self._held is not None:
            with contextlib.suppress(OSError):
                os.close(self._held.fd)
            self._held.fd = -1
        if self._server is not None:
            self._server.abandon()
        if self._link is not None:
            with contextlib.suppress(OSError):
                self._link.channel.sock.close()
        self._held = self._server = self._link = None
        self._lock = threading.RLock()
        self.pid = os.getpid()
        policy = self.poller.policy
        self.poller = self._new_poller(policy.fast, policy.slow)
        self.lookups = HostnameLookups()
        self._role, self._solo_until = "solo", float("inf")

    def _new_poller(self, fast: float, slow: float) -> StatusPoller:
        poller = StatusPoller(self.client, min_interval=fast, max_interval=max(slow, fast))
        if self._on_poller is not None:
            self._on_poller(poller)
        return poller

    # -- choosing a role --------------------------------------------------------------------

    def _route(self) -> Link | None:
        """The link to the leader, or None when this process polls (leader, or solo)."""
        with self._lock:
            if self._role == "leader":
                return None
            if self._role == "follower" and self._link is not None and not self._link.lost:
                return self._link
            if self._role == "solo" and time.monotonic() < self._solo_until:
                return None
            if getattr(threading, "_SHUTTING_DOWN", False):
                # Exit hooks (a clean-up at exit): leading needs new threads, which Python no
                # longer starts now. Ask MAAS from here; nothing to set up for a last request.
                return None
            try:
                return self._establish()
            except (OSError, RuntimeError) as exc:  # RuntimeError: no new thread (exiting)
                log.warning("host sharing: polling MAAS at %s from this process (pid %d) for "
                            "now: %s", self.client.base_url, os.getpid(), exc)  # fmt: skip
                self._role, self._link = "solo", None
                self._solo_until = time.monotonic() + SOLO_RETRY
                return None

    def _establish(self) -> Link | None:
        directory = runtime_dir(self._directory)
        lock_path = directory / f"{self.name}.lock"
        sock_path = directory / f"{self.name}.sock"
        deadline = time.monotonic() + CONNECT_WAIT
        pause = CONNECT_RETRY_FIRST
        while True:
            held = HostLock.try_acquire(lock_path)
            if held is not None:
                self._lead(held, sock_path)
                return None
            link = self._connect(sock_path)
            if link is not None:
                self._role, self._link = "follower", link
                policy = self.poller.policy
                link.channel.send_quietly({"op": "configure", "fast": policy.fast,
                                           "slow": policy.slow})  # fmt: skip
                log.debug("host sharing: following the leader of %s", self.client.base_url)
                return link
            if time.monotonic() >= deadline:
                raise HostShareRefused(0, f"another process holds {lock_path} but nothing "
                                          f"answers on {sock_path}")  # fmt: skip
            # A new leader binds its socket within milliseconds of taking the lock.
            time.sleep(pause)
            pause = min(CONNECT_RETRY_LAST, pause * 2)

    def _lead(self, held: HostLock, sock_path: Path) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):  # a dead leader's: we hold the lock
                os.unlink(sock_path)
            listener.bind(str(sock_path))
            os.chmod(sock_path, 0o600)
            listener.listen(128)
            if self._on_poller is not None:
                # The leaders before this one saved what they learned: this process loaded
                # the host's timings when it started, maybe long before.
                self._on_poller(self.poller)
            server = LeaderServer(listener, sock_path, self.poller, self.lookups, self.client)
            server.start()
        except BaseException:
            listener.close()
            with contextlib.suppress(OSError):  # bound but never served: nobody's socket
                os.unlink(sock_path)
            held.release()
            raise
        self._role, self._held, self._server, self._link = "leader", held, server, None
        if not self._exit_hook:
            atexit.register(self.close)
            self._exit_hook = True
        log.info("host sharing: this process (pid %d) polls MAAS at %s for the host",
                 os.getpid(), self.client.base_url)  # fmt: skip

    @staticmethod
    def _connect(sock_path: Path) -> Link | None:
        try:
            check_socket_path(sock_path)
        except FileNotFoundError:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(sock_path))
            check_peer(sock)
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
            return None
        except BaseException:
            sock.close()
            raise
        try:
            return Link(sock)
        except BaseException:  # its reader thread could not start (interpreter exiting)
            sock.close()
            raise

    def _lost(self, link: Link) -> None:
        with self._lock:
            if self._link is link:
                self._link, self._role = None, None
                log.info("host sharing: the leader for %s went away; taking over or "
                         "reconnecting", self.client.base_url)  # fmt: skip

    def _await(self, link: Link, pending: Pending) -> None:
        """Wait for a lookup's answer while the leader is heard from, up to LOOKUP_WAIT."""
        deadline = time.monotonic() + LOOKUP_WAIT
        while not pending.event.wait(min(PING_EVERY, STALL_LIMIT) / 2):
            if link.stalled(every=PING_EVERY, limit=STALL_LIMIT):
                self._stalled(link)
                return
            if time.monotonic() >= deadline:
                return

    def _stalled(self, link: Link) -> None:
        with self._lock:
            log.warning("host sharing: the leader for %s has not answered for %.0f s; polling "
                        "MAAS from this process (pid %d) for now", self.client.base_url,
                        STALL_LIMIT, os.getpid())  # fmt: skip
            link.lose()
            if self._link is link:
                self._link, self._role = None, "solo"
                self._solo_until = time.monotonic() + SOLO_RETRY


def _after_fork_in_child() -> None:
    for share in list(HostShare._all):
        try:
            share._forked()
        except Exception:  # a child must start whatever an inherited share looked like
            log.debug("host sharing: could not drop an inherited share", exc_info=True)


os.register_at_fork(after_in_child=_after_fork_in_child)
