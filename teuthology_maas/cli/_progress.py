"""Live progress of one machine while a lifecycle action runs: what MAAS shows, what the
library waits for (SSH), and MAAS trouble, each on a line of its own.

On a terminal the line being waited on is rewritten in place (carriage return and erase-line)
with a ticking "so far"; when it is done it stays on screen exactly as a pipe would have
printed it. Anywhere else (a pipe, a log file) each change is one plain line, no control
characters, so logs stay greppable. Every line is stamped with the elapsed time at which what
it says began."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import IO

from teuthology_maas.cli._table import label_colour, paint

_ERASE_LINE = "\r\x1b[2K"
# A live line shows how long it has been waiting only once that is worth reading.
_SO_FAR_AFTER = 1.0


def format_elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def stamp(seconds: float) -> str:
    return f"[{format_elapsed(seconds):>7}]"


@dataclass(frozen=True)
class _Line:
    """What one progress line says. `key` names the phase it shows (a MAAS status, the SSH
    wait, MAAS trouble): a new text for the same phase rewrites the line on a terminal and
    keeps its stamp, `started`, the time the phase began. `detail` is shown on a terminal
    only (attempt counts change too often to log)."""

    key: str
    text: str
    started: float
    detail: str = ""


class Progress:
    """Renders one machine's progress. Thread-safe: the watcher thread reports MAAS statuses,
    the library's threads report waits and MAAS trouble, and the ticker thread (terminal only)
    refreshes the live line.

    Two lines can be live: the main one (what MAAS shows, or a phase the library waits
    through) and, while MAAS does not answer, a trouble line below it. On a terminal only the
    bottom line is drawn live; a main line that changes during trouble scrolls up above it."""

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
        self._maas: tuple[str, str | None] | None = None  # the last status MAAS showed
        self._statuses = 0  # how many different (status, message) MAAS showed
        self._line: _Line | None = None  # the main line
        self._trouble: _Line | None = None  # MAAS not answering, while it lasts
        self._drawn = False  # a live line is on screen and not yet ended
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

    @property
    def changed(self) -> bool:
        """Whether MAAS showed the machine in more than one state since the start."""
        return self._statuses > 1

    # ---- what callers report ------------------------------------------------------------------

    def update(self, status_name: str, message: str | None = None) -> None:
        """What MAAS shows now; repeats of the same (status, message) are ignored."""
        with self._lock:
            state = (status_name, message or None)
            if self._finished or self._maas == state:
                return
            previous, self._maas = self._maas, state
            self._statuses += 1
            waiting = self._line is not None and self._line.key.startswith("wait ")
            if waiting and previous is not None and previous[0] == status_name:
                return  # a new message of the same status does not interrupt a wait's line
            painted = paint(status_name, label_colour(status_name), self._colour)
            shown = f" ({message})" if message and message != status_name else ""
            text = f"{self._label}: {painted}{shown}"
            if waiting:
                # The wait goes on (the watcher may also just have caught up with what the
                # waiter saw first): the status is said above the wait's line.
                if self._live:
                    self._erase_bottom()
                self._write(f"{stamp(self.elapsed)} {text}\n")
                self._refresh_bottom()
                return
            self._main(f"status {status_name}", text)

    def waiting(self, phase: str, text: str, *, detail: str = "", ended: bool = False) -> None:
        """A phase the library waits through (`phase` "ssh"): `text` says what it waits for
        and why it is still waiting. A new `text` is a new line on a pipe and rewrites the
        line on a terminal; `detail` (attempt counts) is shown on a terminal only. `ended`:
        the wait is over and `text` says how; the line stays as it is."""
        with self._lock:
            if self._finished:
                return
            line = self._line
            if line is not None and line.key == f"wait {phase}" and line.text == text:
                self._line = replace(line, detail=detail)
                self._refresh_bottom()
            else:
                self._main(f"wait {phase}", text, detail)
            if ended and self._line is not None:
                done, self._line = replace(self._line, detail=""), None
                if self._live:
                    self._erase_bottom()
                    self._write(self._text(done) + "\n")
                    self._refresh_bottom()  # the trouble line, if MAAS is in trouble

    def trouble(self, text: str, *, detail: str = "") -> None:
        """MAAS is not answering as it should: one line, updated while it lasts, whatever
        the number of retries behind it."""
        with self._lock:
            if self._finished:
                return
            current = self._trouble
            if current is not None and current.text == text:
                self._trouble = replace(current, detail=detail)
                self._refresh_bottom()
                return
            started = current.started if current is not None else self.elapsed
            if self._live:
                self._erase_bottom()
            else:
                self._write(f"{stamp(self.elapsed)} {text}\n")
            self._trouble = _Line("trouble", text, started, detail)
            self._refresh_bottom()

    def answered(self, text: str = "MAAS answers again") -> None:
        """MAAS answered: the trouble line (if any) ends, saying after how long."""
        with self._lock:
            trouble = self._trouble
            if trouble is None or self._finished:
                return
            lasted = f"{text} after {format_elapsed(self.elapsed - trouble.started)}"
            if self._live:
                self._erase_bottom()
                self._write(f"{stamp(trouble.started)} {trouble.text}; {lasted}\n")
            else:
                self._write(f"{stamp(self.elapsed)} {lasted}\n")
            self._trouble = None
            self._refresh_bottom()

    def note(self, text: str) -> None:
        """A line of its own (what the provisioner decided) above the live line(s)."""
        with self._lock:
            if self._finished:
                return
            if self._live:
                self._erase_bottom()
            self._write(f"{stamp(self.elapsed)} {text}\n")
            self._refresh_bottom()

    def finish(self, text: str) -> None:
        """The outcome: the live lines end as they stand and nothing is drawn after this."""
        with self._lock:
            self._end_all()
            self._finished = True
            self._write(text + "\n")

    def close(self) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            self._end_all()

    # ---- drawing (lock held) ------------------------------------------------------------------

    def _main(self, key: str, text: str, detail: str = "") -> None:
        """A new main line, or (same `key`) a new text for the current one. On a terminal the
        previous line of another phase stays on screen as it was."""
        previous = self._line
        if previous is not None and previous.key == key:
            self._line = replace(previous, text=text, detail=detail)
            if self._live:
                self._refresh_bottom()
            else:
                self._write(f"{stamp(self.elapsed)} {text}\n")
            return
        line = self._line = _Line(key, text, self.elapsed, detail)
        if not self._live:
            self._write(self._text(line) + "\n")
            return
        if self._trouble is not None:
            # the trouble line stays at the bottom; the main line's changes scroll above it
            self._erase_bottom()
            if previous is not None:
                self._write(self._text(previous) + "\n")
            self._refresh_bottom()
            return
        if previous is not None and self._drawn:
            self._write(_ERASE_LINE + self._text(previous) + "\n")
            self._drawn = False
        self._refresh_bottom()

    def _end_all(self) -> None:
        """Leave whatever is live on screen as finished lines and move below them."""
        if not self._live:
            return
        self._erase_bottom()
        for line in (self._line, self._trouble):
            if line is not None:
                self._write(self._text(line) + "\n")
        self._line = self._trouble = None

    def _bottom(self) -> _Line | None:
        return self._trouble if self._trouble is not None else self._line

    def _erase_bottom(self) -> None:
        if self._drawn:
            self._write(_ERASE_LINE)
            self._drawn = False

    def _refresh_bottom(self) -> None:
        line = self._bottom()
        if not self._live or line is None or self._finished:
            return
        self._write(_ERASE_LINE + self._text(line, live=True))
        self._drawn = True

    def _text(self, line: _Line, *, live: bool = False) -> str:
        text = f"{stamp(line.started)} {line.text}"
        if not live:
            return text
        so_far = self.elapsed - line.started
        extras = [line.detail] if line.detail else []
        if so_far >= _SO_FAR_AFTER:
            extras.append(f"{format_elapsed(so_far)} so far")
        return text + (f" - {', '.join(extras)}" if extras else "")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def _tick(self) -> None:
        while not self._done.wait(self._refresh):
            with self._lock:
                if self._drawn:
                    self._refresh_bottom()
