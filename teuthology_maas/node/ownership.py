"""Whose deployment is on a machine, and who may undo it (no I/O).

Every teuthology process uses the same MAAS API key, so MAAS's `owner` cannot tell one job's
deployment from another's. Each create() attempt therefore gets a token of its own and stamps
it on the machine (owner data) before the deploy is sent, with the teuthology owner, run, job
and paddles lock description when known, and the process (pid@host) that made it. The token
also rides in the comment of every state-changing request of that attempt, so MAAS's event
log says which attempt did what, even for the moment between an allocate and the stamp.

`judge` decides, from the token on the machine and the caller's `Authority`, whether a caller
may act on the deployment it finds there. docs/lifecycle.md states the rules.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from teuthology_maas.models import Machine

__all__ = [
    "TOKEN_KEY",
    "Authority",
    "LockHolder",
    "Stamp",
    "Tag",
    "Verdict",
    "judge",
    "new_token",
    "parse_tag",
]

# owner_data keys. The teuthology_* ones predate the token and keep their names.
TOKEN_KEY = "teuthology_maas_token"
_PROCESS_KEY = "teuthology_maas_process"  # pid@host
_STARTED_KEY = "teuthology_maas_started"  # UTC, ISO 8601
_OWNER_KEY = "teuthology_owner"
_RUN_KEY = "teuthology_run"
_JOB_KEY = "teuthology_job"
_LOCK_KEY = "teuthology_lock"  # paddles lock description
_OS_KEY = "teuthology_os"
_AGENT_KEY = "agent"

# `[deployment <token> <pid>@<host>]` at the end of every comment a create() attempt sends;
# `[request <id> <pid>@<host>]` for any other caller's actions (a release, an abort), so that
# MAAS's events tell its requests apart from everyone else's too.
_TAG = re.compile(
    r"\[(?P<kind>deployment|request) (?P<token>[0-9a-f]{8,64})"
    r"(?: (?P<pid>\d+)@(?P<host>[^\]\s]+))?\]"
)
_ACTOR = re.compile(
    r"teuthology-maas (?P<action>[\w -]+?) for (?P<actor>.+?)(?: \[(?:deployment|request) |$)"
)


def new_token() -> str:
    """A new attempt's token: unique across processes and hosts."""
    return uuid.uuid4().hex


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Tag:
    """An attempt (or another caller's request) as named in a MAAS comment, and so in MAAS's
    events. Only a `deployment` tag names a deployment token."""

    token: str
    pid: int | None = None
    host: str | None = None
    kind: str = "deployment"

    @classmethod
    def request(cls) -> Tag:
        """A tag for the actions of a caller that makes no deployment (release, abort)."""
        return cls(new_token(), os.getpid(), this_host(), kind="request")

    @property
    def deployment(self) -> bool:
        return self.kind == "deployment"

    def text(self) -> str:
        where = f" {self.pid}@{self.host}" if self.pid is not None and self.host else ""
        return f"[{self.kind} {self.token}{where}]"

    def short(self) -> str:
        return self.token[:12]


def parse_tag(text: str | None) -> Tag | None:
    """The attempt a comment (an event's description) names, if any."""
    found = _TAG.search(text or "")
    if found is None:
        return None
    pid = found.group("pid")
    return Tag(
        found.group("token"), int(pid) if pid else None, found.group("host"), found.group("kind")
    )


def comment_actor(text: str | None) -> tuple[str, str] | None:
    """(action, actor) from one of our comments, `teuthology-maas release for bob@ctl ...`."""
    found = _ACTOR.search(text or "")
    return (found.group("action"), found.group("actor").strip()) if found else None


@dataclass(frozen=True)
class LockHolder:
    """A paddles lock: who holds the node and for what (teuthology's job archive path)."""

    locked_by: str
    description: str | None = None

    def describe(self) -> str:
        return self.locked_by + (f" ({self.description})" if self.description else "")


@dataclass(frozen=True)
class Stamp:
    """What a create() attempt writes into the machine's owner data before it deploys."""

    token: str
    owner: str | None = None
    run: str | None = None
    job: str | None = None
    lock: str | None = None  # the paddles lock description the deployment was made under
    os: str | None = None
    agent: str | None = None
    pid: int | None = None
    host: str | None = None
    started: str | None = None

    @classmethod
    def new(
        cls,
        *,
        owner: str,
        run: str | None = None,
        job: str | None = None,
        lock: str | None = None,
        os_name: str | None = None,
        agent: str | None = None,
    ) -> Stamp:
        return cls(
            token=new_token(),
            owner=owner,
            run=run,
            job=job,
            lock=lock,
            os=os_name,
            agent=agent,
            pid=os.getpid(),
            host=this_host(),
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    @classmethod
    def read(cls, machine: Machine) -> Stamp | None:
        """The stamp in `machine`'s owner data; None when it carries no token."""
        return cls.from_owner_data(machine.owner_data)

    @classmethod
    def from_owner_data(cls, data: Mapping[str, str]) -> Stamp | None:
        token = (data.get(TOKEN_KEY) or "").strip()
        if not token:
            return None
        pid_text, _, host = (data.get(_PROCESS_KEY) or "").partition("@")
        return cls(
            token=token,
            owner=data.get(_OWNER_KEY) or None,
            run=data.get(_RUN_KEY) or None,
            job=data.get(_JOB_KEY) or None,
            lock=data.get(_LOCK_KEY) or None,
            os=data.get(_OS_KEY) or None,
            agent=data.get(_AGENT_KEY) or None,
            pid=int(pid_text) if pid_text.isdigit() else None,
            host=host or None,
            started=data.get(_STARTED_KEY) or None,
        )

    def owner_data(self) -> dict[str, str]:
        """The owner data fields; empty values delete keys an earlier stamp may have left."""
        return {
            TOKEN_KEY: self.token,
            _PROCESS_KEY: f"{self.pid}@{self.host}" if self.pid is not None else "",
            _STARTED_KEY: self.started or "",
            _OWNER_KEY: self.owner or "",
            _RUN_KEY: self.run or "",
            _JOB_KEY: self.job or "",
            _LOCK_KEY: self.lock or "",
            _OS_KEY: self.os or "",
            _AGENT_KEY: self.agent or "",
        }

    def applied_to(self, machine: Machine) -> bool:
        """True when `machine`'s owner data shows this stamp."""
        wanted = {k: v for k, v in self.owner_data().items() if v}
        return all(machine.owner_data.get(k) == v for k, v in wanted.items())

    @property
    def tag(self) -> Tag:
        return Tag(self.token, self.pid, self.host)

    def made_under(self, lock: LockHolder) -> bool:
        """True when this deployment was made for exactly that paddles lock."""
        return self.owner == lock.locked_by and (self.lock or None) == (lock.description or None)

    def describe(self) -> str:
        """`deployment 1a2b3c4d5e6f (owner alice@ctl, run r, job 7, lock /a/r/7; pid 42 on
        host ctl, since 2026-01-01T00:00:00Z)`."""
        who = [f"owner {self.owner}" if self.owner else "owner unknown"]
        who += [f"run {self.run}"] if self.run else []
        who += [f"job {self.job}"] if self.job else []
        who += [f"paddles lock {self.lock}"] if self.lock else []
        where = []
        if self.pid is not None:
            where.append(f"pid {self.pid} on host {self.host or '?'}")
        if self.started:
            where.append(f"since {self.started}")
        tail = f"; {', '.join(where)}" if where else ""
        return f"deployment {self.tag.short()} ({', '.join(who)}{tail})"


@dataclass(frozen=True)
class Authority:
    """What a caller may act on besides a machine that carries no deployment token.

    `tokens`: deployments the caller itself made (its own attempt; a provisioner's earlier
    create()). `lock`: the paddles lock the caller acts for (teuthology); it may undo the
    deployment made under that same lock. `claim`: with `lock`, the caller is a create() of
    the job that now holds the node in paddles, which may take over any deployment on it.
    `expected`: the caller decided on exactly this deployment (reconcile) and acts on nothing
    else. `operator`: an operator's explicit, forced action.
    """

    tokens: frozenset[str] = frozenset()
    lock: LockHolder | None = None
    claim: bool = False
    expected: str | None = None
    expecting: bool = False
    operator: bool = False

    @classmethod
    def exactly(cls, token: str | None) -> Authority:
        """Only the deployment `token` (None: only a machine that carries no token)."""
        return cls(expected=token, expecting=True)

    def with_tokens(self, tokens: Collection[str]) -> Authority:
        return Authority(
            tokens=self.tokens | frozenset(tokens),
            lock=self.lock,
            claim=self.claim,
            expected=self.expected,
            expecting=self.expecting,
            operator=self.operator,
        )


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    token: str | None = None  # the deployment the caller may act on (None: no token)
    stamp: Stamp | None = None
    tag: Tag | None = None  # who made it, when known only from MAAS's events


@dataclass(frozen=True)
class Holder:
    """Who made the deployment on a machine: its stamp, or (unstamped, between an allocate
    and its stamp) the attempt MAAS's events say acquired it."""

    stamp: Stamp | None = None
    acquired: Tag | None = None

    @property
    def token(self) -> str | None:
        if self.stamp is not None:
            return self.stamp.token
        return self.acquired.token if self.acquired is not None else None

    @property
    def tag(self) -> Tag | None:
        return self.stamp.tag if self.stamp is not None else self.acquired

    def describe(self) -> str:
        if self.stamp is not None:
            return self.stamp.describe()
        if self.acquired is not None:
            where = (
                f"; pid {self.acquired.pid} on host {self.acquired.host}"
                if self.acquired.pid is not None
                else ""
            )
            return f"deployment {self.acquired.short()} (allocated, not yet stamped{where})"
        return "no deployment token (deployed by hand or by a version without tokens)"


def judge(holder: Holder, authority: Authority, *, running: Collection[str] = ()) -> Verdict:
    """May a caller with `authority` act on the deployment `holder` describes?

    `running` are the tokens of create() attempts still running in this process: a token of
    this process that is not among them belongs to an attempt that has ended."""
    token, stamp, tag = holder.token, holder.stamp, holder.tag
    if authority.expecting:
        if token == authority.expected:
            return Verdict(True, "the deployment the caller decided on", token, stamp, tag)
        return Verdict(False, "not the deployment the caller decided on", token, stamp, tag)
    if token is None:
        return Verdict(True, "no deployment token on it", None, stamp, tag)
    if token in authority.tokens:
        return Verdict(True, "this attempt's own deployment", token, stamp, tag)
    if authority.operator:
        return Verdict(True, "an operator's explicit action", token, stamp, tag)
    if authority.lock is not None:
        if stamp is not None and stamp.made_under(authority.lock):
            return Verdict(
                True, f"made under the paddles lock of {authority.lock.describe()}", token, stamp
            )
        if authority.claim:
            return Verdict(
                True,
                f"paddles says {authority.lock.describe()} holds the node now",
                token,
                stamp,
                tag,
            )
    if tag is not None and abandoned(tag, running):
        return Verdict(True, "made by a process of this host that has ended", token, stamp, tag)
    return Verdict(False, "another attempt's deployment", token, stamp, tag)


def abandoned(tag: Tag, running: Collection[str] = ()) -> bool:
    """True only when the attempt `tag` names provably runs no more: it was made on this host
    by a process that is gone, or by this process and is not among `running`. Anything
    else (another host, an unreadable tag, a live process) counts as still running."""
    if tag.pid is None or tag.host != this_host():
        return False
    if tag.pid == os.getpid():
        return tag.token not in running
    try:
        os.kill(tag.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's process
        return False
    return False
