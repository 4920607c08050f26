"""Where the processes of one host meet: a private directory, the leader's lock, its socket.

Everything here refuses what another user could have planted: the directory must be ours and
not writable by group or world (a directory we create is 0700), the lock file is opened
without following a symlink and must be ours, the socket a follower connects to must be a
socket we own, and the process at its other end must run as our user (SO_PEERCRED). A refusal
is a `HostShareRefused`: the caller then polls in its own process, as without sharing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import socket
import stat
import struct
import tempfile
from pathlib import Path

__all__ = ["HostLock", "HostShareRefused", "check_peer", "check_socket_path", "runtime_dir",
           "share_name"]  # fmt: skip

DIR_NAME = "teuthology-maas"


class HostShareRefused(OSError):
    """The shared directory, lock or socket is not safe to use (or could not be set up)."""


def runtime_dir(configured: str | None = None, *, uid: int | None = None) -> Path:
    """The per-user directory for lock files and sockets, created 0700 if missing:
    `configured`, else `$XDG_RUNTIME_DIR/teuthology-maas` (when that directory exists: sudo
    can leave the variable behind), else `/tmp/teuthology-maas-$UID`."""
    uid = os.getuid() if uid is None else uid
    if configured:
        path = Path(configured).expanduser()
    elif os.environ.get("XDG_RUNTIME_DIR") and Path(os.environ["XDG_RUNTIME_DIR"]).is_dir():
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / DIR_NAME
    else:
        path = Path(tempfile.gettempdir()) / f"{DIR_NAME}-{uid}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise HostShareRefused(exc.errno, f"cannot create {path}: {exc.strerror}") from exc
    check_private_dir(path, uid=uid)
    return path


def check_private_dir(path: Path, *, uid: int) -> None:
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise _refused(f"{path} is not a directory (a symlink or file put there?)")
    if st.st_uid != uid:
        raise _refused(f"{path} belongs to uid {st.st_uid}, not to us (uid {uid})")
    if st.st_mode & 0o022:
        raise _refused(
            f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"expected a private directory (0700)"
        )


def share_name(api_url: str, consumer_key: str, verify: object) -> str:
    """A file name for one MAAS endpoint and key (a digest: neither the URL nor any part of
    the key appears in a path). The TLS setting is part of it: a process that verifies
    certificates never takes answers read by one that does not."""
    text = f"{api_url}\0{consumer_key}\0{verify!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _refused(text: str) -> HostShareRefused:
    return HostShareRefused(errno.EPERM, text)


class HostLock:
    """The leader's lock: an exclusive flock on `<dir>/<name>.lock`, held while it leads."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.pid = os.getpid()

    @classmethod
    def try_acquire(cls, path: Path, *, uid: int | None = None) -> HostLock | None:
        """The lock if nobody holds it (never blocks: under gevent a blocking flock would stop
        every greenlet); None when another process leads."""
        uid = os.getuid() if uid is None else uid
        for _ in range(5):
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(path, flags, 0o600)
            except OSError as exc:
                raise HostShareRefused(exc.errno, f"cannot open {path}: {exc.strerror}") from exc
            try:
                st = os.fstat(fd)
                if st.st_uid != uid or not stat.S_ISREG(st.st_mode):
                    raise _refused(f"{path} is not a file of ours (uid {st.st_uid})")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    return None
                # A leader leaving unlinks the file while holding it: a lock taken on a file
                # no longer at `path` leads nobody. Try again on the one there now.
                try:
                    now = os.stat(path, follow_symlinks=False)
                except FileNotFoundError:
                    os.close(fd)
                    continue
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    os.close(fd)
                    continue
                return cls(path, fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
        return None

    def release(self, *, unlink: bool = True) -> None:
        """Give the lock up (in the process that took it only: a forked child holding a copy
        of the descriptor just closes its copy, and the parent keeps leading)."""
        if self.fd < 0:
            return
        if unlink and self.pid == os.getpid():
            with contextlib.suppress(OSError):  # still held: nobody took it meanwhile
                os.unlink(self.path)
        try:
            os.close(self.fd)
        finally:
            self.fd = -1


def check_socket_path(path: Path, *, uid: int | None = None) -> None:
    """Refuse a socket path that is not a socket of ours (planted by someone else)."""
    uid = os.getuid() if uid is None else uid
    st = os.lstat(path)
    if not stat.S_ISSOCK(st.st_mode):
        raise _refused(f"{path} is not a socket (a file or symlink put there?)")
    if st.st_uid != uid:
        raise _refused(f"{path} belongs to uid {st.st_uid}, not to us (uid {uid})")


def check_peer(sock: socket.socket, *, uid: int | None = None) -> int:
    """The pid of the process at the other end of a unix socket, refusing one that does not
    run as our user."""
    uid = os.getuid() if uid is None else uid
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # not Linux: the private directory is the only guard
        return 0
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    pid, peer_uid, _gid = struct.unpack("3i", raw)
    if peer_uid != uid:
        raise _refused(f"the process at the other end (pid {pid}) runs as uid {peer_uid}, "
                       f"not as us (uid {uid})")  # fmt: skip
    return int(pid)
