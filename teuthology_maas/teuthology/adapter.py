"""The teuthology-facing surface of teuthology_maas, shaped like teuthology/provision/fog.py.

Teuthology calls exactly this (see docs/teuthology-integration.md):

- `get_types()` on every lock and unlock decision: the machine types MAAS provisions. Reads the
  config only; never raises, never touches the network.
- `enabled(warn=False)`: whether the `maas:` section is usable.
- `MAAS(name, os_type, os_version).create()` from `provision.reimage()`; `MAAS(name).release()`
  from `lock.ops.stop_node()` when a node is unlocked.

The work is MaasProvisioner's; this module maps teuthology's names, config and lock records onto
it: who holds the node in paddles (stamped on the deployment by create(), required of it by
release()), who is unlocking it (`unlocking`), and the process's lifetime (`lifetime`). It is
the only module of the package that imports teuthology, and importing teuthology switches the
process to gevent: import this module only inside teuthology processes.

Configuration is read from `teuthology.config.config` when called, never at import: its
`maas:` section, top-level `lab_domain`, and as fall-backs for the SSH check teuthology's own
`ssh_key` and `ssh_config_path` (so the library reaches nodes the way teuthology will).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

from teuthology import misc
from teuthology.config import config as teuthology_config

from teuthology_maas import names
from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import MaasError, MachineNotFound, NodeQuarantined, OwnershipError
from teuthology_maas.node.forensics import sentence
from teuthology_maas.node.ownership import Authority, LockHolder
from teuthology_maas.node.provisioner import MaasProvisioner, default_owner
from teuthology_maas.teuthology import lifetime
from teuthology_maas.teuthology.paddles import (
    LockServerUnavailable,
    PaddlesNode,
    PaddlesReader,
    unlock_refusal,
)
from teuthology_maas.teuthology.paddles_nodes import mark_down
from teuthology_maas.teuthology.unlocking import unlock_request

__all__ = ["MAAS", "enabled", "get_types", "load_config"]

log = logging.getLogger("teuthology_maas.teuthology")

# Bounds for the clean-up this module does when the process exits (see _clean_up_at_exit):
# a leaving CLI must not hang for MAAS's full erase time.
EXIT_RELEASE_TIMEOUT = 120.0
PADDLES_TIMEOUT = 10.0


def _top(name: str) -> Any:
    try:
        return teuthology_config.get(name)
    except (AttributeError, KeyError, TypeError):  # a config object without the key or get()
        return None


def _config_dir() -> Path | None:
    yaml_path = getattr(teuthology_config, "yaml_path", None)
    return Path(str(yaml_path)).expanduser().absolute().parent if yaml_path else None


def _problem() -> str | None:
    try:
        return MaasConfig.problem(
            _top("maas"), base_dir=_config_dir(), top={"lab_domain": _top("lab_domain")}
        )
    except Exception as exc:  # get_types() must never raise, whatever the config holds
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
    except Exception:  # teuthology calls this on every lock decision: never raise
        return []


def load_config() -> MaasConfig:
    """The MaasConfig of teuthology's current config (raises ConfigError naming the key).

    When `maas:` sets no ssh_private_key / ssh_config, teuthology's own `ssh_key` (its first
    entry, if a list) and `ssh_config_path` are used, if those files exist: teuthology only
    uses them when they do, and the node must be reachable the way teuthology reaches it.
    """
    # with `maas: regions:`, each region's own settings get the same fall-backs
    return MaasConfig.from_teuthology(teuthology_config).map_regions(_ssh_fallbacks)


def _ssh_fallbacks(cfg: MaasConfig) -> MaasConfig:
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

    def provisioner(
        self, config: MaasConfig | None = None, *, lock: LockHolder | None = None
    ) -> MaasProvisioner:
        # The process's Endpoint for the config (endpoint_for): one client, poller ... per MAAS.
        run, job = _run_and_job(lock.description if lock is not None else None)
        return MaasProvisioner(
            self.name, self.os_type, self.os_version, config=config or load_config(),
            owner=lock.locked_by if lock is not None else default_owner(),
            run_name=run, job_id=job, lock=lock,
        )  # fmt: skip

    def create(self) -> None:
        """Deploy os_type/os_version and return once the node answers over SSH with it.

        The deployment is stamped with the paddles lock that holds the node (owner, and the
        job's archive path as description), which is what release() later requires of it."""
        cfg = load_config()
        holder = _holder(_lock_record(self.name, cfg))
        provisioner = self.provisioner(cfg, lock=holder)
        started = time.monotonic()
        # These wordings ("Reimaging ...", "Reimaged ... in N s", "... failed after") are read
        # from supervisors' logs (testing.dispatcher_lab, demo --suite): keep them.
        self.log.info("Reimaging %s with %s %s through MAAS", self.name, self.os_type,
                      self.os_version)
        if holder is not None:
            self.log.info("%s is locked in paddles by %s: the deployment is stamped with that "
                          "lock", self.name, holder.describe())
        try:
            with lifetime.hosting():
                provisioner.create()
        except MaasError as exc:  # create() says every failure this way; anything else is a bug
            self.log.error("Reimaging %s through MAAS failed after %.0f s: %s", self.name,
                           time.monotonic() - started, exc)
            if isinstance(exc, NodeQuarantined):
                _quarantine_in_paddles(self.name, cfg, exc.quarantine)
            raise
        if provisioner.deployment is not None:
            _deployed.add(self.name, provisioner.deployment.token)
        self.log.info("Reimaged %s with %s %s in %.0f s", self.name, self.os_type,
                      self.os_version, time.monotonic() - started)

    def release(self) -> None:
        """Give the node back to MAAS, touching only what teuthology's unlock may undo.

        Refused (OwnershipError, nothing touched in MAAS): a node another MAAS user holds; a
        node whose unlock paddles will refuse (teuthology asks paddles only after this
        returns: another user's lock, or another job's description); a node whose lock
        paddles cannot show; a deployment other than the one made under paddles' current
        lock (TakenOver, naming it)."""
        cfg = load_config()
        started = time.monotonic()
        try:
            record = _lock_record(self.name, cfg, required=True)
            _check_unlock(self.name, record)
            holder = _holder(record)
            # A create() of this node still running here (the supervisor unlocking after a
            # sibling failed): stop it first instead of racing it.
            lifetime.stop_node(lambda name: _same_node(name, self.name))
            authority = Authority(tokens=_deployed.tokens(self.name), lock=holder)
            self.provisioner(cfg, lock=holder).release(authority=authority)
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
        _deployed.discard(self.name)
        self.log.info("Released %s in MAAS in %.0f s", self.name, time.monotonic() - started)


def _same_node(a: str, b: str) -> bool:
    return str(misc.canonicalize_hostname(a, user=None)) == str(
        misc.canonicalize_hostname(b, user=None)
    )


def _run_and_job(description: str | None) -> tuple[str | None, str | None]:
    """teuthology locks a job's nodes with the job's archive path as description
    (`<archive_base>/<run>/<job_id>`): the run and job it names, when it looks like one."""
    if not description:
        return None, None
    parts = PurePosixPath(description.strip()).parts
    if len(parts) >= 2 and parts[-1].isdigit():
        return parts[-2], parts[-1]
    return None, None


# -- paddles ----------------------------------------------------------------------------------


def _lock_record(fqdn: str, cfg: MaasConfig, *, required: bool = False) -> PaddlesNode | None:
    """The node's lock record in paddles; None when no lock server is configured, or (unless
    `required`) when it cannot be read, which is logged."""
    url = _top("lock_server")
    if not url:
        return None
    try:
        with PaddlesReader(str(url), timeout=min(cfg.http_timeout, PADDLES_TIMEOUT)) as paddles:
            return paddles.node(fqdn)
    except LockServerUnavailable as exc:
        if required:
            raise OwnershipError(
                f"cannot read {fqdn}'s lock from paddles to check who holds it ({exc}); not "
                f"releasing it (teuthology's unlock needs paddles too)",
                machine=fqdn,
            ) from exc
        log.warning("%s: cannot read its lock from the lock server: %s", fqdn, exc)
        return None


def _quarantine_in_paddles(fqdn: str, cfg: MaasConfig, text: str) -> None:
    """The create() that quarantined the node in MAAS marks it down in paddles (never its
    lock; its description only when nobody holds it). Best effort: the failure being raised
    is what teuthology must see; `reconcile --apply` finishes what could not be done here."""
    url = _top("lock_server")
    if not url:
        return
    try:
        done = mark_down(str(url), fqdn, text, timeout=min(cfg.http_timeout, PADDLES_TIMEOUT))
    except (MaasError, ValueError) as exc:
        log.warning("%s: quarantined in MAAS, but not marked down in paddles: %s", fqdn, exc)
        return
    log.warning("%s: quarantined: %s", fqdn, done)


def _holder(record: PaddlesNode | None) -> LockHolder | None:
    if record is None or not record.locked or not record.locked_by:
        return None
    return LockHolder(record.locked_by, record.description)


def _check_unlock(fqdn: str, record: PaddlesNode | None) -> None:
    """Refuse (OwnershipError) when paddles is going to refuse the unlock teuthology is
    performing: releasing first would take the node from the job that keeps holding it."""
    request = unlock_request(fqdn)
    if request is None or record is None:
        return
    refusal = unlock_refusal(record, request.user, request.description)
    if refusal is not None:
        raise OwnershipError(
            f"paddles will refuse this unlock of {fqdn} by {request.user!r} ({refusal}); "
            f"paddles shows it {record.describe_lock()} (teuthology releases before paddles "
            f"checks the unlock)",
            machine=fqdn,
        )


# -- the nodes this process deployed, for the exit hook -----------------------------------------


class _Deployed:
    """Deployments this process made for teuthology and has not released (FQDN -> tokens).

    When one node of a parallel reimage fails, teuthology unlocks every node in paddles
    without calling release() and exits. At exit, the nodes deployed here that paddles no
    longer shows locked are released (only the deployment this process made: its token)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, set[str]] = {}

    def add(self, fqdn: str, token: str) -> None:
        with self._lock:
            self._tokens.setdefault(fqdn, set()).add(token)
        lifetime.at_exit(_release_orphans)

    def discard(self, fqdn: str) -> None:
        with self._lock:
            self._tokens.pop(fqdn, None)

    def tokens(self, fqdn: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._tokens.get(fqdn, ()))

    def snapshot(self) -> dict[str, frozenset[str]]:
        with self._lock:
            return {fqdn: frozenset(tokens) for fqdn, tokens in self._tokens.items()}


_deployed = _Deployed()


def _release_orphans() -> None:
    """At exit: release each node deployed here that paddles no longer shows locked, as its
    own deployment only. Runs in the exiting thread and starts no thread of its own: from an
    exit hook, Python 3.12 refuses to start native threads. Every release is requested first
    (MAAS then runs them side by side), then, when this process can still start its poller,
    each is waited for within EXIT_RELEASE_TIMEOUT in all."""
    try:
        base = load_config()
    except MaasError as exc:
        log.error("cannot release nodes at exit: %s", exc)
        return
    orphans = {
        fqdn: tokens
        for fqdn, tokens in _deployed.snapshot().items()
        if (record := _lock_record(fqdn, base)) is not None and not record.locked
    }
    deadline = time.monotonic() + EXIT_RELEASE_TIMEOUT
    requested: list[tuple[MaasProvisioner, Authority]] = []
    for fqdn in sorted(orphans):
        log.warning("%s: deployed for teuthology but no longer locked in paddles; releasing "
                    "it in MAAS", fqdn)
        provisioner = MAAS(fqdn).provisioner(base)
        authority = Authority(tokens=orphans[fqdn])
        try:
            provisioner.release(wait=False, authority=authority)
        except MaasError as exc:
            log.error("%s: release at exit failed: %s", fqdn, exc)
        else:
            requested.append((provisioner, authority))
    if requested and not _threads_can_start():
        log.warning("%s: release requested; not waiting for it to finish (the interpreter is "
                    "shutting down and cannot start the status poller)",
                    ", ".join(p.name for p, _ in requested))
        return
    for provisioner, authority in requested:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning("%s: release requested; not waited for (%.0f s spent at exit)",
                        provisioner.name, EXIT_RELEASE_TIMEOUT)
            continue
        region = provisioner.config  # the node's own MAAS region's settings (maas: regions:)
        provisioner.config = dataclasses.replace(
            region, release_timeout=min(region.release_timeout, remaining)
        )
        try:
            provisioner.release(authority=authority)
        except MaasError as exc:
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
