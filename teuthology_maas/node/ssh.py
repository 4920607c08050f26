"""Reach a freshly deployed node over SSH the way teuthology will, and check what it runs
(`verify_ssh`: what create() and is_ready() ask after MAAS says Deployed; whether the
os-release it returns is the requested OS is `images.os_mismatch`).

paramiko, one connection per attempt, each with its own connect/banner/auth/channel timeouts,
always closed (except the probe's to a node not finished yet: `ssh_kept`). Waiting uses
time.sleep, which gevent makes cooperative. Host keys are accepted without checking: every
reimage gives the node new ones (teuthology re-scans them itself right after create()), so a
known_hosts entry could only ever be stale.

Where and as whom to connect (the ssh_config, ssh_user, ssh_private_key; nothing from a job
reaching ssh as an option) is `ssh_target`. Every attempt of a wait is reported to `waits`
with its reason in a few words (`ssh_reasons`).
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paramiko

from teuthology_maas import waits
from teuthology_maas.errors import MaasError, SSHNotReady
from teuthology_maas.node.ssh_kept import probe_connections
from teuthology_maas.node.ssh_reasons import reason_for, unresolvable
from teuthology_maas.node.ssh_target import SSHTarget
from teuthology_maas.waits import Reason, State, WaitReport

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig

log = logging.getLogger(__name__)

__all__ = [
    "CommandResult",
    "SSHTarget",
    "end_probes",
    "parse_os_release",
    "probe_ready",
    "read_os_release",
    "run",
    "verify_ssh",
    "wait_for_file",
    "wait_for_ssh",
]

_INITIAL_DELAY = 1.0
_MAX_DELAY = 15.0


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


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
    watch: Callable[[], None] | None = None,
) -> None:
    """Connect and run `check` until it reports success (None) or the deadline passes.

    Each attempt is reported (`waits.report`) with the reason it failed; `not_yet` is the
    reason when the node answers but `check` is not satisfied yet. A name that keeps not
    resolving for longer than `resolve_grace` seconds ends the wait early. `watch` is called
    before every attempt; whatever it raises ends the wait."""
    start = time.monotonic()
    deadline = start + timeout
    delay = initial_delay
    attempts = 0
    last_error = "no attempt made"
    unresolved_since: float | None = None
    _report(target, Reason.CONNECTING, "", 0)
    while True:
        if watch is not None:
            try:
                watch()
            except BaseException as exc:  # the wait ends here: say so to whoever shows it
                _report(target, "stopped", type(exc).__name__, attempts, state="failed")
                raise
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
    watch: Callable[[], None] | None = None,
) -> None:
    """Until `timeout` seconds pass: log in and run a command (and, with `sentinel_file`, find
    that file). Raises SSHNotReady naming the host, port, user and the last error, early when
    the name has not resolved for `resolve_grace` seconds. `watch` is called before every
    attempt; whatever it raises ends the wait."""
    if sentinel_file:
        wait_for_file(
            target,
            sentinel_file,
            timeout=timeout,
            initial_delay=initial_delay,
            max_delay=max_delay,
            resolve_grace=resolve_grace,
            watch=watch,
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
        watch=watch,
    )


def wait_for_file(
    target: SSHTarget,
    path: str,
    *,
    timeout: float,
    initial_delay: float = _INITIAL_DELAY,
    max_delay: float = _MAX_DELAY,
    resolve_grace: float | None = None,
    watch: Callable[[], None] | None = None,
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
        watch=watch,
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


# How long one probe may take: it runs in the waiting caller's thread between its checks.
PROBE_TIMEOUT = 5.0


def probe_ready(fqdn: str, config: MaasConfig) -> bool:
    """One try, no retries: does the node let us in with our key and show the sentinel file
    (cloud-init finished)? What the status poller tries near the end of a deployment, because
    it costs MAAS nothing; True is only a reason to ask MAAS, never believed by itself (the
    node may be answering for someone else's deployment). Never raises for a node that is
    not there yet. A node that lets us in but has not finished keeps its connection for the
    next probe (`ssh_kept`): a login costs far more than a command. Tests and benchmarks
    replace it (`provisioner.probe_ready`)."""
    try:
        target = SSHTarget.resolve(fqdn, config)
    except Exception as exc:  # a name not resolving yet
        log.debug("%s: probe: not ready (%s)", fqdn, type(exc).__name__)
        return False
    per_try = min(target.connect_timeout, PROBE_TIMEOUT)
    sentinel = config.sentinel_file
    command = f"test -e {shlex.quote(sentinel)}" if sentinel else "true"
    key = (fqdn, target.hostname, target.port, target.user, target.key_filenames,
           target.proxy_command)  # fmt: skip
    client = probe_connections.take(key)
    if client is not None:
        answer = _probe_over(client, command, per_try)
        if answer is not None:
            return _settle(key, client, answer)
    try:
        client = _connect(target, timeout=per_try)
    except Exception as exc:  # refused, unreachable, not our key yet
        log.debug("%s: probe: not ready (%s)", fqdn, type(exc).__name__)
        return False
    answer = _probe_over(client, command, per_try)
    return False if answer is None else _settle(key, client, answer)


def end_probes(fqdn: str) -> None:
    """Close the connection the probe kept to `fqdn`, if any (its wait is over)."""
    probe_connections.discard(lambda key: key[0] == fqdn)


def _probe_over(client: paramiko.SSHClient, command: str, timeout: float) -> bool | None:
    """Whether the command exits 0 over an open connection; None (and the connection closed)
    when the connection failed (the node dropped it: it rebooted, say) or the command did not
    end within `timeout`."""
    try:
        return exit_status_within(client, command, timeout) == 0
    except Exception as exc:
        log.debug("probe: connection lost (%s)", type(exc).__name__)
        client.close()
        return None


def exit_status_within(client: paramiko.SSHClient, command: str, timeout: float) -> int:
    """Run `command` and return its exit status, all within `timeout` seconds whatever the
    node sends meanwhile (its output is not read: a probe wants only the status). A node that
    keeps the command going, or trickles output to keep each read alive, raises TimeoutError
    at the deadline instead of holding one of the process's few probe slots."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise EOFError("the connection is closed")
    channel = transport.open_session(timeout=timeout)
    try:
        channel.settimeout(timeout)
        channel.exec_command(command)
        channel.shutdown_write()  # nothing to send: the command sees EOF at once
        if not channel.status_event.wait(timeout):
            raise TimeoutError(f"no exit status within {timeout:g} s")
        return channel.recv_exit_status()
    finally:
        channel.close()


def _settle(key: tuple[object, ...], client: paramiko.SSHClient, ready: bool) -> bool:
    if ready:
        client.close()  # done with this node: verify_ssh logs in afresh
    else:
        probe_connections.keep(key, client)
    return ready


def verify_ssh(
    fqdn: str,
    config: MaasConfig,
    *,
    timeout: float | None = None,
    watch: Callable[[], None] | None = None,
) -> dict[str, str]:
    """Wait for SSH (and the sentinel file), then return the node's /etc/os-release.
    `watch` is called before every SSH attempt; whatever it raises ends the wait (create()
    stops at once when the node changes hands meanwhile)."""
    limit = config.ssh_timeout if timeout is None else timeout
    target = SSHTarget.resolve(fqdn, config)
    try:
        wait_for_ssh(
            target,
            timeout=limit,
            sentinel_file=config.sentinel_file,
            resolve_grace=config.ssh_resolve_grace,
            watch=watch,
        )
        return read_os_release(target, timeout=limit)
    except MaasError:  # SSHNotReady, or what `watch` raised (the node changed hands)
        raise
    except Exception as exc:  # anything paramiko or a socket raises: the node is not usable yet
        raise SSHNotReady(
            f"SSH to {fqdn} failed: {type(exc).__name__}: {exc}", machine=fqdn
        ) from exc
