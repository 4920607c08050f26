"""The exception tree.

Every error carries what an operator needs to act: the machine (hostname and system_id),
its MAAS status, and MAAS's own words (the response body, or status_message / events).
None of them ever holds the API key's token secret: messages are built from response
bodies and our own text, never from request headers.
"""

from __future__ import annotations

from collections.abc import Sequence


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
        super().__init__(message)
        self.message = message
        self.machine = machine
        self.system_id = system_id
        self.status = status
        self.http_status = http_status
        self.maas_message = maas_message

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


class MaasUnavailable(MaasError):
    """MAAS could not be reached, or kept answering 503/409-retry past the retry budget."""


class MaasOutcomeUnknown(MaasError):
    """A state-changing POST may or may not have been applied (connection dropped after the
    request was sent, read timeout, 502/504). The client never repeats it blindly: the caller
    re-reads the machine to learn what happened."""

    def __init__(self, message: str, *, op: str, system_id: str | None = None) -> None:
        super().__init__(message, system_id=system_id)
        self.op = op


class OwnershipError(MaasError):
    """The machine belongs to someone else (another MAAS user, or locked by someone else);
    nothing was touched."""


class MachineNotFound(MaasError):
    """No machine (or more than one) matches the requested hostname."""


class MachineStateError(MaasError):
    """The machine is in a state we refuse to act on (Broken, Commissioning, Rescue mode ...)."""


class ImageNotAvailable(MaasError):
    """The requested OS image is not synced for the machine's architecture."""

    def __init__(self, message: str, *, available: Sequence[str] = (), **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.available = list(available)


class DeploymentFailed(MaasError):
    """create() did not deliver a deployed, reachable node; the message carries forensics."""


class ReleaseFailed(MaasError):
    """release() could not bring the machine back to Ready."""


class SSHNotReady(MaasError):
    """The node never accepted our SSH key, or runs a different OS than requested."""


class MaasTimeout(MaasError):
    """A bounded wait ran out; `last_status` is what MAAS showed last."""

    def __init__(self, message: str, *, last_status: str | None = None, **kwargs: object) -> None:
        super().__init__(message, status=last_status, **kwargs)  # type: ignore[arg-type]
        self.last_status = last_status
