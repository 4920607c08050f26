"""Why an SSH attempt to a node failed, in the few words a person watching the wait needs:
the name does not resolve, the connection is refused, authentication is refused ...

paramiko folds refused and unreachable connections into NoValidConnectionsError (one error
per address tried); the resolver's answers arrive as socket.gaierror."""

from __future__ import annotations

import errno
import socket

import paramiko

from teuthology_maas.waits import Reason

__all__ = ["reason_for", "unresolvable"]

# getaddrinfo's "no such name" answers (EAI_NODATA is glibc's "no address for this name");
# anything else (EAI_AGAIN: the resolver did not answer) may pass.
_NO_SUCH_NAME = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


def reason_for(exc: BaseException) -> str:
    """Why an attempt failed, in the few words a person watching the wait needs."""
    if isinstance(exc, paramiko.AuthenticationException):
        return Reason.AUTH_REFUSED
    if isinstance(exc, socket.gaierror):
        return Reason.NAME_UNRESOLVED if exc.errno in _NO_SUCH_NAME else Reason.DNS_TEMPORARY
    causes: list[BaseException] = [exc]
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        causes = list(exc.errors.values()) or causes
    codes = {getattr(cause, "errno", None) for cause in causes}
    if codes & {errno.ECONNREFUSED} or any(isinstance(c, ConnectionRefusedError) for c in causes):
        return Reason.REFUSED
    if codes & {errno.EHOSTUNREACH, errno.ENETUNREACH}:
        return Reason.UNREACHABLE
    if isinstance(exc, TimeoutError):
        return Reason.TIMED_OUT
    if isinstance(exc, ConnectionResetError | EOFError):
        return Reason.RESET
    if isinstance(exc, paramiko.SSHException):
        return Reason.HANDSHAKE
    return Reason.OTHER


def unresolvable(exc: BaseException) -> bool:
    return isinstance(exc, socket.gaierror) and exc.errno in _NO_SUCH_NAME
