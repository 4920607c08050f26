"""The teuthology-facing surface of teuthology_maas, shaped like teuthology/provision/fog.py.

Teuthology calls exactly this (see docs/teuthology-integration.md):

- `get_types()` on every lock and unlock decision: the machine types MAAS provisions. Reads the
  config only; never raises, never touches the network.
- `enabled(warn=False)`: whether the `maas:` section is usable.
- `MAAS(name, os_type, os_version).create()` from `provision.reimage()`; `MAAS(name).release()`
  from `lock.ops.stop_node()` when a node is unlocked.

The work is MaasProvisioner's; this module maps teuthology's names and config onto it and adds
what only the teuthology side can know about (the nodes this process is reimaging). It is the
only module of the package that imports teuthology, and importing teuthology switches the
process to gevent: import this module only inside teuthology processes.

Configuration is read from `teuthology.config.config` when called, never at import: its
`maas:` section, top-level `lab_domain`, and as fall-backs for the SSH check teuthology's own
`ssh_key` and `ssh_config_path` (so the library reaches nodes the way teuthology will).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from teuthology import misc
from teuthology.config import config as teuthology_config

from teuthology_maas import names
from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import MaasError, MachineNotFound, OwnershipError
from teuthology_maas.node.forensics import sentence
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.teuthology.lifetime import resolve_without_threads

__all__ = ["MAAS", "enabled", "get_types", "load_config"]

log = logging.getLogger("teuthology_maas.teuthology")

# Bounds for the clean-up this module does when the process exits (see _clean_up_at_exit):
# a leaving CLI must not hang for MAAS's full erase time.
EXIT_RELEASE_TIMEOUT = 120.0
PADDLES_TIMEOUT = 10.0


def _top(name: str) -> Any:
    try:
        return teuthology_config.get(name)
    except Exception:
        return None


def _config_dir() -> Path | None:
    yaml_path = getattr(teuthology_config, "yaml_path", None)
    return Path(str(yaml_path)).expanduser().absolute().parent if yaml_path else None


def _problem() -> str | None:
    try:
        return MaasConfig.problem(
            _top("maas"), base_dir=_config_dir(), top={"lab_domain": teuthology_config.lab_domain}
        )
    except Exception as exc:  # get_types() must never raise
        return f"the maas: section could not be read ({type(exc).__name__}: {exc})"


def enabled(warn: bool = False) -> bool:
    """True when the `maas:` section is usable and names at least one machine type."""
    problem = _problem()
    if problem is not None and warn:
        log.warning("MAAS disabled: %s", problem)
    return problem is None


def get_types() -> list[str]:
    """The machine types provisioned through MAAS; [] when MAAS is not (usably) configured."""
    try:
        if not enabled():
            return []
        return list(load_config().machine_types)
    except Exception:
        return []


def load_config() -> MaasConfig:
    """The MaasConfig of teuthology's current config (raises ConfigError naming the key).

    When `maas:` sets no ssh_private_key / ssh_config, teuthology's own `ssh_key` (its first
    entry, if a list) and `ssh_config_path` are used, if those files exist: teuthology only
    uses them when they do, and the node must be reachable the way teuthology reaches it.
    """
    cfg = MaasConfig.from_teuthology(teuthology_config)
    updates: dict[str, Any] = {}
    ssh_key = _top("ssh_key")
    if isinstance(ssh_key, list | tuple):
        ssh_key = ssh_key[0] if ssh_key else None
    if cfg.ssh_private_key is None and ssh_key:
        path = os.path.expanduser(str(ssh_key))
        if os.path.isfile(path):
            updates["ssh_private_key"] = path
    ssh_config_path = _top("ssh_config_path")
    if cfg.ssh_config is None and ssh_config_path:
        path = os.path.expanduser(str(ssh_config_path))
        if os.path.isfile(path):
            updates["ssh_config"] = path
    return dataclasses.replace(cfg, **updates) if updates else cfg


class MAAS:
    """Reimage bare-metal machines with https://maas.io through teuthology_maas."""

    def __init__(self, name: str, os_type: str = "ubuntu", os_version: str = "22.04") -> None:
        # Job input, checked whole before teuthology's helpers or MAAS see it.
        names.parse_node_name(name)
        self.os_type, self.os_version = names.check_os(os_type or "ubuntu", os_version or "22.04")
        # Paddles names nodes by FQDN; MAAS by short hostname. teuthology's own helpers
        # agree with the rest of teuthology on what lab_domain does to a name.
        self.name = misc.canonicalize_hostname(name, user=None)
        self.shortname = misc.decanonicalize_hostname(self.name)
        self.log = log.getChild(self.shortname)

    def __repr__(self) -> str:
        return f"MAAS({self.name!r}, os_type={self.os_type!r}, os_version={self.os_version!r})"

    def provisioner(self, config: MaasConfig | None = None) -> MaasProvisioner:
        # The process's Endpoint for cfg (endpoint_for): one client, poller ... per MAAS.
        return MaasProvisioner(self.name, self.os_type, self.os_version,
                               config=config or load_config())

    def create(self) -> None:
        """Deploy os_type/os_version and return once the node answers over SSH with it."""
        provisioner = self.provisioner()
        started = time.monotonic()
        self.log.info("Reimaging %s with %s %s through MAAS", self.name, self.os_type,
                      self.os_version)
        _tracker.started(self.name)
        try:
            provisioner.create()
        except BaseException as exc:
            _tracker.finished(self.name, deployed=False)
            if isinstance(exc, Exception):
                self.log.error("Reimaging %s through MAAS failed after %.0f s: %s", self.name,
                               time.monotonic() - started, exc)
            raise
        _tracker.finished(self.name, deployed=True)
        self.log.info("Reimaged %s with %s %s in %.0f s", self.name, self.os_type,
                      self.os_version, time.monotonic() - started)

    def release(self) -> None:
        """Give the node back to MAAS. Refuses (OwnershipError, nothing touched) a node MAAS
        says another MAAS user holds, and, when teuthology is unlocking it for a user, a node
        paddles shows locked by someone else (or whose lock paddles cannot show)."""
        provisioner = self.provisioner()
        started = time.monotonic()
        try:
            _check_paddles_holder(self.name)
            _tracker.cancel(self.name)
            provisioner.release()
        except (OwnershipError, MachineNotFound) as exc:
            # teuthology only logs what release() raises (and may unlock the node in paddles
            # anyway): say plainly that MAAS was left untouched and why. A non-admin key does
            # not see another user's machine at all: that is MachineNotFound.
            self.log.error("NOT releasing %s in MAAS: %s Nothing was changed in MAAS.",
                           self.name, sentence(str(exc)))
            raise
        except MaasError as exc:
            self.log.error("Releasing %s in MAAS failed: %s", self.name, exc)
            raise
        _tracker.released(self.name)
        self.log.info("Released %s in MAAS in %.0f s", self.name, time.monotonic() - started)


class _ReimageTracker:
    """What this process is reimaging, for two teuthology hazards only this side can see.

    1. When one node of a parallel reimage fails, teuthology does not cancel its siblings; it
       unlocks every node in paddles without calling release() and exits, abandoning the
       siblings mid-deploy. At exit we stop reimages still in flight (their create() then
       aborts and releases) and release nodes we deployed that paddles no longer shows locked.
    2. release() of a node whose create() is still running in this process (the supervisor
       unlocking after a sibling failed) stops that create() first instead of racing it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, Any] = {}
        self._deployed: set[str] = set()
        self._registered = False

    def started(self, fqdn: str) -> None:
        with self._lock:
            self._running[fqdn] = _current_greenlet()
            self._deployed.discard(fqdn)
            if not self._registered:
                atexit.register(self.clean_up_at_exit)
                self._registered = True

    def finished(self, fqdn: str, *, deployed: bool) -> None:
        with self._lock:
            self._running.pop(fqdn, None)
            if deployed:
                self._deployed.add(fqdn)

    def released(self, fqdn: str) -> None:
        with self._lock:
            self._deployed.discard(fqdn)

    def cancel(self, fqdn: str) -> None:
        with self._lock:
            greenlet = self._running.get(fqdn)
        if greenlet is not None and greenlet is not _current_greenlet():
            log.warning("%s: stopping its reimage still running in this process", fqdn)
            _kill(greenlet)

    def clean_up_at_exit(self) -> None:
        try:
            resolve_without_threads()
            with self._lock:
                running = dict(self._running)
                deployed = set(self._deployed)
            for fqdn, greenlet in running.items():
                log.warning("%s: process exiting with its reimage unfinished; stopping it and "
                            "giving the node back to MAAS", fqdn)
                _kill(greenlet)
            orphans = {fqdn: "its reimage was stopped at exit" for fqdn in running}
            for fqdn in sorted(deployed - set(running)):
                if _unlocked_in_paddles(fqdn):
                    orphans[fqdn] = "deployed for teuthology but no longer locked in paddles"
            if orphans:
                _release_all(orphans)
        except Exception:
            log.exception("teuthology_maas: clean-up at exit failed")


def _current_greenlet() -> Any:
    try:
        import gevent

        return gevent.getcurrent()
    except Exception:
        return None


def _kill(greenlet: Any) -> None:
    """Raise GreenletExit in a running create(): its own clean-up then aborts or releases."""
    kill = getattr(greenlet, "kill", None)  # a gevent.Greenlet (teuthology.parallel spawns)
    if kill is None:
        return
    try:
        kill(block=True, timeout=EXIT_RELEASE_TIMEOUT)
    except Exception:
        log.exception("could not stop a running reimage")


def _paddles_node(fqdn: str) -> dict[str, Any] | None:
    """The lock server's record of a node; None when unknown or unreachable."""
    lock_server = _top("lock_server")
    if not lock_server:
        return None
    try:
        response = requests.get(
            os.path.join(str(lock_server), "nodes", fqdn, ""), timeout=PADDLES_TIMEOUT
        )
        node = response.json() if response.ok else None
        return node if isinstance(node, dict) else None
    except Exception as exc:
        log.warning("%s: cannot read its lock from the lock server: %s", fqdn, exc)
        return None


def _unlocked_in_paddles(fqdn: str) -> bool:
    """True only when paddles answers that the node is not locked (unknown -> False)."""
    node = _paddles_node(fqdn)
    return node is not None and not node.get("locked")


_UNLOCK_ONE = ("teuthology.lock.ops", "unlock_one")


def _unlocking_user() -> str | None:
    """The `user` argument of teuthology.lock.ops.unlock_one() when that is what called
    release(); None otherwise, or when it cannot be read.

    Why read a caller's frame: unlock_one(name, user) calls stop_node() (our release())
    *before* paddles checks who holds the lock, and passes no user down, so a wrong-owner
    `teuthology-lock --unlock` would release a node another user's job runs on. The frame is
    the only place the unlocking user is known. Anything unexpected (no frame support, a
    teuthology whose unlock_one has no `user`) returns None: release() then relies on MAAS's
    ownership check alone, as for every other caller, and the gap is logged.
    """
    try:
        frame = sys._getframe(1)
        while frame is not None:
            module = frame.f_globals.get("__name__")
            if (module, frame.f_code.co_name) == _UNLOCK_ONE:
                user = frame.f_locals.get("user")
                if user:
                    return str(user)
                log.warning("teuthology's unlock_one() has no 'user' argument here; cannot "
                            "check paddles' lock holder, relying on MAAS's ownership check")
                return None
            frame = frame.f_back  # type: ignore[assignment]
    except Exception as exc:
        log.warning("cannot tell which user is unlocking (%s: %s); relying on MAAS's ownership "
                    "check", type(exc).__name__, exc)
    return None


def _check_paddles_holder(fqdn: str) -> None:
    """Refuse (OwnershipError) to release a node paddles shows locked by someone other than
    the user teuthology is unlocking it for: paddles will refuse that unlock, and the node may
    be running someone else's job. When paddles cannot be read, refuse too: whose node it is
    is then unknown, and unlock_one cannot unlock it in paddles either."""
    user = _unlocking_user()
    if user is None or not _top("lock_server"):
        return
    node = _paddles_node(fqdn)
    if node is None:
        raise OwnershipError(
            f"cannot read {fqdn}'s lock from paddles to check that {user!r} holds it; not "
            f"releasing it (teuthology's unlock needs paddles too)",
            machine=fqdn,
        )
    if node.get("locked") and node.get("locked_by") not in (None, user):
        raise OwnershipError(
            f"paddles shows {fqdn} locked by {node['locked_by']!r}, not by {user!r} who is "
            f"unlocking it (teuthology releases before paddles checks the owner; paddles will "
            f"refuse this unlock)",
            machine=fqdn,
        )


def _release_all(reasons: dict[str, str]) -> None:
    """Release each node at exit, logging why. Runs in the exiting thread and starts no
    thread of its own: from an exit hook, Python 3.12 refuses to start native threads. Every
    release is requested first (MAAS then runs them side by side), then, when this process can
    still start its poller, each is waited for within EXIT_RELEASE_TIMEOUT in all."""
    resolve_without_threads()
    try:
        base = load_config()
    except MaasError as exc:
        log.error("cannot release %s in MAAS: %s", ", ".join(reasons), exc)
        return
    deadline = time.monotonic() + EXIT_RELEASE_TIMEOUT
    requested: list[MaasProvisioner] = []
    for fqdn in sorted(reasons):
        log.warning("%s: %s; releasing it in MAAS", fqdn, reasons[fqdn])
        provisioner = MAAS(fqdn).provisioner(base)
        try:
            provisioner.release(wait=False)
        except Exception as exc:
            log.error("%s: release at exit failed: %s", fqdn, exc)
        else:
            requested.append(provisioner)
    if requested and not _threads_can_start():
        log.warning("%s: release requested; not waiting for it to finish (the interpreter is "
                    "shutting down and cannot start the status poller)",
                    ", ".join(p.name for p in requested))
        return
    for provisioner in requested:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning("%s: release requested; not waited for (%.0f s spent at exit)",
                        provisioner.name, EXIT_RELEASE_TIMEOUT)
            continue
        provisioner.config = dataclasses.replace(
            base, release_timeout=min(base.release_timeout, remaining)
        )
        try:
            provisioner.release()
        except Exception as exc:
            log.error("%s: release at exit failed: %s", provisioner.name, exc)


def _threads_can_start() -> bool:
    """False once the interpreter refuses new threads (Python 3.12, during shutdown, unless
    gevent made threads greenlets)."""
    try:
        probe = threading.Thread(target=lambda: None, name="teuthology-maas exit probe",
                                 daemon=True)
        probe.start()
        probe.join()
    except RuntimeError:
        return False
    return True


_tracker = _ReimageTracker()
