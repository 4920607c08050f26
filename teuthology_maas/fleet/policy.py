"""When the shared status poller looks at MAAS again: the adaptive tick.

One request per tick serves every waiting node, so the tick is the only cost knob. It is short
right after an action (a failed power-on or a refused deploy shows up within seconds), grows
with the time since the action while an install runs (nothing to see mid-install), and is short
again around the moment a node is expected to finish, because that is when added latency is
made. "Short" is the near tick, 3 x `poll_min_interval` (1.5 s by default), also the most
often kicks can make it poll, so a burst of hundreds of actions costs one poll per near tick;
`poll_min_interval` itself is the floor between any two polls.

A long job (a deployment: the caller gives a `calm` interval, `install_poll_interval`) is read
differently: MAAS is asked about it only every `calm` seconds, which is enough to catch a
failure, since nothing finishes mid-install; near the expected finish the caller's own free
signal (the node answering over SSH) is tried every probe gap instead (2 x
`poll_min_interval`, 1 s by default), and MAAS is read once to confirm what it says. Without
such a probe the near tick reads MAAS as above.

"Expected to finish" comes from, in order of trust: what this process has already seen nodes
do after the status_messages a node has shown (`fleet.estimate`), how long earlier waits of
the same kind took, the caller's `expected_duration`, and MAAS's last deployment phase
("Rebooting").

Pure logic on monotonic timestamps, no threads and no I/O, so it is tested with plain numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from teuthology_maas.fleet.estimate import Bracket, FinishEstimator

# The interval grows to this fraction of the time since the last action: a node that has been
# busy for 40 s is rarely done within the next 10 s, one busy for 2 s often is.
BACKOFF_RATIO = 0.25
# Right after an action and around an expected finish the tick is this many times the fastest
# (1.5 s by default): the worst-case added latency there, at a third of the requests.
NEAR_FACTOR = 3.0
# How far before / after an estimate the "near" window opens / closes, as fractions of it.
EARLY_MARGIN = 0.1
LATE_MARGIN = 0.25
# status_message prefixes MAAS shows during the last phase of a deployment.
FINAL_PHASE_MESSAGES: tuple[str, ...] = ("Rebooting",)
DEFAULT_JITTER = 0.1
# A late long job's probes back off this much more slowly than reads.
PROBE_BACKOFF_RATIO = 0.05
# Inside a finish window a probe is tried every this many fastest ticks (1 s by default): a
# probe costs MAAS nothing, and the gap between probes is most of the latency added there.
PROBE_FACTOR = 2.0
# A long job's reads spread out this fast: the next read comes this many times the time since
# the action later.
LONG_JOB_GROWTH = 2.0


@dataclass
class WaitTiming:
    """What the policy needs to know about one waiter (monotonic seconds; `seen` relative to
    `started`)."""

    started: float
    kind: Hashable
    expected: float | None = None
    message: str | None = None
    message_since: float | None = None
    seen: Mapping[str, Bracket] = field(default_factory=dict)
    # A long job: read MAAS at least this often for failures, not on the near tick.
    calm: float | None = None
    # The waiter has a signal of its own that costs MAAS nothing (an SSH probe).
    probing: bool = False


class TickPolicy:
    """Chooses the delay before the next poll from every current waiter's timing."""

    def __init__(
        self,
        fast: float,
        slow: float,
        *,
        jitter: float = DEFAULT_JITTER,
        rng: random.Random | None = None,
    ) -> None:
        if fast <= 0 or slow < fast:
            raise ValueError(
                f"poll intervals must satisfy 0 < fast <= slow; got fast={fast!r}, slow={slow!r}"
            )
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be a fraction in [0, 1); got {jitter!r}")
        self.fast = float(fast)
        self.slow = float(slow)
        self.jitter = jitter
        self._rng = rng or random.Random()

    @property
    def near(self) -> float:
        return min(self.slow, self.fast * NEAR_FACTOR)

    @property
    def probe_gap(self) -> float:
        """The gap between a long job's probes inside its finish window."""
        return min(self.slow, self.fast * PROBE_FACTOR)

    def _clamp(self, value: float, low: float | None = None) -> float:
        return min(self.slow, max(self.fast if low is None else low, value))

    def finish_window(
        self, timing: WaitTiming, history: FinishEstimator
    ) -> tuple[float, float] | None:
        """Absolute (open, close) times around the expected finish, or None when unknown."""
        predicted = history.predict(timing.kind, timing.seen)
        if predicted is not None:
            return timing.started + predicted[0], timing.started + predicted[1]
        total = history.total(timing.kind)
        if total is None and timing.expected is not None and timing.expected > 0:
            total = (timing.expected, timing.expected)
        if total is not None:
            low, high = total[0] * (1.0 - EARLY_MARGIN), total[1] * (1.0 + LATE_MARGIN)
            return timing.started + low, timing.started + high
        if (
            timing.message is not None
            and timing.message_since is not None
            and timing.message.startswith(FINAL_PHASE_MESSAGES)
        ):
            return timing.message_since, math.inf
        return None

    def interval_for(self, timing: WaitTiming, now: float, history: FinishEstimator) -> float:
        """The delay this waiter alone would want before the next poll (no jitter)."""
        if timing.calm is not None:
            return self._long_job_interval(timing, now, history, max(self.fast, timing.calm))
        since_action = now - timing.started
        interval = self._clamp(since_action * BACKOFF_RATIO, self.near)
        window = self.finish_window(timing, history)
        if window is None:
            return interval
        opens, closes = window
        if now < opens:
            # Nothing can finish before the window opens, so the first poll that matters is
            # one near tick into it: a finish right at the opening waits at most that long.
            return min(interval, self._clamp(opens - now + self.near))
        if now < closes:
            return min(interval, self.near)
        # Later than every estimate: keep looking often, backing off as the estimate ages.
        return min(interval, self._clamp((now - closes) * BACKOFF_RATIO, self.near))

    def _long_job_interval(
        self, timing: WaitTiming, now: float, history: FinishEstimator, calm: float
    ) -> float:
        # Right after the action the reads come quickly and spread out fast (1.5, 4.5, 13.5,
        # 40 s ...: a refused power-on shows within seconds, a short job is not kept
        # waiting), reaching the calm cadence within a few reads.
        interval = min(calm, max(self.near, (now - timing.started) * LONG_JOB_GROWTH))
        window = self.finish_window(timing, history)
        if window is None:
            return interval  # the calm reads show the last phase ("Rebooting") when it comes
        opens, closes = window
        if timing.probing:
            if now < closes:
                return interval  # the probe watches for the finish; MAAS only for failures
            # Later than every estimate: the probe may be failing for reasons of its own
            # (firewall, DNS); do not rely on it alone.
            return min(interval, max(self.slow, (now - closes) * BACKOFF_RATIO))
        if now < opens:
            return min(interval, max(self.fast, opens - now + self.near))
        if now < closes:
            return min(interval, self.near)
        return min(interval, self._clamp((now - closes) * BACKOFF_RATIO, self.near))

    def probe_window(
        self, timing: WaitTiming, history: FinishEstimator
    ) -> tuple[float, float] | None:
        """For a long job with a probe: (when probing may begin, when the finish window
        closes); None while no finish window is known (nothing can finish yet, as far as anyone
        can tell: the calm reads will show the last phase when it comes). Changes only when
        `history` learns or the job shows a new status_message, so callers may keep it."""
        if timing.calm is None or not timing.probing:
            return None
        window = self.finish_window(timing, history)
        if window is None:
            return None
        opens, closes = window
        # A little before the window: a probe costs MAAS nothing, a window learned from a few
        # noisy nodes may open late. (A tenth of the time since the last phase was seen instead
        # saved a tenth of the probes at N=200 and left nodes with quick reboots unprobed for
        # up to a minute.)
        return opens - EARLY_MARGIN * max(0.0, opens - timing.started), closes

    def probe_gap_at(self, closes: float, now: float) -> float:
        """The gap between probes now, for a finish window closing at `closes`. Later than
        every estimate: keep trying often (it costs MAAS nothing), backing off slowly, since
        estimates learned from a few nodes are often too early."""
        if now < closes:
            return self.probe_gap
        return self._clamp((now - closes) * PROBE_BACKOFF_RATIO, self.probe_gap)

    def probe_schedule(
        self, timing: WaitTiming, now: float, history: FinishEstimator
    ) -> tuple[float, float] | None:
        """(when probing may begin, the gap between probes now), or None (`probe_window`)."""
        window = self.probe_window(timing, history)
        if window is None:
            return None
        opens, closes = window
        return opens, self.probe_gap_at(closes, now)

    def spread(self) -> float:
        """A jitter factor, so that many processes polling one MAAS do not fall into step."""
        return 1.0 + self._rng.uniform(-self.jitter, self.jitter)

    def next_interval(
        self,
        timings: Iterable[WaitTiming],
        now: float,
        history: FinishEstimator,
    ) -> float:
        """The delay before the next poll for all waiters together, jittered so that many
        processes polling one MAAS do not fall into step."""
        wanted = min(
            (self.interval_for(t, now, history) for t in timings),
            default=self.slow,
        )
        return max(self.fast, wanted * self.spread())
