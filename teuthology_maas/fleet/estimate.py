"""When will a waiting node finish? Learned from the nodes this process has already seen finish.

Every poll brackets what it sees: a status_message that is new since the previous poll of that
machine first appeared after that previous poll and at or before this one; the same holds for
reaching the target. All times are relative to the start of the wait (right after the action).

For each status_message, two models of the time a node still needs after it appears are
tested against every finished node: additive (the rest of the job takes about the same time on
every node: a reboot, a POST) and proportional (the rest scales with how long the job took so
far: a slower disk installs and configures more slowly). While one value of a model fits the
brackets of every finished node (the running intersection of what each allows stays non-empty,
with a small slack) that intersection predicts; once none does (real nodes are noisy) the
spread of the nodes' midpoint values does. While both models fit, the window covers both
(early on, one or two finished nodes fit anything); the messages a node has shown each narrow
its window. Lookups are O(1): only running bounds are kept, never the nodes themselves.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

# Slack when intersecting brackets: seconds for the additive model, a fraction of the ratio
# for the proportional one (clock and scheduling noise, not model error).
ADDITIVE_SLACK = 0.05
PROPORTIONAL_SLACK = 0.001
# A model that no single value fits is used from its spread only once this many nodes show it.
MIN_NOISY_SAMPLES = 3
# status_messages can carry free text (a failure reason); past this many distinct ones a
# long-lived process stops learning new ones instead of growing without bound.
MAX_MESSAGES = 1000


@dataclass(frozen=True)
class Bracket:
    """Something happened after `lo` and at or before `hi` (seconds from the wait's start)."""

    lo: float
    hi: float


@dataclass
class _Fit:
    """One model's parameter: the values every finished node allows (while any), and the
    spread of each node's midpoint value."""

    lo: float = -math.inf
    hi: float = math.inf
    mid_lo: float = math.inf
    mid_hi: float = -math.inf
    count: int = 0
    broken: bool = False

    def add(self, lo: float, hi: float, slack: float) -> None:
        if not self.broken:
            self.lo, self.hi = max(self.lo, lo - slack), min(self.hi, hi + slack)
            self.broken = self.lo > self.hi
        if math.isfinite(hi):
            middle = (lo + hi) / 2
            self.mid_lo, self.mid_hi = min(self.mid_lo, middle), max(self.mid_hi, middle)
        self.count += 1

    def bounds(self) -> tuple[float, float] | None:
        if self.count == 0:
            return None
        if not self.broken:
            return self.lo, self.hi
        return (self.mid_lo, self.mid_hi) if self.mid_lo <= self.mid_hi else None


@dataclass
class _MessageFits:
    additive: _Fit = field(default_factory=_Fit)
    proportional: _Fit = field(default_factory=_Fit)


@dataclass
class _Totals:
    lo: float = math.inf
    hi: float = 0.0
    count: int = 0


class FinishEstimator:
    """Learns finish times per kind of wait (its target set) and predicts a node's finish."""

    def __init__(self) -> None:
        self._fits: dict[tuple[Hashable, str], _MessageFits] = {}
        self._totals: dict[Hashable, _Totals] = {}
        # Bumped by every learn(): a prediction made at one version holds until the next.
        self.version = 0

    def learn(self, kind: Hashable, finished: Bracket, seen: Mapping[str, Bracket]) -> None:
        """A node reached its target within `finished`, having shown `seen` on the way."""
        self.version += 1
        totals = self._totals.setdefault(kind, _Totals())
        totals.lo = min(totals.lo, finished.lo)
        totals.hi = max(totals.hi, finished.hi)
        totals.count += 1
        for message, appeared in seen.items():
            fits = self._fits.get((kind, message))
            if fits is None:
                if len(self._fits) >= MAX_MESSAGES:
                    continue
                fits = self._fits[(kind, message)] = _MessageFits()
            fits.additive.add(finished.lo - appeared.hi, finished.hi - appeared.lo, ADDITIVE_SLACK)
            if appeared.hi > 0:
                low = finished.lo / appeared.hi
                high = finished.hi / appeared.lo if appeared.lo > 0 else math.inf
                fits.proportional.add(low, high, low * PROPORTIONAL_SLACK)

    def total(self, kind: Hashable) -> tuple[float, float] | None:
        """The shortest and longest whole wait seen so far for this kind."""
        totals = self._totals.get(kind)
        return (totals.lo, totals.hi) if totals is not None and totals.count else None

    def predict(self, kind: Hashable, seen: Mapping[str, Bracket]) -> tuple[float, float] | None:
        """(earliest, latest) finish, relative to the wait's start, from the messages a node
        has shown; None when no message has a model that finished nodes support."""
        exact: list[tuple[float, float]] = []
        noisy: list[tuple[float, float]] = []
        for message, appeared in seen.items():
            fits = self._fits.get((kind, message))
            if fits is None:
                continue
            holding: list[tuple[float, float]] = []
            spread: list[tuple[float, float]] = []
            for model, window in (
                (fits.additive, _shifted(appeared, fits.additive.bounds())),
                (fits.proportional, _scaled(appeared, fits.proportional.bounds())),
            ):
                if window is None:
                    continue
                if not model.broken:
                    holding.append(window)
                elif model.count >= MIN_NOISY_SAMPLES:
                    spread.append(window)
            # While both models fit the finished nodes, either may be the true one.
            if holding:
                exact.append(_hull(holding))
            elif spread:
                noisy.append(min(spread, key=lambda w: w[1] - w[0]))
        for windows in (exact, noisy):
            if windows:
                low = max(w[0] for w in windows)
                high = min(w[1] for w in windows)
                # Messages that disagree mean a model is wrong: widen rather than guess.
                return (low, high) if low <= high else _hull(windows)
        return None


def _hull(windows: list[tuple[float, float]]) -> tuple[float, float]:
    return min(w[0] for w in windows), max(w[1] for w in windows)


def _shifted(appeared: Bracket, delta: tuple[float, float] | None) -> tuple[float, float] | None:
    if delta is None:
        return None
    return appeared.lo + delta[0], appeared.hi + delta[1]


def _scaled(appeared: Bracket, ratio: tuple[float, float] | None) -> tuple[float, float] | None:
    if ratio is None or appeared.lo < 0 or not math.isfinite(ratio[1]):
        return None
    return appeared.lo * ratio[0], appeared.hi * ratio[1]
