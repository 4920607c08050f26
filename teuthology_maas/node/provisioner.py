"""MaasProvisioner: one node's lifecycle in MAAS, as teuthology asks for it.

create() brings a node from whatever state it is found in to a fresh deployment of the requested
OS that answers over SSH, or fails with MAAS's own explanation after putting the node back where
nobody is left holding it. release() gives a node back to MAAS's pool; it never touches another
user's node, nor another attempt's deployment it has no authority over (see `ownership`).
Every step is decided from the machine's current status (see `decide`), acts only on the
deployment it judged (see `actions`) and is safe against an uncertain outcome.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from teuthology_maas import metrics, names
from teuthology_maas.config import MaasConfig
from teuthology_maas.endpoint import Endpoint, endpoint_for
from teuthology_maas.errors import (
    ImageNotAvailable,
    MaasError,
    MachineNotFound,
    MachineStateError,
    OwnershipError,
    ReleaseFailed,
)
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.models import ABORTABLE, Machine, NodeStatus
from teuthology_maas.node import attempts, images, keep, userdata
from teuthology_maas.node import decide as _decide
from teuthology_maas.node.actions import NodeActions, describe_error
from teuthology_maas.node.create import MAX_STEPS, CreateAttempt, may_act
from teuthology_maas.node.decide import ReleaseStep
from teuthology_maas.node.deploy_options import hostname_prefix, machine_type_of, parse_overrides
from teuthology_maas.node.deploy_plan import DeployPlan, restore_network
from teuthology_maas.node.forensics import collect, failure
from teuthology_maas.node.ownership import Authority, LockHolder, Stamp, Tag
from teuthology_maas.node.quarantine import quarantine_text
from teuthology_maas.node.region import node_region
from teuthology_maas.node.ssh import end_probes, probe_ready, verify_ssh

__all__ = ["MaasProvisioner", "split_name"]

log = logging.getLogger(__name__)


def split_name(name: str) -> tuple[str, str | None]:
    """`user@host.domain` / `host.domain` / `host` -> (short hostname, FQDN or None); an
    invalid name raises InvalidNodeName."""
    node = names.parse_node_name(name)
    return node.short, node.fqdn


def default_owner() -> str:
    """The teuthology owner, as teuthology spells it (user@control-host)."""
    owner = os.environ.get("TEUTHOLOGY_OWNER")
    if owner:
        return owner
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in a container: the uid still says who it was
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class MaasProvisioner:
    """Reimage, release and check one MAAS machine by its teuthology name."""

    def __init__(
        self,
        name: str,
        os_type: str = "ubuntu",
        os_version: str = "22.04",
        config: MaasConfig | None = None,
        client: MaasClient | None = None,
        *,
        endpoint: Endpoint | None = None,
        owner: str | None = None,
        run_name: str | None = None,
        job_id: str | None = None,
        machine_type: str | None = None,
        deploy_options: Mapping[str, Any] | None = None,
        lock: LockHolder | None = None,
        take_over: bool = False,
    ) -> None:
        # Checked before anything else: job input reaches MAAS, cloud-init, SSH and paths.
        self.shortname, given_fqdn = split_name(name)
        self.os_type, self.os_version = names.check_os(os_type, os_version)
        self.name = name
        if endpoint is not None and client is not None and client is not endpoint.client:
            raise TypeError("MaasProvisioner: give a client or an endpoint, not both")
        if config is None:
            config = endpoint.config if endpoint is not None else None
        config = config if config is not None else MaasConfig.load()
        if endpoint is None and client is None:
            # `maas: regions:`: the MAAS installation this node's type belongs to.
            config = node_region(config, self.shortname, machine_type)
        self.config = config
        # Everything per MAAS endpoint (client, user name, poller ...) is shared in-process.
        self.endpoint = endpoint or endpoint_for(self.config, client=client)
        self.client = self.endpoint.client
        self.fqdn = given_fqdn or self.config.fqdn(self.shortname)
        self.owner = owner or default_owner()
        self.run_name = run_name
        self.job_id = job_id
        # Deploy options: the type's and OS's from maas.deploy, then these per-job ones
        # (same keys as one level of deploy:; teuthology itself passes none).
        self.machine_type = machine_type
        self.deploy_overrides = parse_overrides(deploy_options)
        # The paddles lock this provisioner acts for (teuthology): who holds the node now.
        self.lock = lock
        # An operator's explicit takeover: create() may replace any deployment of our user.
        self.take_over = take_over
        # The deployment the last successful create() made, and every token it stamped.
        self.deployment: Stamp | None = None
        self._tokens: set[str] = set()

    def __repr__(self) -> str:
        return (
            f"MaasProvisioner({self.name!r}, os_type={self.os_type!r}, "
            f"os_version={self.os_version!r})"
        )

    # -- lookups -------------------------------------------------------------------------

    @property
    def username(self) -> str:
        """The MAAS user our API key belongs to (asked once per endpoint)."""
        return self.endpoint.username()

    def machine(self) -> Machine:
        """The one MAAS machine whose hostname is our short name (MachineNotFound otherwise)."""
        with metrics.phase("lookup"):
            machine = self._lookup()
        metrics.relabel(machine_type=self.metrics_labels(machine)[1].machine_type)
        return machine

    def metrics_labels(self, machine: Machine | None = None) -> tuple[str, metrics.Labels]:
        """The node and its labels in the metrics: a configured machine type (the one given,
        else the machine's; "other" keeps the label bounded) and the MAAS region."""
        types = self.config.machine_types
        found = machine_type_of(machine, types) if machine else hostname_prefix(self.shortname)
        kind = next((t for t in (self.machine_type, found) if t in types), "other")
        return self.shortname, metrics.Labels(kind, metrics.region_of(self.client.base_url))

    def _lookup(self) -> Machine:
        attempts = self.config.lookup_retries + 1
        found: list[Machine] = []
        for attempt in range(attempts):
            # Coalesced with the lookups of the other nodes starting now (lock-many).
            found = self.endpoint.lookup_hostname(self.shortname)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                break
            if attempt + 1 < attempts:
                # MAAS under load has answered an empty list for a machine that exists.
                time.sleep(self.config.poll_min_interval)
        if not found:
            raise MachineNotFound(
                f"MAAS has no machine with hostname {self.shortname!r} (from {self.name!r}) "
                f"visible to MAAS user {self.username!r} after {attempts} lookups; check the "
                f"name, or whether another user owns it (non-admin keys cannot see other "
                f"users' machines)",
                machine=self.shortname,
            )
        ids = ", ".join(m.describe() for m in found)
        raise MachineNotFound(
            f"{len(found)} MAAS machines have hostname {self.shortname!r}: {ids}; "
            f"expected exactly one",
            machine=self.shortname,
        )

    # -- create --------------------------------------------------------------------------

    @property
    def tokens(self) -> frozenset[str]:
        """The deployment tokens of every create() attempt this provisioner made."""
        return frozenset(self._tokens)

    def authority(self) -> Authority:
        """What this provisioner may undo: its own deployments, and (teuthology) the one made
        under the paddles lock it acts for."""
        return Authority(tokens=frozenset(self._tokens), lock=self.lock)

    @metrics.measured("create")
    def create(self) -> None:
        """Deploy a fresh `os_type os_version` and verify it over SSH (DeploymentFailed if not).

        Each call is one attempt with a token of its own, stamped on the machine before the
        deploy is sent (see docs/lifecycle.md). It takes over a deployment it did not make
        only with the authority to (`lock` held by its job in paddles, `take_over`, or a
        deployment whose process has ended), and stops at once, touching nothing more, when
        another attempt takes the machine over from it."""
        stamp = Stamp.new(
            owner=self.lock.locked_by if self.lock is not None else self.owner,
            run=self.run_name,
            job=str(self.job_id) if self.job_id else None,
            lock=self.lock.description if self.lock is not None else None,
            os_name=f"{self.os_type} {self.os_version}",
            agent=self.config.agent_name,
        )
        self._tokens.add(stamp.token)
        with attempts.running(stamp.token, self.name) as attempt:
            self._create(stamp, attempt)
        self.deployment = stamp

    def _create(self, stamp: Stamp, attempt: attempts.Attempt) -> None:
        username = self.username
        machine = self.machine()
        # Everything that can be checked is checked before MAAS is asked to change anything.
        _decide.next_create_step(machine, username)
        keep.refuse_if_kept(machine, username)
        spec = images.resolve(self.os_type, self.os_version, self.config.image_map)
        try:
            images.ensure_available(self.endpoint.images, spec, machine)
        except ImageNotAvailable:  # perhaps imported since the copy was taken: ask MAAS
            self.endpoint.images.forget()
            images.ensure_available(self.endpoint.images, spec, machine)
        user_data = userdata.render_user_data(
            self.config,
            hostname=machine.hostname,
            fqdn=self.fqdn,
            os_type=self.os_type,
            os_version=self.os_version,
        )
        # Kernel, memory, storage and bond settings: checked before anything changes in MAAS.
        plan = DeployPlan.checked(
            self.client, self.config, machine, spec, os_type=self.os_type,
            os_version=self.os_version, machine_type=self.machine_type,
            overrides=self.deploy_overrides, resources=self.endpoint.images,
        )  # fmt: skip
        node = self._actions(username, machine, tag=stamp.tag, attempt=attempt)
        # Near the end of the deployment: the node's own SSH, which costs MAAS nothing.
        node.probe = lambda: probe_ready(self.fqdn, self.config)
        authority = Authority(
            tokens=frozenset({stamp.token}),
            lock=self.lock,
            claim=self.lock is not None,
            operator=self.take_over,
        )
        keep_as = self.owner if self.config.keep_on_failure else None
        run = CreateAttempt(node, stamp, authority, attempt, plan, keep_as=keep_as)
        log.info(
            "%s: deploying %s %s (%s) as deployment %s, found %s",
            machine.describe(), self.os_type, self.os_version, spec.distro_series,
            stamp.tag.short(), machine.status_name,
        )  # fmt: skip
        started = time.monotonic()
        try:
            run.run(
                distro_series=spec.distro_series,
                user_data=user_data,
                os_text=f"{self.os_type} {self.os_version}",
                verify=lambda: self._verify(run),
            )
        except BaseException as exc:
            error = run.failed(exc, f"deploying {self.os_type} {self.os_version} on {node.name}")
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt / SystemExit: the node is cleaned up; keep exiting
            raise error from exc
        finally:
            end_probes(self.fqdn)  # no session of ours stays open on the node after its wait
        log.info(
            "%s: %s %s deployed and reachable over SSH in %.0f s (deployment %s)",
            machine.describe(), self.os_type, self.os_version, time.monotonic() - started,
            stamp.tag.short(),
        )  # fmt: skip

    def _verify(self, run: CreateAttempt) -> str | None:
        with metrics.phase("ssh_wait"):
            os_release = verify_ssh(self.fqdn, self.config, watch=run.ssh_watch())
        mismatch = images.os_mismatch(os_release, self.os_type, self.os_version)
        return f"{self.fqdn} {mismatch}" if mismatch else None

    # -- release / abort -----------------------------------------------------------------

    @metrics.measured("release")
    def release(
        self,
        erase: str | None = None,
        *,
        wait: bool = True,
        authority: Authority | None = None,
        release_kept: bool = False,
    ) -> None:
        """Give the machine back to MAAS (Ready); a no-op when it is already free.

        Only a deployment `authority` covers is undone (default: this provisioner's own, the
        one made under its paddles `lock`, one carrying no token, or one whose process has
        ended); another one is refused with TakenOver naming it, untouched. `erase`
        overrides the configured erase mode for this release only. With `wait=False` the
        release is only requested (MAAS finishes it by itself): no wait, so no poller
        thread, which is what a process that is exiting can still do. A machine kept for
        debugging (keep_on_failure) is left alone unless `release_kept`, and so is a
        quarantined one (node/quarantine.py)."""
        username = self.username
        machine = self.machine()
        kept = keep.KeptMark.of(machine)
        if kept is not None and machine.owner == username and not release_kept:
            log.warning(
                "%s: %s; not released (teuthology-maas release %s releases it)",
                machine.describe(), kept.describe(), machine.hostname,
            )  # fmt: skip
            return
        if quarantine_text(machine) is not None:  # Broken on purpose, until its repair
            log.warning("%s: quarantined; not released (teuthology-maas quarantine release "
                        "%s after the repair)", machine.describe(), machine.hostname)
            return
        if _decide.next_release_step(machine, username) is ReleaseStep.NOTHING:
            log.info("%s: already %s; nothing to release", machine.describe(), machine.status_name)
            return
        node = self._actions(username, machine)
        node.deployment = may_act(node, machine, authority or self.authority(), "release").token
        try:
            self._release(node, erase, wait=wait)
            if wait and (undone := restore_network(node)):
                log.info("%s:%s", node.name, undone)
        except (MachineStateError, ReleaseFailed, OwnershipError):
            raise
        except MaasError as exc:
            raise failure(
                ReleaseFailed, f"releasing {node.name}", describe_error(exc),
                collect(self.client, node.last),
            ) from exc  # fmt: skip

    def destroy(self) -> None:
        """Upstream teuthology's name for release()."""
        self.release()

    def _release(self, node: NodeActions, erase: str | None, *, wait: bool = True) -> None:
        for _ in range(MAX_STEPS):
            step = _decide.next_release_step(node.last, node.username)  # each action re-reads first
            if step is ReleaseStep.NOTHING:
                log.info("%s: released (%s)", node.name, node.last.status_name)
                return
            node.unlock_if_locked()
            if step is ReleaseStep.ABORT and wait:
                node.abort(comment=node.comment("abort before release"))
                node.wait_aborted()
            elif step is ReleaseStep.WAIT:
                if not wait:
                    log.info("%s: release under way (%s)", node.name, node.last.status_name)
                    return
                node.finish_release()
            else:
                # Without waiting, a Deploying machine is released directly: MAAS accepts
                # that (it stops the deployment), and there is no abort to wait for.
                node.release(erase=erase)
                if not wait:
                    log.info("%s: release requested (%s)", node.name, node.last.status_name)
                    return
                node.finish_release()
        raise MachineStateError(
            f"{node.name} did not reach Ready after {MAX_STEPS} steps "
            f"(last {node.last.status_name}); is someone else acting on it?",
            **node.last.error_fields(),
        )

    @metrics.measured("abort")
    def abort(self, *, authority: Authority | None = None) -> None:
        """Stop an in-flight deployment (or disk erasing) and wait until MAAS has stopped it.
        Only a deployment `authority` covers is aborted (the default as for release())."""
        username = self.username
        machine = self.machine()
        _decide.check_ownership(machine, username, "abort")
        if machine.status not in ABORTABLE:
            log.info("%s: %s; nothing to abort", machine.describe(), machine.status_name)
            return
        node = self._actions(username, machine)
        node.deployment = may_act(node, machine, authority or self.authority(), "abort").token
        node.unlock_if_locked()
        node.abort(comment=node.comment("abort"))
        done = node.wait_aborted()
        log.info("%s: aborted (%s)", done.describe(), done.status_name)

    # -- readiness -----------------------------------------------------------------------

    def is_ready(self) -> bool:
        """Deployed, ours, reachable over SSH and running the requested OS."""
        try:
            machine = self.machine()
        except MachineNotFound:
            return False
        if machine.status is not NodeStatus.DEPLOYED or machine.owner != self.username:
            return False
        try:
            os_release = verify_ssh(
                self.fqdn, self.config, timeout=min(self.config.ssh_timeout, 15.0)
            )
        except MaasError as exc:  # verify_ssh turns every SSH failure into SSHNotReady
            log.debug("%s: not ready over SSH: %s", machine.describe(), exc)
            return False
        return images.os_mismatch(os_release, self.os_type, self.os_version) is None

    # -- helpers -------------------------------------------------------------------------

    def _actions(
        self,
        username: str,
        machine: Machine,
        *,
        tag: Tag | None = None,
        attempt: attempts.Attempt | None = None,
    ) -> NodeActions:
        job = f" job {self.job_id}" if self.job_id else ""
        run = f" run {self.run_name}" if self.run_name else ""
        node = NodeActions(
            self.endpoint,
            self.config,
            username,
            machine,
            actor=f"{self.owner}{run}{job}",
            tag=tag if tag is not None else Tag.request(),
            attempt=attempt,
        )
        # What the poller learns this machine's waits as (deployments differ per hardware).
        node.machine_type = (
            self.machine_type or machine_type_of(machine, self.config.machine_types) or ""
        )
        return node
