"""Reach a freshly deployed node over SSH the way teuthology will, and check what it runs
(`verify_ssh`: what create() and is_ready() ask after MAAS says Deployed; whether the
os-release it returns is the requested OS is `images.os_mismatch`).

paramiko, one connection per attempt, each with its own connect/banner/auth/channel timeouts,
always closed. Waiting uses time.sleep, which gevent makes cooperative. Host keys are accepted
without checking: every reimage gives the node new ones (teuthology re-scans them itself right
after create()), so a known_hosts entry could only ever be stale.

Where to connect comes from the config's `ssh_config` file (HostName, Port, User, IdentityFile,
IdentitiesOnly, ProxyCommand, ConnectTimeout), then `ssh_user` / `ssh_private_key`.

Nothing that came from a job reaches ssh or paramiko as an option: the node name is checked
as a hostname (so `%h` in a lab's `ProxyCommand ssh -W %h:%p jump` expands to a hostname and
nothing else), and so are the host, user and port the ssh_config maps it to.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import paramiko

from teuthology_maas import names, waits
from teuthology_maas.errors import ConfigError, InvalidNodeName, SSHNotReady
from teuthology_maas.node.ssh_reasons import reason_for, unresolvable
from teuthology_maas.waits import Reason, State, WaitReport

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig

log = logging.getLogger(__name__)

__all__ = [
    "CommandResult",
    "SSHTarget",
    "parse_os_release",
    "read_os_release",
    "run",
    "verify_ssh",
    "wait_for_file",
    "wait_for_ssh",
]

DEFAULT_CONNECT_TIMEOUT = 30.0
_LOGIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_INITIAL_DELAY = 1.0
_MAX_DELAY = 15.0


class SSHSettings(Protocol):
    """The MaasConfig attributes this module reads."""

    @property
    def ssh_user(self) -> str: ...
    @property
    def ssh_private_key(self) -> str | None: ...
    @property
    def ssh_config(self) -> str | None: ...


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to log in. `name` is the node as teuthology names it; `hostname` and
    `port` are what is actually dialled (they differ when an ssh_config maps them)."""

    name: str
    hostname: str
    port: int = 22
    user: str = "ubuntu"
    key_filenames: tuple[str, ...] = ()
    identities_only: bool = False
    proxy_command: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @classmethod
    def resolve(cls, fqdn: str, cfg: SSHSettings) -> SSHTarget:
        """Apply the config's ssh_config file (if any) to `fqdn`; its User and IdentityFile
        win over ssh_user, and ssh_private_key is tried before its IdentityFiles. A short name
        gets the config's lab_domain, as teuthology names nodes by FQDN."""
        fqdn = names.parse_node_name(fqdn).host
        lab_domain = getattr(cfg, "lab_domain", None)
        if lab_domain and "." not in fqdn:
            fqdn = names.parse_node_name(f"{fqdn}.{lab_domain}").host
        options = _lookup_ssh_config(cfg.ssh_config, fqdn)
        keys: list[str] = []
        if cfg.ssh_private_key:
            keys.append(str(Path(cfg.ssh_private_key).expanduser()))
        identity_files = options.get("identityfile") or []
        for identity in [identity_files] if isinstance(identity_files, str) else identity_files:
            path = Path(identity).expanduser()
            # OpenSSH skips IdentityFile entries that do not exist; so do we, loudly.
            if path.is_file():
                keys.append(str(path))
            else:
                log.warning("ssh_config IdentityFile %s for %s does not exist; skipped", path, fqdn)
        try:
            port = int(options.get("port", 22))
            connect_timeout = float(options.get("connecttimeout", DEFAULT_CONNECT_TIMEOUT))
        except ValueError as exc:
            raise ConfigError(
                f"ssh_config {cfg.ssh_config} for {fqdn}: {exc}; expected a numeric Port and "
                "ConnectTimeout",
                key="ssh_config",
            ) from None
        hostname = str(options.get("hostname", fqdn))
        user = str(options.get("user") or cfg.ssh_user)
        _check_dialled(cfg.ssh_config, fqdn, hostname, user, port)
        return cls(
            name=fqdn,
            hostname=hostname,
            port=port,
            user=user,
            key_filenames=tuple(dict.fromkeys(keys)),
            identities_only=str(options.get("identitiesonly", "no")).lower() == "yes",
            proxy_command=str(options["proxycommand"]) if options.get("proxycommand") else None,
            connect_timeout=connect_timeout,
        )

    def describe(self) -> str:
        where = f"{self.user}@{self.name}"
        if (self.hostname, self.port) != (self.name, 22):
            where += f" ({self.hostname} port {self.port})"
        return where


def _check_dialled(source: str | None, fqdn: str, hostname: str, user: str, port: int) -> None:
    """What is dialled must be a hostname or address, a login name and a port: never
    something ssh (run by a ProxyCommand) could read as an option."""
    problem = None
    if not _is_address(hostname) and not _is_hostname(hostname):
        problem = f"HostName {hostname[:100]!r} is not a hostname or address"
    if not _LOGIN.fullmatch(user):
        problem = f"user {user!r} is not a login name"
    if not 0 < port < 65536:
        problem = f"port {port} is not a TCP port"
    if problem is not None:
        where = f"ssh_config {source}" if source else "maas: ssh_user"
        raise ConfigError(
            f"{where} for {fqdn}: {problem}; refused, it would reach ssh as an option",
            key="ssh_config",
        )


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_hostname(text: str) -> bool:
    try:
        return "@" not in text and bool(names.parse_node_name(text).host == text.rstrip("."))
    except InvalidNodeName:
        return False


def _lookup_ssh_config(path: str | None, host: str) -> Mapping[str, Any]:
    if not path:
        return {}
    file = Path(path).expanduser()
    try:
        config = paramiko.SSHConfig.from_path(str(file))
        return dict(config.lookup(host))
    except (OSError, UnicodeDecodeError, paramiko.ConfigParseError) as exc:
        raise ConfigError(
            f"cannot use ssh_config {file}: {exc}; expected a readable OpenSSH client config",
            key="ssh_config",
        ) from None


class _AcceptFreshHostKey(paramiko.MissingHostKeyPolicy):
    """A reimaged node always has a new host key; note it and carry on."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        log.debug("host key of %s: %s %s", hostname, key.get_name(), key.fingerprint)


def _connect(target: SSHTarget, *, timeout: float) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_AcceptFreshHostKey())
    sock = paramiko.ProxyCommand(target.proxy_command) if target.proxy_command else None
    # paramiko takes a list of key files here (its type stubs say a single one).
    key_files: Any = list(target.key_filenames) or None
    try:
        client.connect(
            target.hostname,
            port=target.port,
            username=target.user,
            key_filename=key_files,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            allow_agent=not target.identities_only,
            look_for_keys=not target.key_filenames,
            sock=sock,
        )
    except BaseException:  # any way out of connect(): close what it opened, then re-raise
        client.close()
        if sock is not None:
            sock.close()
        raise
    return client


def _exec(client: paramiko.SSHClient, command: str, *, timeout: float) -> CommandResult:
    stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
    stdin.close()  # nothing to send: the command sees EOF at once
    out = stdout.read().decode("utf-8", "replace")
    err = stderr.read().decode("utf-8", "replace")
    status = stdout.channel.recv_exit_status()
    return CommandResult(command, status, out, err)


def _explain(exc: BaseException, target: SSHTarget) -> str:
    if isinstance(exc, paramiko.AuthenticationException):
        keys = ", ".join(target.key_filenames) or "default keys/agent"
        return (
            f"authentication as {target.user} failed with {keys} ({exc}); the node may not "
            "have the public key from user_data yet"
        )
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return f"connection refused or unreachable ({exc})"
    if isinstance(exc, TimeoutError):
        return f"timed out ({exc or 'no answer'})"
    return f"{type(exc).__name__}: {exc}"


# Everything a booting node can throw at us: refused/reset connections, timeouts, sshd
# closing the socket mid-handshake, authentication before cloud-init installed our key.
_NOT_YET = (OSError, EOFError, paramiko.SSHException)


def _retry(
    target: SSHTarget,
    *,
    timeout: float,
    what: str,
    check: Callable[[paramiko.SSHClient, float], str | None],
    not_yet: str,
    initial_delay: float,
    max_delay: float,
    resolve_grace: float | None = None,
) -> None:
    """Connect and run `check` until it reports success (None) or the deadline passes.

    Each attempt is reported (`waits.report`) with the reason it failed; `not_yet` is the
    reason when the node answers but `check` is not satisfied yet. A name that keeps not
    resolving for longer than `resolve_grace` seconds ends the wait early."""
    start = time.monotonic()
    deadline = start + timeout
    delay = initial_delay
    attempts = 0
    last_error = "no attempt made"
    unresolved_since: float | None = None
    _report(target, Reason.CONNECTING, "", 0)
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        per_try = max(min(target.connect_timeout, remaining), 1.0)
        try:
            client = _connect(target, timeout=per_try)
            try:
                problem = check(client, per_try)
            finally:
                client.close()
            unresolved_since = None
            if problem is None:
                elapsed = time.monotonic() - start
                log.info(
                    "%s: %s after %d attempt(s), %.1fs", target.describe(), what, attempts, elapsed
                )
                _report(target, what, "", attempts, state="done")
                return
            last_error = problem
            reason = not_yet
        except _NOT_YET as exc:
            last_error = _explain(exc, target)
            reason = reason_for(exc)
            if not unresolvable(exc):
                unresolved_since = None
            elif unresolved_since is None:
                unresolved_since = time.monotonic()
        log.debug("%s: not yet %s (attempt %d): %s", target.describe(), what, attempts, last_error)
        now = time.monotonic()
        if (
            unresolved_since is not None
            and resolve_grace is not None
            and now - unresolved_since >= resolve_grace
        ):
            _report(target, reason, last_error, attempts, state="failed")
            raise SSHNotReady(
                f"SSH to {target.describe()}: the name {target.hostname!r} does not resolve "
                f"(for {now - unresolved_since:.{0 if now - unresolved_since >= 10 else 1}f}s "
                f"and {attempts} attempt(s); "
                f"ssh_resolve_grace is {resolve_grace:g}s): check lab_domain and the lab's "
                "DNS, or map the name with HostName in maas.ssh_config; last error: "
                f"{last_error}",
                machine=target.name,
            )
        remaining = deadline - now
        if remaining <= 0:
            _report(target, reason, last_error, attempts, state="failed")
            raise SSHNotReady(
                f"SSH to {target.user}@{target.name} ({target.hostname} port {target.port}) "
                f"not {what} after {timeout:.0f}s and {attempts} attempt(s); last error: "
                f"{last_error}",
                machine=target.name,
            )
        _report(target, reason, last_error, attempts)
        pause = min(delay, remaining)
        if unresolved_since is not None and resolve_grace is not None:
            # look again when the grace ends, not a whole backoff later
            pause = min(pause, max(unresolved_since + resolve_grace - now, 0.0) + 0.05)
        time.sleep(pause)
        delay = min(delay * 2, max_delay)


def _report(
    target: SSHTarget, reason: str, detail: str, attempt: int, *, state: State = "waiting"
) -> None:
    waits.report(
        WaitReport(
            "ssh", target.name, reason, detail=detail, attempt=attempt, state=state,
            target=target.describe(),
        )
    )  # fmt: skip


def wait_for_ssh(
    target: SSHTarget,
    *,
    timeout: float,
    sentinel_file: str | None = None,
    initial_delay: float = _INITIAL_DELAY,
    max_delay: float = _MAX_DELAY,
    resolve_grace: float | None = None,
) -> None:
    """Until `timeout` seconds pass: log in and run a command (and, with `sentinel_file`, find
    that file). Raises SSHNotReady naming the host, port, user and the last error, early when
    the name has not resolved for `resolve_grace` seconds."""
    if sentinel_file:
        wait_for_file(
            target,
            sentinel_file,
            timeout=timeout,
            initial_delay=initial_delay,
            max_delay=max_delay,
            resolve_grace=resolve_grace,
        )
        return

    def logged_in(client: paramiko.SSHClient, per_try: float) -> str | None:
        result = _exec(client, "true", timeout=per_try)
        return None if result.ok else f"'true' exited {result.exit_status}: {result.stderr[:200]}"

    _retry(
        target,
        timeout=timeout,
        what="reachable",
        check=logged_in,
        not_yet="logged in, but a command failed",
        initial_delay=initial_delay,
        max_delay=max_delay,
        resolve_grace=resolve_grace,
    )


def wait_for_file(
    target: SSHTarget,
    path: str,
    *,
    timeout: float,
    initial_delay: float = _INITIAL_DELAY,
    max_delay: float = _MAX_DELAY,
    resolve_grace: float | None = None,
) -> None:
    """Until `timeout` seconds pass: log in and find `path` on the node (cloud-init's
    boot-finished, say). Connection and authentication failures are retried too."""

    def present(client: paramiko.SSHClient, per_try: float) -> str | None:
        result = _exec(client, f"test -e {shlex.quote(path)}", timeout=per_try)
        return None if result.ok else f"{path} not present yet"

    _retry(
        target,
        timeout=timeout,
        what=f"showing {path}",
        check=present,
        not_yet=f"{Reason.SENTINEL} ({path} not there yet)",
        initial_delay=initial_delay,
        max_delay=max_delay,
        resolve_grace=resolve_grace,
    )


def run(target: SSHTarget, command: str, *, timeout: float = 60.0) -> CommandResult:
    """Run one command (one connection, no retries); SSHNotReady if it cannot be run."""
    try:
        client = _connect(target, timeout=min(target.connect_timeout, timeout))
        try:
            return _exec(client, command, timeout=timeout)
        finally:
            client.close()
    except _NOT_YET as exc:
        raise SSHNotReady(
            f"SSH to {target.describe()} could not run {command!r}: {_explain(exc, target)}",
            machine=target.name,
        ) from None


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5) is shell-style KEY=value lines; quotes and backslash escapes allowed."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
            fields[key.strip()] = " ".join(words)
        except ValueError:
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def read_os_release(target: SSHTarget, *, timeout: float = 60.0) -> dict[str, str]:
    """The node's /etc/os-release (falling back to /usr/lib/os-release) as a dict."""
    result = run(target, "cat /etc/os-release || cat /usr/lib/os-release", timeout=timeout)
    fields = parse_os_release(result.stdout)
    if not result.ok or "ID" not in fields:
        raise SSHNotReady(
            f"cannot read /etc/os-release on {target.describe()}: exit {result.exit_status}, "
            f"{(result.stderr or result.stdout).strip()[:200]!r}",
            machine=target.name,
        )
    return fields


# -- after MAAS says Deployed: is the node usable the way teuthology will use it? --------------
# Teuthology logs in over SSH right after create() returns (ssh-keyscan, `uname -m`,
# /etc/os-release), so create() only succeeds once the same login works and the node runs the
# requested OS.


def verify_ssh(fqdn: str, config: MaasConfig, *, timeout: float | None = None) -> dict[str, str]:
    """Wait for SSH (and the sentinel file), then return the node's /etc/os-release."""
    limit = config.ssh_timeout if timeout is None else timeout
    target = SSHTarget.resolve(fqdn, config)
    try:
        wait_for_ssh(
            target,
            timeout=limit,
            sentinel_file=config.sentinel_file,
            resolve_grace=config.ssh_resolve_grace,
        )
        return read_os_release(target, timeout=limit)
    except SSHNotReady:
        raise
    except Exception as exc:  # anything paramiko or a socket raises: the node is not usable yet
        raise SSHNotReady(
            f"SSH to {fqdn} failed: {type(exc).__name__}: {exc}", machine=fqdn
        ) from exc
