"""One signed MAAS request with retries, typed errors and safe logging.

`Transport.call` is the single place where the client touches the network. It signs each
attempt afresh (OAuth1 PLAINTEXT: new nonce and timestamp each time, since MAAS rejects a
reused nonce), caps concurrent state-changing calls per endpoint, bounds every attempt in time
(`deadline`: connect, headers and body together) and in bytes (`answer`), applies the retry
policy of `retry`, and turns every failure into an exception of `errors` carrying MAAS's own
words. No exception it raises holds (or chains to) a request object: those carry the signed
Authorization header. Logs name the method, path, op, status and elapsed time, never a header.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import requests
from requests_oauthlib import OAuth1

from teuthology_maas import metrics, waits
from teuthology_maas.api_url import warn_if_plaintext
from teuthology_maas.errors import (
    MaasError,
    MaasOutcomeUnknown,
    MaasProtocolError,
    MaasTimeout,
    MaasUnavailable,
)
from teuthology_maas.maas import answer as _answer
from teuthology_maas.maas import deadline as _deadline
from teuthology_maas.maas import wire as _wire
from teuthology_maas.maas.answer import Answer, Target, http_error
from teuthology_maas.maas.regions import RegionUrls
from teuthology_maas.maas.retry import (
    UNCERTAIN_STATUSES,
    RetryPolicy,
    failed_before_sending,
    parse_retry_after,
    trouble,
)
from teuthology_maas.redact import clip, install_log_filter
from teuthology_maas.waits import Reason, State, WaitReport

__all__ = ["DEFAULT_DEADLINE", "Target", "Transport", "build_session"]

log = logging.getLogger("teuthology_maas.maas.client")

_STATE_CHANGING = frozenset({"POST", "PUT", "DELETE"})
# Transport failures that may be passing (and, for a POST, may hide an applied request).
_TRANSIENT = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
# One request (connect, headers and body) may take this long by default (`maas: http_deadline`).
# MAAS answers every call the library makes within seconds; query_power_state (a live BMC
# query through a rack controller, ~60 s at worst) is the slowest and gets its own, longer one.
DEFAULT_DEADLINE = 120.0
_REASON_LIMIT = 500

# The cap on concurrent state-changing calls: held around each POST/PUT/DELETE. A
# `threading.BoundedSemaphore` by default (one per client); an Endpoint may hand its client
# another, e.g. one shared with the other processes of the host.
ActionCap = AbstractContextManager[object]


def action_cap(size: int) -> ActionCap:
    """A cap letting `size` state-changing calls through at once (gevent-cooperative)."""
    if size < 1:
        raise ValueError(f"max_concurrent_actions must be >= 1, got {size}")
    return threading.BoundedSemaphore(size)


def build_session(pool_size: int, verify: bool | str, auth: OAuth1) -> requests.Session:
    session = requests.Session()
    # One host, many concurrent nodes: a single pool large enough that no greenlet waits for
    # (or throws away) a connection. urllib3 retries are off; `retry` decides. The adapter's
    # connections can be cut by a request's deadline.
    adapter = _deadline.DeadlineAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = verify
    session.auth = auth
    session.trust_env = True
    session.headers["Accept"] = "application/json"
    session.headers["User-Agent"] = "teuthology-maas"
    return session


@dataclass(frozen=True)
class _Failure:
    """A failed attempt, described in words: the exception itself is not kept, since it holds
    the prepared request and its signed headers."""

    kind: Literal["tls", "fatal", "transient", "deadline", "too_large"]
    reason: str
    sent: bool  # the request may have reached MAAS
    trouble: str = Reason.OTHER  # the reason in a few words, for progress displays


class Transport:
    """Executes MAAS calls for one MAAS (one or more region URLs: `failover`) with one
    session."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        session: requests.Session,
        *,
        timeout: float,
        policy: RetryPolicy,
        max_concurrent_actions: int,
        cap: ActionCap | None = None,
        deadline: float = DEFAULT_DEADLINE,
        max_response_bytes: int = _answer.DEFAULT_MAX_RESPONSE,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        install_log_filter()
        self.regions = RegionUrls(base_url)
        for url in self.regions.urls:
            warn_if_plaintext(url)
        self.base_url = self.regions.urls[0]  # what names this MAAS (the first region URL)
        self.session = session
        self.timeout = timeout
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        self.policy = policy
        self.max_concurrent_actions = max_concurrent_actions
        self._sleep = sleep
        self._clock = clock
        self.cap = cap if cap is not None else action_cap(max_concurrent_actions)

    def call(
        self,
        method: str,
        path: str,
        *,
        op: str | None = None,
        params: Iterable[tuple[str, Any]] | dict[str, Any] | None = None,
        system_id: str | None = None,
        timeout: float | None = None,
        expect_json: bool = True,
        signed: bool = True,
        max_bytes: int | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Perform the call and return the decoded JSON (or text when `expect_json` is
        false), passed through `parse` (which validates it) when given. `signed=False` sends
        no Authorization header (MAAS's anonymous endpoints); `max_bytes` lowers the size cap
        for answers that are one object. Raises a `MaasError` subclass on failure."""
        form = _wire.fields(params)
        query: list[tuple[str, str]] = [("op", op)] if op else []
        body: bytes | None = None
        headers: dict[str, str] = {}
        if method in ("POST", "PUT"):
            if form:
                body, headers["Content-Type"] = _wire.multipart(form)
        else:
            query.extend(form)
        limit = min(max_bytes or self.max_response_bytes, self.max_response_bytes)
        started = self._clock()
        attempt = 0
        tried: list[str] = []  # the region URLs this call has been sent to, in order
        while True:
            attempt += 1
            base = self.regions.current()
            if base not in tried:
                tried.append(base)
            target = Target(method, path, op, system_id, base)
            url = base + path.lstrip("/")
            outcome = self._attempt(
                method, url, query, body, headers, timeout, target, signed=signed, limit=limit
            )
            if isinstance(outcome, _Failure):
                wait = self._after_failure(outcome, target, attempt, started, tried)
            else:
                retry_in = self._after_response(outcome, target, attempt, started, tried)
                if retry_in is None:
                    if attempt > 1:
                        self._report(target, "answering again", "", attempt, state="done")
                    return self._decode(outcome, target, expect_json, parse)
                wait = retry_in
            self._sleep(wait)

    # ---- one attempt --------------------------------------------------------------------

    def _attempt(
        self,
        method: str,
        url: str,
        query: list[tuple[str, str]],
        body: bytes | None,
        headers: dict[str, str],
        timeout: float | None,
        target: Target,
        *,
        signed: bool,
        limit: int,
    ) -> Answer | _Failure:
        began = time.monotonic()
        read_timeout = timeout if timeout is not None else self.timeout
        # A call given a longer timeout of its own (a live BMC query) gets that much time.
        seconds = self.deadline if timeout is None else max(self.deadline, timeout)
        failure: _Failure | None = None
        # State-changing requests share the per-MAAS cap on concurrent actions; reads do not.
        # The deadline covers the time a request holds its slot.
        gate = self.cap if method in _STATE_CHANGING else contextlib.nullcontext()
        with gate, _deadline.armed(seconds) as deadline:
            try:
                response = self.session.request(
                    method,
                    url,
                    params=query or None,
                    data=body,
                    headers=headers or None,
                    timeout=(min(read_timeout, seconds), read_timeout),
                    allow_redirects=False,
                    auth=None if signed else _anonymous,
                    # Explicitly: with trust_env, requests replaces a session-level CA bundle
                    # by $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE, silently ignoring maas:
                    # verify/ca_bundle.
                    verify=self.session.verify,
                    stream=True,
                )
                try:
                    answer = _answer.read(response, deadline, limit)
                finally:
                    response.close()
            except _answer.TooLarge as exc:
                failure = _Failure("too_large", exc.describe(), sent=True)
            except requests.exceptions.RequestException as exc:
                failure = _describe(exc, deadline)
            except (OSError, ValueError) as exc:
                if not deadline.expired:
                    raise  # not a symptom of the cut connection: a bug worth its traceback
                failure = _describe(exc, deadline)
        elapsed = time.monotonic() - began
        status = failure.kind if failure is not None else str(answer.status_code)
        metrics.maas_request(self.base_url, method, target.path, target.op, status, elapsed)
        if failure is not None:
            log.debug("MAAS %s -> %s after %.3fs", target.describe(), failure.reason, elapsed)
            return failure
        log.debug("MAAS %s -> %d in %.3fs", target.describe(), answer.status_code, elapsed)
        return answer

    # ---- deciding -----------------------------------------------------------------------

    def _budget_left(self, started: float) -> float:
        return self.policy.max_total - (self._clock() - started)

    def _retry_wait(self, wanted: float, attempt: int, started: float) -> float | None:
        """`wanted` if the budget allows one more attempt after it, else None."""
        if attempt >= self.policy.max_attempts:
            return None
        if wanted > self._budget_left(started):
            return None
        return wanted

    def _fail_over(self, target: Target, reason: str, tried: list[str]) -> bool:
        """After a failure that says the region may be down (no connection, a timeout, a
        5xx): make the next region URL the current one, for this call and every later one
        (sticky, not round-robin). True when that URL has not been tried by this call yet,
        so that it is tried at once, without the retry's wait."""
        result = self.regions.fail_over(target.base_url)
        if result is None:
            return False
        now, moved = result
        if moved:
            log.warning(
                "MAAS region %s failed (%s: %s); using region %s from now on",
                target.base_url, target.describe(), clip(reason, 200), now,
            )  # fmt: skip
        return now not in tried

    def _after_response(
        self, answer: Answer, target: Target, attempt: int, started: float, tried: list[str]
    ) -> float | None:
        """None when the answer is final (success, or raise); else seconds to wait."""
        status = answer.status_code
        if status < 300:
            return None
        retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        retryable = status == 503 or (status == 409 and retry_after is not None)
        if status in UNCERTAIN_STATUSES:
            retryable = True
        fresh = status >= 500 and self._fail_over(target, f"HTTP {status}", tried)
        if status >= 500 and fresh and target.method not in _STATE_CHANGING:
            # Another region of the same MAAS may answer a read this one could not.
            retryable = True
        if retryable and target.method in _STATE_CHANGING:
            # MAAS, or a proxy in front of it, may have applied the POST before this answer:
            # the caller re-reads the machine before anything is sent again.
            raise self.outcome_unknown(
                target,
                f"HTTP {status} {_answer.body_text(answer)}",
                http_status=status,
                retry_after=retry_after,
                maas_message=_answer.maas_words(answer),
            )
        if not retryable:
            raise http_error(answer, target)
        wanted = retry_after if retry_after is not None else self.policy.backoff(attempt)
        if fresh:
            wanted = 0.0
        wait = self._retry_wait(wanted, attempt, started)
        if wait is not None:
            after = f" (Retry-After {retry_after:g}s)" if retry_after is not None else ""
            metrics.maas_retry(self.base_url, target.path, target.op, str(status))
            self._log_retry(target, f"HTTP {status}{after}", attempt, wait, Reason.BUSY)
            return wait
        error = http_error(answer, target)
        if status == 500:  # MAAS's own error (after another region was asked), as with one region
            raise error
        hint = f", Retry-After {retry_after:g}s" if retry_after is not None else ""
        raise MaasUnavailable(
            f"MAAS {target.describe()} still failing after {attempt} attempt(s) in "
            f"{self._clock() - started:.1f}s (HTTP {status}{hint}); last answer: {error}",
            system_id=target.system_id,
            http_status=status,
            maas_message=error.maas_message,
        )

    def _after_failure(
        self, failure: _Failure, target: Target, attempt: int, started: float, tried: list[str]
    ) -> float:
        reason = failure.reason
        if failure.kind == "tls":
            raise MaasUnavailable(
                f"MAAS {target.describe()}: TLS failure talking to {target.base_url}: {reason} "
                "(check maas: verify / ca_bundle)",
                system_id=target.system_id,
            )
        if failure.kind == "fatal":
            # An invalid URL or header, a redirect loop ...: repeating cannot help.
            raise MaasError(
                f"MAAS {target.describe()} failed: {reason}", system_id=target.system_id
            )
        state_changing = target.method in _STATE_CHANGING
        if failure.kind == "too_large":
            if state_changing:  # MAAS said 2xx: applied, but what it made of it is unknown
                raise self.outcome_unknown(target, f"MAAS answered with {reason}")
            raise _answer.protocol_error(target, f"with {reason}")
        # The region may be down: later requests go to the next region URL. A POST that may
        # have reached this one is not sent again there: the regions share one database.
        fresh = self._fail_over(target, reason, tried)
        if state_changing and failure.sent:
            raise self.outcome_unknown(target, reason)
        wanted = 0.0 if fresh else self.policy.backoff(attempt)
        wait = self._retry_wait(wanted, attempt, started)
        if wait is not None:
            metrics.maas_retry(self.base_url, target.path, target.op, failure.kind)
            self._log_retry(target, reason, attempt, wait, failure.trouble)
            return wait
        spent = f"{attempt} attempt(s) in {self._clock() - started:.1f}s"
        if failure.kind == "deadline":
            raise MaasTimeout(
                f"MAAS {target.endpoint()}: {reason} ({spent}); MAAS is overloaded or "
                "something on the path is stalling the connection",
                endpoint=target.endpoint(),
                system_id=target.system_id,
            )
        raise MaasUnavailable(
            f"MAAS at {', '.join(tried)} unreachable: {target.describe()} failed {spent}; "
            f"last error: {reason}",
            system_id=target.system_id,
        )

    def _decode(
        self,
        answer: Answer,
        target: Target,
        expect_json: bool,
        parse: Callable[[Any], Any] | None,
    ) -> Any:
        try:
            value = _answer.decode(answer, target, expect_json)
            return value if parse is None else parse(value)
        except MaasProtocolError as exc:
            problem, field = exc.problem, exc.field
        if target.method in _STATE_CHANGING:
            # MAAS said 2xx, so the POST was applied; what it made of it must be re-read.
            raise self.outcome_unknown(target, f"its answer was unusable: {problem}")
        raise _answer.protocol_error(target, problem, field=field)

    def _log_retry(
        self, target: Target, reason: str, attempt: int, wait: float, short: str
    ) -> None:
        log.info(
            "MAAS %s: %s; attempt %d of %d, retrying in %.1fs",
            target.describe(),
            reason,
            attempt,
            self.policy.max_attempts,
            wait,
        )
        # the same, for whoever shows waits as they happen (the command's progress line)
        self._report(target, short, reason, attempt, retry_in=wait)

    def _report(
        self,
        target: Target,
        reason: str,
        detail: str,
        attempt: int,
        *,
        state: State = "waiting",
        retry_in: float | None = None,
    ) -> None:
        waits.report(
            WaitReport(
                # the MAAS (named by its first region URL, whichever region answered)
                "maas", self.base_url, reason, detail=detail, attempt=attempt, state=state,
                target=target.describe(), retry_in=retry_in,
            )
        )  # fmt: skip

    def outcome_unknown(
        self,
        target: Target,
        reason: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        maas_message: str | None = None,
    ) -> MaasOutcomeUnknown:
        subject = f" on machine {target.system_id}" if target.system_id else ""
        return MaasOutcomeUnknown(
            f"MAAS {target.endpoint()}{subject}: outcome unknown ({reason}); the request may "
            "or may not have been applied, re-read the machine before acting again",
            op=target.op or target.method.lower(),
            system_id=target.system_id,
            http_status=http_status,
            retry_after=retry_after,
            maas_message=maas_message,
        )


def _describe(exc: BaseException, deadline: _deadline.Deadline) -> _Failure:
    """What went wrong, in words (called inside the `except` clause; nothing of `exc` kept)."""
    if deadline.expired:
        return _Failure(
            "deadline",
            f"no complete answer within the {deadline.seconds:g} s request deadline",
            sent=deadline.sending,
            trouble=Reason.TIMED_OUT,
        )
    reason = clip(f"{type(exc).__name__}: {exc}", _REASON_LIMIT)
    if isinstance(exc, requests.exceptions.SSLError):
        return _Failure("tls", reason, sent=False)
    if not isinstance(exc, _TRANSIENT):
        return _Failure("fatal", reason, sent=False)
    return _Failure(
        "transient", reason, sent=not failed_before_sending(exc), trouble=trouble(exc)
    )


def _anonymous(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Per-request auth that signs nothing (a None auth would fall back to the session's)."""
    return request
