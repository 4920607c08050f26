"""Prometheus metrics: how long each phase of a reimage takes, how operations end and why,
how MAAS answers; for the lab's dashboards (docs/metrics.md lists every series).

The library records through the few functions here and never touches prometheus_client
itself, which is optional (`pip install 'teuthology-maas[metrics]'`; teuthology depends on it
anyway). Without it, or when switched off, every call is a no-op costing a lookup.

Teuthology's supervisors are separate processes: with `PROMETHEUS_MULTIPROC_DIR` set (teuthology
sets it to ~/.cache/teuthology-exporter when it imports its exporter module, and creates the
directory when its exporter runs) the values go to per-process files there, which teuthology's
exporter (`MultiProcessCollector`) adds up across processes. prometheus_client chooses between
files and memory when it is first imported, so it is imported here only at the first record.

Labels are bounded by design: a phase, operation, reason, outcome, request kind or status from
fixed sets in this module and the client; the machine type and region from the config; the
node name only on the failure counter (a lab's nodes are a few hundred, and "which nodes fail
most" needs it). Recording never raises: a metrics problem must not fail a reimage.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from urllib.parse import urlsplit

from teuthology_maas import errors

__all__ = [
    "PHASES", "REASONS", "Labels", "Recorder", "failure_reason", "maas_request", "maas_retry",
    "measured", "operation", "phase", "recording_to", "region_of", "relabel", "request_kind",
    "status",
]  # fmt: skip

log = logging.getLogger(__name__)

PREFIX = "teuthology_maas_"
SWITCH_ENV = "TEUTHOLOGY_MAAS_METRICS"  # one of OFF: record nothing
OFF = frozenset({"0", "off", "no", "false"})
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
INSTALL_HINT = "pip install 'teuthology-maas[metrics]'"

PHASES = (
    "lookup", "allocate", "deploy_wait", "ssh_wait", "lock", "release", "erase", "recovery",
    "abort",
)  # fmt: skip
OPERATIONS = ("create", "release", "abort")
# Seconds to hours: a lookup takes milliseconds, a deploy minutes, a full erase hours.
PHASE_BUCKETS = (
    0.05, 0.25, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 900.0,
    1200.0, 1800.0, 2700.0, 3600.0, 7200.0, 14400.0, 28800.0,
)  # fmt: skip
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

# Why an operation failed: a fixed set, from the exception's type (first match wins), never
# its text. An exception class may name its own with a `metrics_reason` class attribute.
_REASON_OF: tuple[tuple[type[BaseException], str], ...] = (
    (errors.TakenOver, "taken_over"),
    (errors.OwnershipError, "not_ours"),
    (errors.MachineNotFound, "not_found"),
    (errors.NoMachineAvailable, "no_machine_available"),
    (errors.ImageNotAvailable, "image_missing"),
    (errors.UserDataError, "user_data"),
    (errors.ConfigError, "config"),
    (errors.MaasAuthError, "maas_auth"),
    (errors.MaasPermissionDenied, "maas_denied"),
    (errors.MaasOutcomeUnknown, "maas_uncertain"),
    (errors.MaasUnavailable, "maas_unavailable"),
    (errors.MaasTimeout, "timeout"),
    (errors.MaasProtocolError, "maas_protocol"),
    (errors.MaasHTTPError, "maas_http_error"),
    (errors.SSHNotReady, "ssh"),
    (errors.ReleaseFailed, "release_failed"),
    (errors.DeploymentFailed, "deploy_failed"),
    (errors.MachineStateError, "machine_state"),
    (errors.MaasError, "other"),
)
REASONS = (*dict.fromkeys(reason for _, reason in _REASON_OF), "interrupted", "internal")

# Path segments kept in a request's kind; anything else (system ids, interface numbers) is
# "{id}", so the label stays bounded whatever the path.
_PATH_WORDS = frozenset({
    "machines", "nodes", "interfaces", "blockdevices", "partitions", "users", "version",
    "events", "maas", "boot-resources", "account", "tags", "zones", "resourcepools", "fabrics",
    "subnets", "vlans", "spaces", "devices", "rackcontrollers", "regioncontrollers",
})  # fmt: skip


@dataclass(frozen=True)
class Labels:
    machine_type: str = "other"
    region: str = ""


# The labels of the operation under way in this thread or greenlet; phases outside one (an
# is_ready() lookup) are not recorded: nothing would say what they belong to.
_labels: contextvars.ContextVar[Labels | None] = contextvars.ContextVar(
    "teuthology_maas_metric_labels", default=None
)
# HTTP statuses kept as they are in the `status` label; any other is its class ("4xx").
_STATUSES = frozenset({"200", "201", "204", "400", "401", "403", "404", "409", "500", "502",
                       "503", "504"})  # fmt: skip
_region_names: dict[str, str] = {}


def region_of(base_url: str) -> str:
    """The `region` label of a MAAS API URL: the one place it is decided. The API host (and
    port), unless a name was given for that URL (`name_region`); never a path or a secret."""
    named = _region_names.get(base_url)
    if named is not None:
        return named
    host = urlsplit(base_url).netloc.rpartition("@")[2].lower()
    return host or "unknown"


def name_region(base_urls: str | Sequence[str], name: str | None) -> None:
    """Label requests to `base_urls` (and operations on their machines) `name`; None: by
    host again (a flat config's MAAS)."""
    for url in (base_urls,) if isinstance(base_urls, str) else base_urls:
        if name is None:
            _region_names.pop(url, None)
        else:
            _region_names[url] = name


def request_kind(path: str, op: str | None) -> str:
    """A bounded name for a MAAS call: `machines/{id}/?op=deploy`, `machines/`."""
    segments = [s if s in _PATH_WORDS else "{id}" for s in path.strip("/").split("/") if s]
    kind = "/".join(segments) + "/" if segments else "/"
    return f"{kind}?op={op}" if op else kind


def failure_reason(exc: BaseException) -> str:
    """The `reason` label for an operation that failed with `exc`. A DeploymentFailed that
    wraps another error (create()'s account of any failure) is classified by that error."""
    seen = 0
    while (
        type(exc) is errors.DeploymentFailed and exc.__cause__ is not None and seen < 8
    ):  # fmt: skip
        exc, seen = exc.__cause__, seen + 1
    own = getattr(type(exc), "metrics_reason", None)
    if isinstance(own, str) and own in REASONS:
        return own
    if not isinstance(exc, Exception):
        return "interrupted"
    return next((reason for kind, reason in _REASON_OF if isinstance(exc, kind)), "internal")


class Recorder:
    """The metrics, made in one registry (prometheus_client's default for the process)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # only here: see the docstring

        place: dict[str, Any] = {} if registry is None else {"registry": registry}
        where = ["machine_type", "region"]
        self.phase_seconds = Histogram(
            PREFIX + "phase_duration_seconds",
            "Time one phase of a MAAS operation took (lookup, allocate, deploy_wait, ...)",
            ["phase", *where, "outcome"], buckets=PHASE_BUCKETS, **place,
        )  # fmt: skip
        self.in_progress = Gauge(
            PREFIX + "phase_in_progress",
            "Phases under way now (e.g. nodes waiting for MAAS to deploy)",
            ["phase", *where], multiprocess_mode="livesum", **place,
        )  # fmt: skip
        self.operations = Counter(
            PREFIX + "operations",
            "create/release/abort operations that ended, by outcome and failure reason",
            ["operation", *where, "outcome", "reason"], **place,
        )  # fmt: skip
        self.operation_seconds = Histogram(
            PREFIX + "operation_duration_seconds",
            "Time a whole create/release/abort took",
            ["operation", *where, "outcome"], buckets=PHASE_BUCKETS, **place,
        )  # fmt: skip
        self.node_failures = Counter(
            PREFIX + "node_failures",
            "Failed operations per node (which nodes fail most)",
            ["node", "operation", *where, "reason"], **place,
        )  # fmt: skip
        self.requests = Counter(
            PREFIX + "maas_requests",
            "MAAS API requests (every attempt) by kind and HTTP status or transport failure",
            ["region", "kind", "method", "status"], **place,
        )  # fmt: skip
        self.request_seconds = Histogram(
            PREFIX + "maas_request_duration_seconds",
            "Time one MAAS API request attempt took",
            ["region", "kind", "method"], buckets=REQUEST_BUCKETS, **place,
        )  # fmt: skip
        self.retries = Counter(
            PREFIX + "maas_retries",
            "MAAS requests sent again after a failed attempt, by cause",
            ["region", "kind", "cause"], **place,
        )  # fmt: skip


# -- which recorder: decided at the first record in a process ----------------------------------

@dataclass(frozen=True)
class _Setup:
    recorder: Recorder | None
    text: str  # what status() says


_setup: _Setup | None = None
_setup_lock = threading.Lock()


def _decide() -> _Setup:
    switch = os.environ.get(SWITCH_ENV, "").strip().lower()
    if switch in OFF:
        return _Setup(None, f"off ({SWITCH_ENV}={switch})")
    directory = os.environ.get(MULTIPROC_ENV)
    if directory and not os.path.isdir(directory):
        # prometheus_client would fail writing there; teuthology creates it for its exporter.
        return _Setup(None, f"off ({MULTIPROC_ENV}={directory} is not a directory; teuthology "
                            "creates it when teuthology-exporter runs)")  # fmt: skip
    try:
        import prometheus_client
        from prometheus_client import values
    except ImportError:
        return _Setup(None, f"off (prometheus_client is not installed: {INSTALL_HINT})")
    shared = directory is not None and values.ValueClass is not values.MutexValue
    recorder = Recorder(prometheus_client.REGISTRY)
    if shared:
        from prometheus_client import multiprocess

        # Gauges of ended processes would otherwise count forever.
        atexit.register(lambda: multiprocess.mark_process_dead(os.getpid()))  # type: ignore[no-untyped-call]
        return _Setup(recorder, f"on (multiprocess: {directory}, collected by "
                                "teuthology-exporter or `teuthology-maas metrics`)")  # fmt: skip
    note = f" ({MULTIPROC_ENV} was set after prometheus_client was imported)" if directory else ""
    return _Setup(recorder, f"on (in this process only{note})")


def _current() -> _Setup:
    global _setup
    if _setup is None:
        with _setup_lock:
            if _setup is None:
                try:
                    _setup = _decide()
                except Exception as exc:  # e.g. a duplicate metric name: say so, record nothing
                    _setup = _Setup(None, f"off (could not be set up: {exc})")
    return _setup


def status() -> tuple[bool, str]:
    """Whether metrics are recorded in this process, and how, in words."""
    setup = _current()
    return setup.recorder is not None, setup.text


@contextmanager
def recording_to(recorder: Recorder | None) -> Iterator[None]:
    """Record into `recorder` (None: nothing) while the block runs (tests, embedding)."""
    global _setup
    with _setup_lock:
        before, _setup = _setup, _Setup(recorder, "on (given)" if recorder else "off (given)")
    try:
        yield
    finally:
        with _setup_lock:
            _setup = before


def _safely(what: str, record: Any, *args: Any) -> None:
    try:
        record(*args)
    except Exception:  # a metrics problem must not fail the operation it measures
        log.debug("metrics: recording %s failed", what, exc_info=True)


# -- what the library calls ---------------------------------------------------------------------

class Measured(Protocol):
    def metrics_labels(self) -> tuple[str, Labels]:
        """The node's name and the labels of its operations."""
        ...


M = TypeVar("M", bound=Measured)
P = ParamSpec("P")
R = TypeVar("R")


def measured(
    name: str,
) -> Callable[[Callable[Concatenate[M, P], R]], Callable[Concatenate[M, P], R]]:
    """A method that is one `operation` (create, release, abort) of its object."""

    def wrap(method: Callable[Concatenate[M, P], R]) -> Callable[Concatenate[M, P], R]:
        def run(self: M, /, *args: P.args, **kwargs: P.kwargs) -> R:
            node, labels = self.metrics_labels()
            with operation(name, node=node, labels=labels):
                return method(self, *args, **kwargs)

        functools.update_wrapper(run, method)
        return run

    return wrap


@contextmanager
def operation(name: str, *, node: str, labels: Labels) -> Iterator[None]:
    """Measure one create/release/abort: its duration, outcome and (failed) reason; phases
    inside it are labelled with its machine type and region (`relabel` refines them)."""
    token = _labels.set(labels)
    started = time.monotonic()
    try:
        yield
    except BaseException as exc:
        _safely("an operation", _operation_done, name, node, "failure", exc, started)
        raise
    else:
        _safely("an operation", _operation_done, name, node, "success", None, started)
    finally:
        _labels.reset(token)


def _operation_done(
    name: str, node: str, outcome: str, exc: BaseException | None, started: float
) -> None:
    recorder = _current().recorder
    if recorder is None:
        return
    at = _labels.get() or Labels()
    reason = "none" if exc is None else failure_reason(exc)
    where = {"machine_type": at.machine_type, "region": at.region}
    recorder.operations.labels(operation=name, outcome=outcome, reason=reason, **where).inc()
    recorder.operation_seconds.labels(operation=name, outcome=outcome, **where).observe(
        time.monotonic() - started
    )
    if exc is not None:
        # A name MAAS does not know is not a node of the lab: it must not become a series.
        node = "unknown" if reason == "not_found" else node
        recorder.node_failures.labels(node=node, operation=name, reason=reason, **where).inc()


def relabel(*, machine_type: str) -> None:
    """The machine type became known (after the lookup): label what follows with it."""
    at = _labels.get()
    if at is not None:
        _labels.set(replace(at, machine_type=machine_type))


class Phase:
    """A phase under way; `failed()` when it ended short of its goal without raising (a wait
    that saw MAAS's failure status)."""

    ok = True

    def failed(self) -> None:
        self.ok = False


@contextmanager
def phase(name: str) -> Iterator[Phase]:
    """Time one phase (one of PHASES) and count it as in progress while it runs."""
    recorder, at = _current().recorder, _labels.get()
    under_way = Phase()
    if recorder is None or at is None:
        yield under_way
        return
    where: Mapping[str, str] = {"phase": name, "machine_type": at.machine_type,
                                "region": at.region}  # fmt: skip
    _safely("a phase start", lambda: recorder.in_progress.labels(**where).inc())
    started = time.monotonic()
    outcome = "failure"
    try:
        yield under_way
        outcome = "success" if under_way.ok else "failure"
    finally:
        elapsed = time.monotonic() - started
        _safely("a phase end", lambda: recorder.in_progress.labels(**where).dec())
        _safely("a phase", lambda: recorder.phase_seconds.labels(outcome=outcome, **where)
                .observe(elapsed))  # fmt: skip


def maas_request(
    base_url: str, method: str, path: str, op: str | None, status: str, seconds: float
) -> None:
    """One request attempt ended: `status` is the HTTP status ("200") or how the attempt
    failed without one ("transient", "deadline", "tls" ...)."""
    recorder = _current().recorder
    if recorder is None:
        return

    def record() -> None:
        region, kind = region_of(base_url), request_kind(path, op)
        code = status if not status.isdigit() or status in _STATUSES else f"{status[0]}xx"
        recorder.requests.labels(region=region, kind=kind, method=method, status=code).inc()
        recorder.request_seconds.labels(region=region, kind=kind, method=method).observe(seconds)

    _safely("a request", record)


def maas_retry(base_url: str, path: str, op: str | None, cause: str) -> None:
    """A request is about to be sent again; `cause` as for `maas_request`'s status."""
    recorder = _current().recorder
    if recorder is None:
        return
    _safely("a retry", lambda: recorder.retries.labels(
        region=region_of(base_url), kind=request_kind(path, op), cause=cause).inc())  # fmt: skip
