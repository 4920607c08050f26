"""One signed MAAS request with retries, typed errors and safe logging.

`Transport.call` is the single place where the client touches the network. It signs each
attempt afresh (OAuth1 PLAINTEXT: new nonce and timestamp each time, since MAAS rejects a
reused nonce), caps concurrent state-changing calls per endpoint, applies the retry policy
of `_retry`, and turns every failure into an exception of `errors` carrying MAAS's own words.
Logs name the method, path, op, status and elapsed time, never a header.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth1

from teuthology_maas.errors import (
    MaasAuthError,
    MaasBadRequest,
    MaasConflict,
    MaasError,
    MaasHTTPError,
    MaasNotFound,
    MaasOutcomeUnknown,
    MaasPermissionDenied,
    MaasServerError,
    MaasUnavailable,
    NoMachineAvailable,
)
from teuthology_maas.maas import wire as _wire
from teuthology_maas.maas.retry import (
    UNCERTAIN_STATUSES,
    RetryPolicy,
    failed_before_sending,
    parse_retry_after,
)
from teuthology_maas.redact import install_log_filter, redact

log = logging.getLogger("teuthology_maas.maas.client")

_BODY_LIMIT = 2000
_STATE_CHANGING = frozenset({"POST", "PUT", "DELETE"})
_DEACTIVATED = "User is not allowed access to this API"
# Transport failures that may be passing (and, for a POST, may hide an applied request).
_TRANSIENT = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

# The cap on concurrent state-changing calls: held around each POST/PUT/DELETE. A
# `threading.BoundedSemaphore` by default (one per client); an Endpoint may hand its client
# another, e.g. one shared with the other processes of the host.
ActionCap = AbstractContextManager[object]


def action_cap(size: int) -> ActionCap:
    """A cap letting `size` state-changing calls through at once (gevent-cooperative)."""
    if size < 1:
        raise ValueError(f"max_concurrent_actions must be >= 1, got {size}")
    return threading.BoundedSemaphore(size)


@dataclass(frozen=True)
class Target:
    """What a call is about, for error messages: the op and the machine."""

    method: str
    path: str
    op: str | None = None
    system_id: str | None = None

    def describe(self) -> str:
        where = self.path + (f"?op={self.op}" if self.op else "")
        return f"{self.method} {where}"


def build_session(pool_size: int, verify: bool | str, auth: OAuth1) -> requests.Session:
    session = requests.Session()
    # One host, many concurrent nodes: a single pool large enough that no greenlet waits for
    # (or throws away) a connection. urllib3 retries are off; _retry decides.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = verify
    session.auth = auth
    session.trust_env = True
    session.headers["Accept"] = "application/json"
    session.headers["User-Agent"] = "teuthology-maas"
    return session


def _body_text(response: requests.Response) -> str:
    try:
        text = response.text
    except Exception:  # undecodable body: say so rather than fail on the error path
        return f"<{len(response.content)} bytes of undecodable content>"
    text = redact(text.strip())
    if len(text) > _BODY_LIMIT:
        text = text[:_BODY_LIMIT] + f"... ({len(text) - _BODY_LIMIT} more characters)"
    return text


def _maas_words(response: requests.Response) -> str:
    """MAAS's error body as one readable string (JSON field errors flattened)."""
    text = _body_text(response)
    if "json" in response.headers.get("Content-Type", ""):
        try:
            data = json.loads(text)
        except ValueError:
            return text
        if isinstance(data, dict):
            parts = []
            for name, messages in data.items():
                items = messages if isinstance(messages, list) else [messages]
                parts.append(f"{name}: {' '.join(str(m) for m in items)}")
            return "; ".join(parts)
    if "html" in response.headers.get("Content-Type", ""):
        return f"<HTML error page, {len(text)} characters>"
    return text


_HTTP_ERRORS: dict[int, type[MaasHTTPError]] = {
    400: MaasBadRequest,
    401: MaasAuthError,
    403: MaasPermissionDenied,
    404: MaasNotFound,
    409: MaasConflict,
    500: MaasServerError,
}

_EMPTY_BODY_HINT = {
    403: "MAAS gave no reason; the machine is locked or owned by another user, or the "
    "operation needs an administrator",
    401: "MAAS rejected the API key (check maas: api_key)",
}


def http_error(response: requests.Response, target: Target) -> MaasHTTPError:
    status = response.status_code
    words = _maas_words(response)
    cls = _HTTP_ERRORS.get(status, MaasServerError if status >= 500 else MaasHTTPError)
    if status == 403 and _DEACTIVATED in words:
        cls = MaasAuthError
    if status == 409 and target.op == "allocate":
        cls = NoMachineAvailable
    shown = words or f"(empty body: {_EMPTY_BODY_HINT.get(status, 'MAAS gave no message')})"
    if 300 <= status < 400:
        location = response.headers.get("Location", "nowhere")
        shown = f"redirected to {location}; check maas: api_url (MAAS API calls never redirect)"
    subject = f" for machine {target.system_id}" if target.system_id else ""
    message = f"MAAS {target.describe()}{subject} failed: HTTP {status} {response.reason}: {shown}"
    return cls(message, system_id=target.system_id, http_status=status, maas_message=words)


class Transport:
    """Executes MAAS calls for one API root with one session."""

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        *,
        timeout: float,
        policy: RetryPolicy,
        max_concurrent_actions: int,
        cap: ActionCap | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        install_log_filter()
        self.base_url = base_url
        self.session = session
        self.timeout = timeout
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
    ) -> Any:
        """Perform the call and return the decoded JSON (or text when `expect_json` is
        false). `signed=False` sends no Authorization header (MAAS's anonymous endpoints).
        Raises a `MaasError` subclass on failure."""
        target = Target(method, path, op, system_id)
        form = _wire.fields(params)
        query: list[tuple[str, str]] = [("op", op)] if op else []
        body: bytes | None = None
        headers: dict[str, str] = {}
        if method in ("POST", "PUT"):
            if form:
                body, headers["Content-Type"] = _wire.multipart(form)
        else:
            query.extend(form)
        url = self.base_url + path.lstrip("/")
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(
                    method, url, query, body, headers, timeout, target, signed=signed
                )
            except requests.exceptions.RequestException as exc:
                wait = self._after_transport_error(exc, target, attempt, started)
            else:
                retry_in = self._after_response(response, target, attempt, started)
                if retry_in is None:
                    return _decode(response, target, expect_json)
                wait = retry_in
            self._sleep(wait)

    # ---- one attempt --------------------------------------------------------------------

    def _send(
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
    ) -> requests.Response:
        began = time.monotonic()
        # State-changing requests share the per-MAAS cap on concurrent actions; reads do not.
        gate = self.cap if method in _STATE_CHANGING else contextlib.nullcontext()
        try:
            with gate:
                response = self.session.request(
                    method,
                    url,
                    params=query or None,
                    data=body,
                    headers=headers or None,
                    timeout=timeout if timeout is not None else self.timeout,
                    allow_redirects=False,
                    auth=None if signed else _anonymous,
                    # Explicitly: with trust_env, requests replaces a session-level CA bundle by
                    # $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE, silently ignoring maas:
                    # verify/ca_bundle.
                    verify=self.session.verify,
                )
        except requests.exceptions.RequestException as exc:
            log.debug(
                "MAAS %s -> %s after %.3fs",
                target.describe(),
                type(exc).__name__,
                time.monotonic() - began,
            )
            raise
        log.debug(
            "MAAS %s -> %d in %.3fs",
            target.describe(),
            response.status_code,
            time.monotonic() - began,
        )
        return response

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

    def _after_response(
        self, response: requests.Response, target: Target, attempt: int, started: float
    ) -> float | None:
        """None when the response is final (success, or raise); else seconds to wait."""
        status = response.status_code
        if status < 300:
            return None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        retryable = status == 503 or (status == 409 and retry_after is not None)
        if status in UNCERTAIN_STATUSES:
            if target.method in _STATE_CHANGING:
                raise self._outcome_unknown(target, f"HTTP {status} {_body_text(response)}")
            retryable = True
        if not retryable:
            raise http_error(response, target)
        wanted = retry_after if retry_after is not None else self.policy.backoff(attempt)
        wait = self._retry_wait(wanted, attempt, started)
        if wait is not None:
            after = f" (Retry-After {retry_after:g}s)" if retry_after is not None else ""
            self._log_retry(target, f"HTTP {status}{after}", attempt, wait)
        else:
            error = http_error(response, target)
            hint = f", Retry-After {retry_after:g}s" if retry_after is not None else ""
            raise MaasUnavailable(
                f"MAAS {target.describe()} still failing after {attempt} attempt(s) in "
                f"{self._clock() - started:.1f}s (HTTP {status}{hint}); last answer: {error}",
                system_id=target.system_id,
                http_status=status,
                maas_message=error.maas_message,
            ) from None
        return wait

    def _after_transport_error(
        self,
        exc: requests.exceptions.RequestException,
        target: Target,
        attempt: int,
        started: float,
    ) -> float:
        reason = redact(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, requests.exceptions.SSLError):
            raise MaasUnavailable(
                f"MAAS {target.describe()}: TLS failure talking to {self.base_url}: {reason} "
                "(check maas: verify / ca_bundle)",
                system_id=target.system_id,
            ) from None
        if not isinstance(exc, _TRANSIENT):
            # An invalid URL or header, a redirect loop ...: repeating cannot help.
            raise MaasError(
                f"MAAS {target.describe()} failed: {reason}", system_id=target.system_id
            ) from None
        safe = target.method not in _STATE_CHANGING or failed_before_sending(exc)
        if not safe:
            raise self._outcome_unknown(target, reason)
        wait = self._retry_wait(self.policy.backoff(attempt), attempt, started)
        if wait is not None:
            self._log_retry(target, reason, attempt, wait)
        else:
            raise MaasUnavailable(
                f"MAAS at {self.base_url} unreachable: {target.describe()} failed "
                f"{attempt} time(s) in {self._clock() - started:.1f}s; last error: {reason}",
                system_id=target.system_id,
            ) from None
        return wait

    def _log_retry(self, target: Target, reason: str, attempt: int, wait: float) -> None:
        log.info(
            "MAAS %s: %s; attempt %d of %d, retrying in %.1fs",
            target.describe(),
            reason,
            attempt,
            self.policy.max_attempts,
            wait,
        )

    def _outcome_unknown(self, target: Target, reason: str) -> MaasOutcomeUnknown:
        subject = f" on machine {target.system_id}" if target.system_id else ""
        return MaasOutcomeUnknown(
            f"MAAS {target.describe()}{subject}: outcome unknown ({reason}); the request may "
            "or may not have been applied, re-read the machine before acting again",
            op=target.op or target.method.lower(),
            system_id=target.system_id,
        )


def _anonymous(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Per-request auth that signs nothing (a None auth would fall back to the session's)."""
    return request


def _decode(response: requests.Response, target: Target, expect_json: bool) -> Any:
    if not expect_json:
        return response.text
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise MaasError(
            f"MAAS {target.describe()} answered HTTP {response.status_code} with non-JSON "
            f"content ({response.headers.get('Content-Type', 'no Content-Type')}): "
            f"{_body_text(response)[:200]}",
            system_id=target.system_id,
            http_status=response.status_code,
        ) from None
