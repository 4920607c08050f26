"""What the processes of one host learn about MAAS, kept in a small file they share.

teuthology's dispatcher starts one supervisor process per job: each would otherwise ask MAAS
again who its API key belongs to, which images are synced, and learn from scratch how long a
deployment takes. The host store keeps those answers in one JSON file (by default
`$XDG_CACHE_HOME/teuthology-maas/host-store.json`):

- the MAAS user name per API root and consumer key (`whoami`), for a day;
- the boot-resource list per API root, for `IMAGES_TTL` seconds;
- the most recent finished waits per kind (deploy of a machine type, release, abort), from which
  a new process's poller starts with a narrow finish window (`fleet.estimate`).

Entries are keyed by a hash of the API root and consumer key, never the key itself, and no
secret is ever written. Writes are atomic (a temporary file renamed over the old one) and
serialised between processes by an advisory lock on a side file, each one a read-merge-write so
concurrent writers lose nothing. Reads validate everything: a file that is not ours (another
owner, writable by others), corrupt, of the wrong shape, or too big is ignored with one warning
and the caller asks MAAS as if there were no store. A store that cannot be written (read-only
home, full disk) only costs the saving. Sizes are bounded: samples per kind, kinds, messages
per sample and the file itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("teuthology_maas.fleet")

STORE_VERSION = 1
WHOAMI_TTL = 24 * 3600.0
IMAGES_TTL = 600.0
MAX_FILE_BYTES = 1024 * 1024
MAX_ENDPOINTS = 32
MAX_KINDS = 32
MAX_SAMPLES = 50
MAX_MESSAGES = 24
MAX_TEXT = 200
MAX_IMAGES = 2000
# MAAS user names: Django's username characters.
_USERNAME = re.compile(r"^[\w.@+-]{1,150}$")

Sample = dict[str, Any]
_WRITING = threading.Lock()


def _after_fork() -> None:
    global _WRITING
    _WRITING = threading.Lock()  # a fork while another thread wrote must not leave it held


os.register_at_fork(after_in_child=_after_fork)


def default_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "teuthology-maas" / "host-store.json"


def endpoint_id(api_url: str, consumer_key: str) -> str:
    """The store's name for an API root and key: a hash, so that the file names no key."""
    digest = hashlib.sha256(f"{api_url}\0{consumer_key}".encode()).hexdigest()
    return digest[:32]


def _finite(value: Any, *, low: float = 0.0, high: float = 1e9) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and low <= number <= high else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TEXT else None


def _bracket(value: Any) -> tuple[float, float] | None:
    if not isinstance(value, list) or len(value) != 2:
        return None
    lo, hi = _finite(value[0]), _finite(value[1])
    return (lo, hi) if lo is not None and hi is not None and lo <= hi else None


def clean_sample(value: Any) -> Sample | None:
    """A finished wait as the store keeps it, or None when `value` is not one."""
    if not isinstance(value, Mapping):
        return None
    total = _bracket(value.get("total"))
    seen = value.get("seen")
    if total is None or not isinstance(seen, Mapping) or len(seen) > MAX_MESSAGES:
        return None
    messages: dict[str, list[float]] = {}
    for message, bracket in seen.items():
        text, pair = _text(message), _bracket(bracket)
        if text is None or pair is None:
            return None
        messages[text] = list(pair)
    return {"total": list(total), "seen": messages}


class HostStore:
    """One store file; every method is safe to call from many threads and processes."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        self._clock = clock
        self._warned = False

    def __repr__(self) -> str:
        return f"HostStore({str(self.path)!r})"

    # -- what callers ask ---------------------------------------------------------------

    def username(self, api_url: str, consumer_key: str) -> str | None:
        entry = self._endpoint(api_url, consumer_key).get("whoami")
        if not isinstance(entry, Mapping) or not self._fresh(entry.get("at"), WHOAMI_TTL):
            return None
        name = entry.get("username")
        return name if isinstance(name, str) and _USERNAME.match(name) else None

    def save_username(self, api_url: str, consumer_key: str, username: str) -> None:
        if not _USERNAME.match(username):
            return
        self._update(api_url, consumer_key, "whoami", {"username": username, "at": self._clock()})

    def images(self, api_url: str, consumer_key: str) -> list[dict[str, Any]] | None:
        """The boot-resource list as MAAS answered it (each a dict for
        `BootResource.from_json`, which validates it again), while fresh."""
        entry = self._endpoint(api_url, consumer_key).get("images")
        if not isinstance(entry, Mapping) or not self._fresh(entry.get("at"), IMAGES_TTL):
            return None
        items = entry.get("list")
        if not isinstance(items, list) or len(items) > MAX_IMAGES:
            return None
        return [dict(i) for i in items if isinstance(i, Mapping)]

    def save_images(self, api_url: str, consumer_key: str, items: list[dict[str, Any]]) -> None:
        if len(items) <= MAX_IMAGES:
            self._update(api_url, consumer_key, "images", {"list": items, "at": self._clock()})

    def samples(self, api_url: str, consumer_key: str) -> dict[str, list[Sample]]:
        """The recent finished waits per kind, each validated (bad ones left out)."""
        kinds = self._endpoint(api_url, consumer_key).get("durations")
        found: dict[str, list[Sample]] = {}
        if not isinstance(kinds, Mapping):
            return found
        for kind, items in list(kinds.items())[:MAX_KINDS]:
            if _text(kind) is None or not isinstance(items, list):
                continue
            clean = [s for s in map(clean_sample, items[-MAX_SAMPLES:]) if s is not None]
            if clean:
                found[kind] = clean
        return found

    def add_sample(self, api_url: str, consumer_key: str, kind: str, sample: Sample) -> None:
        clean = clean_sample(sample)
        if clean is None or _text(kind) is None:
            return

        def merge(entry: dict[str, Any]) -> None:
            kinds = entry.get("durations")
            if not isinstance(kinds, dict):
                kinds = entry["durations"] = {}
            items = kinds.pop(kind, [])
            if not isinstance(items, list):
                items = []
            items = [s for s in items if clean_sample(s) is not None]
            kinds[kind] = [*items, clean][-MAX_SAMPLES:]
            while len(kinds) > MAX_KINDS:
                kinds.pop(next(iter(kinds)))

        self._change(api_url, consumer_key, merge)

    # -- reading --------------------------------------------------------------------------

    def _fresh(self, at: Any, ttl: float) -> bool:
        when = _finite(at, high=math.inf)
        return when is not None and 0 <= self._clock() - when <= ttl

    def _endpoint(self, api_url: str, consumer_key: str) -> Mapping[str, Any]:
        entry = self._read().get(endpoint_id(api_url, consumer_key))
        return entry if isinstance(entry, Mapping) else {}

    def _read(self) -> dict[str, Any]:
        """The file's endpoints when the file is trustworthy and well formed; else {}."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._warn(f"cannot open it ({exc.strerror or exc})")
            return {}
        try:
            problem = self._untrusted(os.fstat(fd))
            if problem is not None:
                self._warn(problem)
                return {}
            with os.fdopen(fd, "rb", closefd=False) as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            self._warn(f"cannot read it ({exc.strerror or exc})")
            return {}
        finally:
            os.close(fd)
        if len(raw) > MAX_FILE_BYTES:
            self._warn(f"it is larger than {MAX_FILE_BYTES} bytes")
            return {}
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            self._warn(f"it is not valid JSON ({type(exc).__name__})")
            return {}
        if not isinstance(document, dict) or document.get("version") != STORE_VERSION:
            self._warn(f"it is not a version-{STORE_VERSION} store")
            return {}
        endpoints = document.get("endpoints")
        if not isinstance(endpoints, dict) or len(endpoints) > MAX_ENDPOINTS:
            self._warn(f"its endpoints are not a mapping of at most {MAX_ENDPOINTS}")
            return {}
        return endpoints

    def _untrusted(self, info: os.stat_result) -> str | None:
        """Why a file with this stat must not be believed (another user could have written
        what it says), or None."""
        if not stat.S_ISREG(info.st_mode):
            return "it is not a regular file"
        if info.st_uid != os.getuid():
            return f"it belongs to uid {info.st_uid}, not to us ({os.getuid()})"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"others may write it (mode {stat.S_IMODE(info.st_mode):o})"
        try:
            parent = os.stat(self.path.parent)
        except OSError as exc:
            return f"its directory cannot be checked ({exc.strerror or exc})"
        if parent.st_uid != os.getuid() or parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return "its directory is not ours alone"
        return None

    def _warn(self, problem: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "ignoring the host store %s: %s; asking MAAS instead (delete the file to "
                "start afresh)",
                self.path, problem,
            )  # fmt: skip

    # -- writing --------------------------------------------------------------------------

    def _update(self, api_url: str, consumer_key: str, name: str, value: Any) -> None:
        def put(entry: dict[str, Any]) -> None:
            entry[name] = value

        self._change(api_url, consumer_key, put)

    def _change(
        self, api_url: str, consumer_key: str, change: Callable[[dict[str, Any]], None]
    ) -> None:
        """Read, change one endpoint's entry, write back: under a lock between threads and
        processes, atomically. A failure is logged; the caller carries on without the store."""
        try:
            # One writer per process at a time first (a cooperative lock under gevent): the
            # file lock then blocks only against other processes, never a greenlet of ours
            # that holds it (flock would block our whole process, the holder included).
            with _WRITING, self._file_lock():
                endpoints = self._read()
                key = endpoint_id(api_url, consumer_key)
                entry = endpoints.pop(key, None)
                entry = dict(entry) if isinstance(entry, Mapping) else {}
                change(entry)
                endpoints[key] = entry  # most recently used last
                while len(endpoints) > MAX_ENDPOINTS:
                    endpoints.pop(next(iter(endpoints)))
                text = json.dumps({"version": STORE_VERSION, "endpoints": endpoints})
                if len(text) > MAX_FILE_BYTES:
                    log.debug("host store %s would grow past its bound; not saved", self.path)
                    return
                self._write(text)
        except OSError as exc:
            log.debug("host store %s not saved: %s", self.path, exc)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(
            f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, text: str) -> None:
        fd, temporary = tempfile.mkstemp(prefix=".host-store.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
