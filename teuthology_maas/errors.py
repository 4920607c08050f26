"""The exception tree.

Every error carries what an operator needs to act: the machine (hostname and system_id),
its MAAS status, and MAAS's own words (the response body, or status_message / events).
None of them ever holds the API key's token secret: messages are built from response
bodies and our own text, never from request headers, and every message (and MAAS's words kept
beside it) passes through `redact` here, the one redaction path of the project.
"""

from __future__ import annotations

from collections.abc import Sequence

from teuthology_maas.redact import redact


class MaasError(Exception):
    """Base of every error raised by teuthology_maas."""

    def __init__(
        self,
        message: str,
        *,
        machine: str | None = None,
        system_id: str | None = None,
        status: str | None = None,
        http_status: int | None = None,
        maas_message: str | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.machine = machine
        self.system_id = system_id
        self.status = status
        self.http_status = http_status
        self.maas_message = redact(maas_message) if maas_message is not None else None

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        parts = [repr(self.message)]
        for name in ("machine", "system_id", "status", "http_status"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class MissingExtra(MaasError, ImportError):
    """An optional part of teuthology-maas is not installed; the message says how to get it
    (e.g. the simulator: pip install 'teuthology-maas[simulator]')."""


class ConfigError(MaasError):
    """The `maas:` configuration is unusable; the message names the key, value and expectation."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class DeploySettingError(ConfigError):
    """A deploy setting (kernel, deploy to memory, storage layout, bond) MAAS would refuse for
    this machine; checked before anything changes in MAAS. `key` is the setting's path in
    the configuration (`deploy.machine_types.smithi.hwe_kernel`), `available` what MAAS
    offers instead when that is a list (kernels, disks)."""

    def __init__(self, message: str, *, key: str, available: Sequence[str] = ()) -> None:
        super().__init__(message, key=key)
        self.available = list(available)


class UserDataError(MaasError):
    """A user_data template cannot be found, read, rendered, or is not valid cloud-config."""

    def __init__(
        self, message: str, *, template: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.template = template
        self.line = line


class MaasHTTPError(MaasError):
    """MAAS answered with an HTTP error status; `maas_message` is its response body."""


class MaasAuthError(MaasHTTPError):
    """401: MAAS rejected the API key (or 403 for a deactivated user)."""


class MaasPermissionDenied(MaasHTTPError):
    """403: not allowed (the machine is locked, or owned by another user)."""


class MaasNotFound(MaasHTTPError):
    """404: unknown endpoint or machine."""


class MaasBadRequest(MaasHTTPError):
    """400: MAAS refused the parameters (its validation message is kept verbatim)."""


class MaasConflict(MaasHTTPError):
    """409 without Retry-After: the machine's state does not allow the operation."""


class NoMachineAvailable(MaasConflict):
    """409 from allocate: nothing matches the constraints."""


class MaasServerError(MaasHTTPError):
    """500 from MAAS: an unhandled error on the region."""


class MaasProtocolError(MaasError):
    """MAAS's answer is not what the MAAS API returns: not JSON, the wrong shape, a field
    missing or of the wrong type, or larger than any real answer. `endpoint` is the call
    (`GET machines/ at http://maas:5240/MAAS/api/2.0/`), `field` the offending field and
    `problem` what was wrong, without the endpoint."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        field: str | None = None,
        problem: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.endpoint = endpoint
        self.field = field
        self.problem = problem if problem is not None else self.message


class MaasUnavailable(MaasError):
    """MAAS could not be reached, or kept answering 503/409-retry past the retry budget."""


class MaasOutcomeUnknown(MaasError):
    """A state-changing POST may or may not have been applied (connection dropped after the
    request was sent, read timeout, 502/503/504 from MAAS or a proxy, a 409 that MAAS asks to
    retry). The client never repeats a POST: the caller re-reads the machine to learn what
    happened, and sends again only when MAAS shows it did not apply, after `retry_after`
    seconds when the answer named a wait."""

    def __init__(
        self,
        message: str,
        *,
        op: str,
        system_id: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        maas_message: str | None = None,
    ) -> None:
        super().__init__(
            message, system_id=system_id, http_status=http_status, maas_message=maas_message
        )
        self.op = op
        self.retry_after = retry_after


class OwnershipError(MaasError):
    """The machine belongs to someone else (another MAAS user, or locked by someone else);
    nothing was touched."""


class TakenOver(OwnershipError):
    """The machine carries another attempt's deployment (same MAAS user, another teuthology
    process, job or operator): the message names it from its owner data and MAAS's events.
    Nothing more was done to the machine."""


class MachineNotFound(MaasError):
    """No machine (or more than one) matches the requested hostname."""


class InvalidNodeName(MachineNotFound):
    """The node name is not a hostname (RFC 1123 labels, optionally `user@` in front); it was
    refused before anything was sent to MAAS."""


class MachineStateError(MaasError):
    """The machine is in a state we refuse to act on (Broken, Commissioning, Rescue mode ...)."""


class ImageNotAvailable(MaasError):
    """The requested OS image is not synced for the machine's architecture."""

    def __init__(self, message: str, *, available: Sequence[str] = (), **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.available = list(available)


class InvalidOSName(ImageNotAvailable):
    """os_type or os_version is not a plain OS name or version (letters, digits, `.`, `-`,
    `_`; no `/`, no `..`); refused before it touched a path, a template or MAAS."""


class DeploymentFailed(MaasError):
    """create() did not deliver a deployed, reachable node; the message carries forensics."""


class NodeQuarantined(DeploymentFailed):
    """create() failed, and the failure was the node's Nth in a row (`quarantine_after`): the
    node is marked broken in MAAS. `quarantine` is the comment naming the failures (also the
    description its host puts in paddles)."""

    quarantine: str = ""


class ReleaseFailed(MaasError):
    """release() could not bring the machine back to Ready."""


class SSHNotReady(MaasError):
    """The node never accepted our SSH key, or runs a different OS than requested."""


class MaasTimeout(MaasError):
    """A bounded wait ran out; `last_status` is what MAAS showed last. Also raised when one
    request outlived its deadline (`endpoint` then names the call)."""

    def __init__(
        self,
        message: str,
        *,
        last_status: str | None = None,
        endpoint: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(message, status=last_status, **kwargs)  # type: ignore[arg-type]
        self.last_status = last_status
        self.endpoint = endpoint
