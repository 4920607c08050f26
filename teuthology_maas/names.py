"""Node names and OS names as they enter the library, checked whole before anything uses them.

A node name comes from a job, paddles or an operator's command line and ends up in a MAAS
query, cloud-init's `fqdn:`, the SSH target (and so in a lab ssh_config's `ProxyCommand ...
%h`) and log lines; an OS name ends up in a template path. So both are held to the strictest
form that real names take, and anything else is refused before MAAS or a file is touched:

* a node name is an RFC 1123 hostname (dot-separated labels of letters, digits and inner
  hyphens, 1 to 63 characters each, 253 in all; one trailing dot allowed), optionally with a
  login name and `@` in front: no port, no option, no space, no shell character can pass;
* an OS type is a word (`ubuntu`, `centos`, `rhel`), an OS version letters, digits, `.`, `-`
  and `_` (`22.04`, `9.stream`, `jammy`), never `/` or `..`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from teuthology_maas.errors import InvalidNodeName, InvalidOSName
from teuthology_maas.redact import excerpt

__all__ = ["NodeName", "check_os", "parse_node_name"]

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_OS_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_OS_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
MAX_HOSTNAME = 253
_EXPECTED = (
    "expected host, host.domain or user@host.domain: dot-separated labels of letters, digits "
    "and inner '-' (1 to 63 characters each, 253 in all)"
)


@dataclass(frozen=True)
class NodeName:
    """A checked node name: `user` (or None) and `host` (short name or FQDN, no final dot)."""

    user: str | None
    host: str

    @property
    def short(self) -> str:
        """The MAAS hostname: the first label."""
        return self.host.split(".", 1)[0]

    @property
    def fqdn(self) -> str | None:
        """The fully qualified name, when one was given."""
        return self.host if "." in self.host else None


def _host_problem(host: str) -> str | None:
    if len(host) > MAX_HOSTNAME:
        return f"{len(host)} characters long (at most {MAX_HOSTNAME})"
    for label in host.split("."):
        if not label:
            return "an empty label (two dots in a row, or a leading dot)"
        if _LABEL.fullmatch(label):
            continue
        bad = next((c for c in label if not (c.isascii() and (c.isalnum() or c == "-"))), None)
        if bad is not None:
            return f"the character {bad!r}, which no hostname has"
        if len(label) > 63:
            return f"a label of {len(label)} characters (at most 63)"
        return f"the label {label[:63]!r} starting or ending with '-'"
    return None


def parse_node_name(name: Any) -> NodeName:
    """The checked form of `name`; InvalidNodeName (nothing sent anywhere) otherwise."""
    if not isinstance(name, str):
        raise InvalidNodeName(f"node name {excerpt(name)} is not a string; {_EXPECTED}")
    text = name.strip()
    user, at, host = text.rpartition("@")
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise InvalidNodeName(f"no hostname in {excerpt(name)}; {_EXPECTED}")
    problem = _host_problem(host)
    if problem is None and at and not _USER.fullmatch(user):
        problem = f"the login name {excerpt(user, 60)} before '@', which is not a user name"
    if problem is not None:
        raise InvalidNodeName(
            f"node name {excerpt(name, 120)} has {problem}; {_EXPECTED}; refused before "
            "anything was sent to MAAS"
        )
    return NodeName(user or None, host)


def check_os(os_type: Any, os_version: Any) -> tuple[str, str]:
    """`(os_type, os_version)` as strings when both are plain OS names; InvalidOSName (before
    any path, template or MAAS call) otherwise."""
    os_type = str(os_type).strip() if isinstance(os_type, str | int | float) else os_type
    if isinstance(os_version, str | int | float):
        os_version = str(os_version).strip()
    if not isinstance(os_type, str) or not _OS_TYPE.fullmatch(os_type):
        raise InvalidOSName(
            f"os_type {excerpt(os_type, 80)} is not an OS name; expected a word of letters, "
            "digits, '-' and '_' such as ubuntu, centos or rhel"
        )
    if not isinstance(os_version, str) or not _OS_VERSION.fullmatch(os_version):
        raise InvalidOSName(
            f"os_version {excerpt(os_version, 80)} of {os_type} is not an OS version; expected "
            "letters, digits, '.', '-' and '_' such as 22.04, 9.stream or jammy (no '/')"
        )
    if ".." in os_version:
        raise InvalidOSName(
            f"os_version {excerpt(os_version, 80)} of {os_type} contains '..'; expected a "
            "version such as 22.04 or 9.stream"
        )
    return os_type, os_version
