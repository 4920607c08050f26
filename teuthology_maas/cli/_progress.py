"""Live progress of one machine's status while a lifecycle action runs.

On a terminal the current status is a single line rewritten in place (carriage return and
erase-line) with a ticking elapsed time; each status change finalises that line and starts a
new one. Anywhere else (a pipe, a log file) each change is one plain line with its elapsed
time and no control characters, so logs stay greppable."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from teuthology_maas.cli._table import label_colour, paint
from teuthology_maas.errors import MaasError
from teuthology_maas.models import Machine

_ERASE_LINE = "\r\x1b[2K"


def format_elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


class Progress:
    """Renders status changes for one machine. Thread-safe: the watcher thread reports changes
    while the ticker thread (terminal only) refreshes the elapsed time."""

    def __init__(
        self,
        stream: IO[str],
        *,
        label: str,
        live: bool,
        colour: bool = False,
        clock: Callable[[], float] = time.monotonic,
        refresh: float = 0.25,
    ) -> None:
        self._stream = stream
        self._label = label
        self._live = live
        self._colour = colour and live
        self._clock = clock
        self._refresh = refresh
        self._lock = threading.Lock()
        self._started = clock()
        self._current: tuple[str, str | None] | None = None
        self._line_open = False
        self._finished = False
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self._live:
            self._ticker = threading.Thread(target=self._tick, name="progress-ticker", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def update(self, status_name: str, message: str | None = None) -> None:
        """Report what MAAS shows now; repeats of the same (status, message) are ignored."""
        with self._lock:
            if self._finished or self._current == (status_name, message):
                return
            previous = self._current
            self._current = (status_name, message or None)
            if not self._live:
                self._write(self._text() + "\n")
                return
            if previous is not None and previous[0] != status_name and self._line_open:
                # keep the finished phase on screen; the new status gets a fresh line
                self._write("\n")
            self._redraw()

    def note(self, text: str) -> None:
        """A line of its own (what the provisioner is doing) above the live status line."""
        with self._lock:
            if self._finished:
                return
            stamped = f"[{format_elapsed(self.elapsed):>7}] {text}"
            if self._live and self._line_open:
                # the note takes the status line's place; the status is redrawn below it
                self._write(_ERASE_LINE + stamped + "\n")
                self._line_open = False
                self._redraw()
            else:
                self._write(stamped + "\n")

    def finish(self, text: str) -> None:
        """The outcome: the status line is finalised and nothing is drawn after this."""
        with self._lock:
            self._end_status_line()
            self._finished = True
            self._write(text + "\n")

    def close(self) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            self._end_status_line()

    def _end_status_line(self) -> None:
        """Leave the live status line drawn as it stands and move below it (lock held)."""
        if self._live and self._line_open:
            self._redraw()
            self._write("\n")
            self._line_open = False

    def _text(self) -> str:
        assert self._current is not None
        status_name, message = self._current
        status = paint(status_name, label_colour(status_name), self._colour)
        detail = f" ({message})" if message and message != status_name else ""
        return f"[{format_elapsed(self.elapsed):>7}] {self._label}: {status}{detail}"

    def _redraw(self) -> None:
        if self._current is None or self._finished:
            return
        self._write(_ERASE_LINE + self._text())
        self._line_open = True

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def _tick(self) -> None:
        while not self._done.wait(self._refresh):
            with self._lock:
                if self._line_open:
                    self._redraw()


# Decisions ("aborting the deployment in progress") and SSH readiness; the lifecycle's own
# status-change messages are left out: the status line already shows them.
_NOTE_LOGGERS = frozenset({"teuthology_maas.node.provisioner", "teuthology_maas.node.ssh"})


class _ToProgress(logging.Handler):
    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self._progress = progress

    def emit(self, record: logging.LogRecord) -> None:
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


class MachineWatcher:
    """Polls one machine through its own client and feeds status changes to a Progress.

    It only observes: every lifecycle decision stays in the provisioner. Used when the
    provisioner offers no progress hook of its own."""

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
        self._progress.update(machine.status_name, machine.status_message)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self._interval)
