"""MaasProvisioner: one node's lifecycle in MAAS, as teuthology asks for it.

create() brings a node from whatever state it is found in to a fresh deployment of the requested
OS that answers over SSH, or fails with MAAS's own explanation after putting the node back where
nobody is left holding it. release() gives a node back to MAAS's pool; it never touches another
user's node. Every step is decided from the machine's current status (see `node.decide`) and every
MAAS action is safe against an uncertain outcome (see `node.actions`).
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from teuthology_maas import names
from teuthology_maas.config import MaasConfig
from teuthology_maas.endpoint import Endpoint, endpoint_for
from teuthology_maas.errors import (
    DeploymentFailed,
    ImageNotAvailable,
    MaasTimeout,
    MachineNotFound,
    MachineStateError,
    ReleaseFailed,
)
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.models import (
    ABORTABLE,
    DEPLOY_TARGET,
    Machine,
    NodeStatus,
)
from teuthology_maas.node import decide as _decide
from teuthology_maas.node import images, keep, userdata
from teuthology_maas.node.actions import NodeActions, describe_error, ended_in
from teuthology_maas.node.decide import CreateStep, ReleaseStep
from teuthology_maas.node.deploy_options import parse_overrides
from teuthology_maas.node.deploy_plan import DeployPlan, restore_network
from teuthology_maas.node.forensics import collect, failure
from teuthology_maas.node.ssh import verify_ssh
from teuthology_maas.teuthology.lifetime import sigterm_exits, stopped_at_exit, wait_for_siblings

__all__ = ["MaasProvisioner", "split_name"]

log = logging.getLogger(__name__)

# A create() or release() that needs more steps than this is chasing a machine someone else
# keeps changing; stop and say so instead of looping.
_MAX_STEPS = 8


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
    except Exception:  # no login name in a container: the uid still says who it was
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
    ) -> None:
        # Checked before anything else: job input reaches MAAS, cloud-init, SSH and paths.
        self.shortname, given_fqdn = split_name(name)
        self.os_type, self.os_version = names.check_os(os_type, os_version)
        self.name = name
        if endpoint is not None and client is not None and client is not endpoint.client:
            raise TypeError("MaasProvisioner: give a client or an endpoint, not both")
        if config is None:
            config = endpoint.config if endpoint is not None else None
        self.config = config if config is not None else MaasConfig.load()
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

    def create(self) -> None:
        """Deploy a fresh `os_type os_version` and verify it over SSH (DeploymentFailed if not)."""
        # How long an interrupted create() may take to clean up: abort, forensics, release.
        stop_timeout = self.config.abort_timeout + 60.0
        with sigterm_exits(), stopped_at_exit(stop_timeout):
            try:
                self._create()
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    wait_for_siblings(stop_timeout)
                raise

    def _create(self) -> None:
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
        node = self._actions(username, machine)
        # A machine that was already ours is ours to clean up if this attempt fails.
        node.touched = machine.owner == username
        log.info(
            "%s: deploying %s %s (%s), found %s",
            machine.describe(), self.os_type, self.os_version, spec.distro_series,
            machine.status_name,
        )  # fmt: skip
        started = time.monotonic()
        try:
            self._prepare(node, plan)
            options = plan.before_deploy(node)  # may release and allocate again: stamp after
            self._stamp(node)
            node.deploy(
                distro_series=spec.distro_series,
                user_data=user_data,
                comment=node.comment(f"deploy {self.os_type} {self.os_version}"),
                options=options,
            )
            deployed = node.wait_deployed()
            if deployed.status not in DEPLOY_TARGET:
                raise DeploymentFailed(
                    ended_in(deployed, "the deployment"),
                    **deployed.error_fields(),
                )
            if self.config.lock_after_deploy:
                node.lock()
            os_release = verify_ssh(self.fqdn, self.config)
            mismatch = images.os_mismatch(os_release, self.os_type, self.os_version)
            if mismatch:
                raise DeploymentFailed(f"{self.fqdn} {mismatch}", machine=machine.hostname)
        except BaseException as exc:
            failure = self._failed_create(node, exc)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt / SystemExit: the node is cleaned up; keep exiting
            raise failure from exc
        log.info(
            "%s: %s %s deployed and reachable over SSH in %.0f s",
            machine.describe(), self.os_type, self.os_version, time.monotonic() - started,
        )  # fmt: skip

    def _prepare(self, node: NodeActions, plan: DeployPlan | None = None) -> None:
        """Bring the machine to Allocated-to-us, one decided step at a time."""
        for _ in range(_MAX_STEPS):
            step = _decide.next_create_step(node.last, node.username)
            if step is CreateStep.DEPLOY:
                return
            if step is CreateStep.ALLOCATE:
                if plan is not None:
                    plan.before_allocate(node)  # MAAS sets storage layouts on Ready machines
                node.allocate(comment=node.comment("allocate"))
            elif step is CreateStep.ABORT:
                log.info("%s: aborting the deployment in progress", node.name)
                node.unlock_if_locked()
                node.abort(comment=node.comment("abort before redeploy"))
                node.wait_aborted()
            elif step is CreateStep.RELEASE:
                # A failed release or erase is retried here too; if it fails again,
                # finish_release raises ReleaseFailed with MAAS's explanation.
                log.info("%s: releasing %s before the redeploy", node.name, node.last.status_name)
                node.unlock_if_locked()
                node.release()
                node.finish_release()
            elif step is CreateStep.WAIT_RELEASE:
                log.info("%s: waiting for the release in progress", node.name)
                node.finish_release()
        raise MachineStateError(
            f"{node.name} did not settle into a deployable state after {_MAX_STEPS} steps "
            f"(last {node.last.status_name}); is someone else acting on it?",
            **node.last.error_fields(),
        )

    def _stamp(self, node: NodeActions) -> None:
        data = {
            "teuthology_owner": self.owner,
            "teuthology_os": f"{self.os_type} {self.os_version}",
            "agent": self.config.agent_name,
        }
        if self.run_name:
            data["teuthology_run"] = self.run_name
        if self.job_id:
            data["teuthology_job"] = str(self.job_id)
        node.stamp(data)

    def _failed_create(self, node: NodeActions, exc: BaseException) -> DeploymentFailed:
        """Clean up after a failed create() and build the exception that explains it."""
        interrupted = not isinstance(exc, Exception)
        cause = _cause(exc, interrupted)
        # MAAS's story of the failure first: the clean-up adds events of its own.
        forensics = collect(self.client, node.last)
        if node.touched and self.config.keep_on_failure and not interrupted:
            outcome = keep.keep_failed(node, who=self.owner, reason=cause)
        elif node.touched:
            outcome = node.clean_up(wait=not interrupted)
            if not interrupted:
                outcome += restore_network(node)
        else:
            outcome = "nothing was changed in MAAS"
        error = failure(
            DeploymentFailed, f"deploying {self.os_type} {self.os_version} on {node.name}",
            cause, forensics, then=f"Clean-up: {outcome}",
            # a ReleaseFailed already carries MAAS's account
            with_summary=not isinstance(exc, ReleaseFailed),
        )  # fmt: skip
        log.error("%s", error)
        return error

    # -- release / abort -----------------------------------------------------------------

    def release(
        self, erase: str | None = None, *, wait: bool = True, release_kept: bool = False
    ) -> None:
        """Give the machine back to MAAS (Ready); a no-op when it is already free.

        `erase` overrides the configured erase mode for this release only. With `wait=False`
        the release is only requested (MAAS finishes it by itself): no wait, so no poller
        thread, which is what a process that is exiting can still do. A machine kept for
        debugging (keep_on_failure) is left alone unless `release_kept`."""
        username = self.username
        machine = self.machine()
        kept = keep.KeptMark.of(machine)
        if kept is not None and machine.owner == username and not release_kept:
            log.warning(
                "%s: %s; not released (teuthology-maas release %s releases it)",
                machine.describe(), kept.describe(), machine.hostname,
            )  # fmt: skip
            return
        if _decide.next_release_step(machine, username) is ReleaseStep.NOTHING:
            log.info("%s: already %s; nothing to release", machine.describe(), machine.status_name)
            return
        node = self._actions(username, machine)
        try:
            self._release(node, erase, wait=wait)
            if wait and (undone := restore_network(node)):
                log.info("%s:%s", node.name, undone)
        except (MachineStateError, ReleaseFailed):
            raise
        except Exception as exc:
            raise failure(
                ReleaseFailed, f"releasing {node.name}", describe_error(exc),
                collect(self.client, node.last),
            ) from exc  # fmt: skip

    def destroy(self) -> None:
        """Upstream teuthology's name for release()."""
        self.release()

    def _release(self, node: NodeActions, erase: str | None, *, wait: bool = True) -> None:
        for _ in range(_MAX_STEPS):
            step = _decide.next_release_step(node.last, node.username)
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
            f"{node.name} did not reach Ready after {_MAX_STEPS} steps "
            f"(last {node.last.status_name}); is someone else acting on it?",
            **node.last.error_fields(),
        )

    def abort(self) -> None:
        """Stop an in-flight deployment (or disk erasing) and wait until MAAS has stopped it."""
        username = self.username
        machine = self.machine()
        _decide.check_ownership(machine, username, "abort")
        if machine.status not in ABORTABLE:
            log.info("%s: %s; nothing to abort", machine.describe(), machine.status_name)
            return
        node = self._actions(username, machine)
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
        except Exception as exc:
            log.debug("%s: not ready over SSH: %s", machine.describe(), exc)
            return False
        return images.os_mismatch(os_release, self.os_type, self.os_version) is None

    # -- helpers -------------------------------------------------------------------------

    def _actions(self, username: str, machine: Machine) -> NodeActions:
        job = f" job {self.job_id}" if self.job_id else ""
        run = f" run {self.run_name}" if self.run_name else ""
        return NodeActions(
            self.endpoint, self.config, username, machine, actor=f"{self.owner}{run}{job}"
        )


def _cause(exc: BaseException, interrupted: bool) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if interrupted:
        return "stopped: the process is exiting"
    if isinstance(exc, MaasTimeout):
        return f"timed out: {exc}"
    return describe_error(exc)
