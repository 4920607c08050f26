"""Feeding a Progress display while the provisioner works: MAAS's status of the machine (a
polling watcher), what the library decides (its log, as notes), and what it waits for (its
WaitReports: SSH attempts, MAAS not answering)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from teuthology_maas import waits
from teuthology_maas.cli._common import short_hostname
from teuthology_maas.cli._progress import Progress
from teuthology_maas.errors import MaasError
from teuthology_maas.models import Machine
from teuthology_maas.waits import Reason, WaitReport

# Decisions ("aborting the deployment in progress"); the lifecycle's own status-change
# messages are left out (the status line already shows them), and so is the SSH wait (its own
# line shows every attempt).
_NOTE_LOGGERS = frozenset({"teuthology_maas.node.provisioner"})
# Retries of MAAS calls: shown condensed, as one trouble line fed by WaitReports.
_CONDENSED_LOGGERS = frozenset({"teuthology_maas.fleet.poller", "teuthology_maas.maas.client"})


class _ToProgress(logging.Handler):
    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self._progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        if record.name in _CONDENSED_LOGGERS and record.levelno < logging.ERROR:
            return
        if record.levelno < logging.WARNING and (
            record.name not in _NOTE_LOGGERS or record.funcName == "_log_change"
        ):
            return
        try:
            self._progress.note(record.getMessage())
        except Exception:  # a display problem must never break the action
            self.handleError(record)


@contextmanager
def library_log_as_notes(progress: Progress, name: str = "teuthology_maas") -> Iterator[None]:
    """Show what the library decides and waits for (its INFO log) as progress notes, and
    only there: the record does not also reach Python's last-resort stderr handler."""
    logger = logging.getLogger(name)
    handler = _ToProgress(progress)
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class WaitsToProgress:
    """A `waits` subscriber: the SSH wait of one machine as its own progress line, and any
    trouble with its MAAS as one updating trouble line."""

    def __init__(self, progress: Progress, *, hostname: str, api_url: str) -> None:
        self._progress = progress
        self._hostname = hostname
        self._api_url = api_url
        parts = urlsplit(api_url)
        self._maas = parts.netloc or api_url

    def __call__(self, report: WaitReport) -> None:
        if report.what == "ssh" and short_hostname(report.subject) == self._hostname:
            self._ssh(report)
        elif report.what == "maas" and report.subject == self._api_url:
            self._maas_trouble(report)

    def _ssh(self, report: WaitReport) -> None:
        target = report.target or report.subject
        if report.state == "done":
            text = f"{self._hostname}: SSH to {target}: ready after {report.attempt} attempt(s)"
        elif report.state == "failed":
            text = f"{self._hostname}: SSH to {target}: gave up ({report.reason})"
        else:
            text = f"{self._hostname}: waiting for SSH to {target}: {report.reason}"
        detail = f"attempt {report.attempt}" if report.attempt and report.state == "waiting" else ""
        self._progress.waiting("ssh", text, detail=detail, ended=report.state != "waiting")

    def _maas_trouble(self, report: WaitReport) -> None:
        if report.state == "done":
            self._progress.answered()
            return
        if report.reason == Reason.BUSY:
            text = f"MAAS at {self._maas} busy: {report.detail}"
        else:
            text = f"MAAS at {self._maas} not answering: {report.reason}"
        when = f" in {report.retry_in:.0f}s" if report.retry_in is not None else ""
        detail = f"retrying{when} ({report.target}, attempt {report.attempt})"
        self._progress.trouble(text, detail=detail)


@contextmanager
def waits_shown(progress: Progress, *, hostname: str, api_url: str) -> Iterator[None]:
    with waits.watching(WaitsToProgress(progress, hostname=hostname, api_url=api_url)):
        yield


class MachineWatcher:
    """Polls one machine through its own client and feeds status changes to a Progress.

    It only observes: every lifecycle decision stays in the provisioner."""

    def __init__(
        self,
        read_machine: Callable[[], Machine],
        progress: Progress,
        *,
        interval: float,
    ) -> None:
        self._read = read_machine
        self._progress = progress
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="machine-watcher", daemon=True)

    def __enter__(self) -> MachineWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll_once()  # the final state, so the display ends where MAAS ended

    def poll_once(self) -> None:
        try:
            machine = self._read()
        except MaasError:
            return  # a transient read error must not disturb the action being watched
        self._progress.answered()
        self._progress.update(machine.status_name, machine.status_message)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self._interval)
