"""The leader's side of host sharing: serve the other processes' waits and lookups.

Each follower's wait runs as an ordinary wait() of the leader's own `StatusPoller`, in a thread
(a greenlet under gevent) of its own, so whatever that poller does (its tick, due times,
estimates) applies to every process of the host alike; its changes and its end go back over
the follower's connection. A follower that cancels or goes away ends its waits here at the
next check. Lookups join the leader's `HostnameLookups` batcher the same way.

A follower's probe (its SSH check of the node, a callable) stays in the follower: when the
leader's schedule says the node is due for a probe, the wait's thread here sends `probe {id}`
and goes on at once (the probe counts as "not yet"); the follower runs it in its own process
and answers `probed {id, ready}`. A ready node is read from MAAS at once (`poller.confirm`);
only what MAAS shows ends the wait. A follower that never answers costs nothing but its probes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teuthology_maas.fleet._hostdir import HostShareRefused, check_peer
from teuthology_maas.fleet._hostwire import Channel, error_to_json, machine_to_json
from teuthology_maas.fleet.lookup import HostnameLookups, LookupClient
from teuthology_maas.fleet.poller import StatusPoller

log = logging.getLogger("teuthology_maas.fleet.hostshare")

# Arguments a follower cannot set: they are the leader's own (callbacks, its check).
_RESERVED = frozenset(
    {"on_change", "check", "check_interval", "system_id", "timeout", "probe"}
)
# A day: longer than any wait the library makes; a follower's own deadline ends it sooner.
MAX_TIMEOUT = 86400.0
MAX_NAME = 253
# What a moved wait may bring of the status_messages it was shown (see HostShare.wait).
MAX_SEEN = 32
MAX_MESSAGE = 1000


@dataclass(eq=False)
class _Wait:
    """A follower's wait being served: how to end it, which machine it is about, and whether
    its probe was asked for and not answered yet (only such an answer is taken: a follower
    cannot make the leader read MAAS more often than the probe schedule says)."""

    cancel: threading.Event
    system_id: str
    asked: bool = False


class _Cancelled(Exception):
    """The follower no longer waits (cancelled, or gone)."""


def _brackets(value: Any, started_ago: float) -> dict[str, tuple[float, float]] | None:
    """A follower's `seen` ({status_message: [low, high]}, seconds from the wait's start),
    when every entry is one a wait could have seen; else None."""
    if not isinstance(value, dict) or len(value) > MAX_SEEN:
        return None
    brackets: dict[str, tuple[float, float]] = {}
    for message, pair in value.items():
        if not isinstance(message, str) or len(message) > MAX_MESSAGE:
            return None
        if not isinstance(pair, list) or len(pair) != 2:
            return None
        low, high = _number(pair[0]), _number(pair[1])
        if low is None or high is None or not 0.0 <= low <= high <= started_ago:
            return None
        brackets[message] = (low, high)
    return brackets


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class LeaderServer:
    """Accepts followers on `listener` and serves them until closed."""

    def __init__(
        self,
        listener: socket.socket,
        path: Path,
        poller: StatusPoller,
        lookups: HostnameLookups,
        client: LookupClient,
    ) -> None:
        self.listener = listener
        self.path = path
        self.poller = poller
        self.lookups = lookups
        self.client = client
        self.pid = os.getpid()
        self.served = 0  # followers accepted (tests, logs)
        self._lock = threading.Lock()
        self._channels: set[Channel] = set()
        self._closed = False
        st = os.stat(path, follow_symlinks=False)
        self._inode = (st.st_dev, st.st_ino)

    def start(self) -> None:
        threading.Thread(target=self._accept, name="maas-hostshare leader", daemon=True).start()

    def close(self) -> None:
        """Stop serving: the socket file goes (only ours, only from the process that made it),
        then every follower's connection, so that they take over at once."""
        self.stop_listening()
        with self._lock:
            channels = list(self._channels)
        for channel in channels:
            channel.close()

    def stop_listening(self) -> None:
        """Take no new followers: the socket file goes (only ours, only from the process that
        made it) and the listener closes; the connections stay open."""
        with self._lock:
            if self._closed:
                # Once only: after our lock is released the path may hold a new leader's
                # socket, whose inode number may even be our old one's.
                return
            self._closed = True
        if self.pid == os.getpid():
            try:
                st = os.stat(self.path, follow_symlinks=False)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass
        with contextlib.suppress(OSError):
            self.listener.close()

    def abandon(self) -> None:
        """In a forked child: close this process's copies of the sockets only (the parent
        still serves on them)."""
        self._closed = True
        for sock in [self.listener, *(channel.sock for channel in self._channels)]:
            with contextlib.suppress(OSError):
                sock.close()
        self._channels = set()

    # -- connections ----------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                if self._closed:
                    return
                log.warning("host sharing: accepting a follower failed", exc_info=True)
                continue
            try:
                check_peer(sock)
            except (HostShareRefused, OSError) as exc:
                log.warning("host sharing: refused a connection: %s", exc)
                sock.close()
                continue
            channel = Channel(sock)
            with self._lock:
                if self._closed:
                    channel.close()
                    return
                self._channels.add(channel)
                self.served += 1
            threading.Thread(
                target=self._serve, args=(channel,), name="maas-hostshare follower", daemon=True
            ).start()

    def _serve(self, channel: Channel) -> None:
        cancels: dict[int, _Wait] = {}
        try:
            while True:
                message = channel.receive()
                if message is None:
                    break
                self._handle(channel, message, cancels)
        except OSError as exc:
            if not channel.closed:
                log.info("host sharing: a follower's connection ended: %s", exc)
        finally:
            channel.closed = True
            for wait in list(cancels.values()):
                wait.cancel.set()
            with self._lock:
                self._channels.discard(channel)
            channel.close()

    def _handle(self, channel: Channel, message: dict[str, Any],
                cancels: dict[int, _Wait]) -> None:  # fmt: skip
        op, ident = message["op"], message.get("id")
        if op == "kick":
            self.poller.kick()
        elif op == "ping":
            channel.send_quietly({"op": "pong"})
        elif op == "configure":
            fast, slow = _number(message.get("fast")), _number(message.get("slow"))
            if fast is not None and slow is not None and 0 < fast <= slow:
                self.poller.configure(min_interval=fast, max_interval=slow)
            else:
                log.warning("host sharing: dropped a configure with bad intervals")
        elif op == "cancel":
            if isinstance(ident, int) and ident in cancels:  # else: that wait already ended
                cancels.pop(ident).cancel.set()
        elif op == "probed":
            wait = cancels.get(ident) if isinstance(ident, int) else None
            if wait is None or not wait.asked:
                return  # not asked for (or the wait ended): nothing to confirm
            wait.asked = False
            if message.get("ready") is True:
                # A hint only: MAAS is read about the machine now, and MAAS decides.
                self.poller.confirm(wait.system_id)
        elif op == "wait":
            if isinstance(ident, int) and self._valid_wait(message):
                wait = cancels[ident] = _Wait(threading.Event(), message["system_id"])
                self._spawn(self._run_wait, channel, ident, message, wait, cancels)
            else:
                log.warning("host sharing: dropped a malformed wait request")
        elif op == "lookup":
            if isinstance(ident, int) and _name(message.get("hostname")):
                self._spawn(self._run_lookup, channel, ident, message["hostname"])
            else:
                log.warning("host sharing: dropped a malformed lookup request")
        else:
            log.warning("host sharing: dropped a message the leader does not take: op=%.40r", op)

    @staticmethod
    def _valid_wait(message: dict[str, Any]) -> bool:
        args = message.get("args")
        return bool(
            _name(message.get("system_id"))
            and isinstance(args, dict)
            and _number(args.get("timeout")) is not None
        )

    @staticmethod
    def _spawn(target: Callable[..., None], *args: Any) -> None:
        threading.Thread(target=target, args=args, name="maas-hostshare wait", daemon=True).start()

    # -- work -----------------------------------------------------------------------------

    def _run_wait(
        self,
        channel: Channel,
        ident: int,
        message: dict[str, Any],
        wait: _Wait,
        cancels: dict[int, _Wait],
    ) -> None:
        args = {k: v for k, v in message["args"].items() if k not in _RESERVED}
        if "started_ago" in args:
            ago = _number(args["started_ago"])
            args["started_ago"] = min(max(0.0, ago or 0.0), MAX_TIMEOUT)
        if not isinstance(args.get("anchored", False), bool):
            del args["anchored"]
        if "seen" in args:
            seen = _brackets(args["seen"], args.get("started_ago", 0.0))
            if seen is None:
                log.warning("host sharing: ignored a follower's malformed message brackets")
                del args["seen"]
            else:
                args["seen"] = seen
        if message.get("probe") is True:

            def probe() -> bool:  # ask, never wait: the answer comes as `probed`
                wait.asked = True
                channel.send_quietly({"op": "probe", "id": ident})
                return False

            args["probe"] = probe
        timeout = min(max(0.0, float(message["args"]["timeout"])), MAX_TIMEOUT)

        def check() -> None:
            if wait.cancel.is_set() or channel.closed:
                raise _Cancelled

        def changed(machine: Any) -> None:
            channel.send_quietly({"op": "change", "id": ident, "machine": machine_to_json(machine)})

        try:
            machine = self.poller.wait(
                message["system_id"], timeout=timeout, on_change=changed, check=check, **args
            )
        except _Cancelled:
            return
        except TypeError as exc:  # arguments this version's poller does not take
            channel.send_quietly({"op": "failed", "id": ident, "unsupported": True,
                                  "error": error_to_json(exc)})  # fmt: skip
        except Exception as exc:  # the wait's own outcome: the follower raises it
            channel.send_quietly({"op": "failed", "id": ident, "error": error_to_json(exc)})
        else:
            channel.send_quietly({"op": "done", "id": ident, "machine": machine_to_json(machine)})
        finally:
            cancels.pop(ident, None)

    def _run_lookup(self, channel: Channel, ident: int, hostname: str) -> None:
        try:
            found = self.lookups.machines(self.client, hostname)
        except Exception as exc:  # the lookup's own outcome: the follower raises it
            channel.send_quietly({"op": "failed", "id": ident, "error": error_to_json(exc)})
        else:
            machines = [machine_to_json(m) for m in found]
            channel.send_quietly({"op": "found", "id": ident, "machines": machines})


def _name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable()
