"""Loopback ports for the test servers (sshd nodes, beanstalkd): a free one, and whether one
is listening, told without connecting to it."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

__all__ = ["LOOPBACK", "free_port", "loopback_listening"]

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def loopback_listening(port: int) -> bool | None:
    """Whether a socket listens on 127.0.0.1:`port`, from Linux's /proc/net/tcp (None where
    that cannot be read). Unlike a probe connection, it makes no server fork a session."""
    try:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    # the kernel prints the address as the native-endian 32-bit value
    (value,) = struct.unpack("=I", socket.inet_aton(LOOPBACK))
    address = f"{value:08X}:{port:04X}"
    return any(len(f) > 3 and f[1] == address and f[3] == "0A" for f in map(str.split, rows))
