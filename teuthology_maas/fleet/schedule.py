"""When each waiting machine is next read, and which reads share a request.

Every machine has a due time of its own (`Waiter.due`), from the delay the policy wishes for it
(`fleet.policy`): a deployment mid-install is read every `install_poll_interval`, a release just
asked for every near tick. A tick reads only the machines that are due, so MAAS renders only
those, and machines due a little later join it so that one request serves them all:

- a machine due within a quarter of its own interval (at most a near tick; a short wait within
  a near tick) is read with a tick that happens anyway;
- a new due time snaps back to an existing one up to half its interval earlier, so that
  machines whose waits began seconds apart (lock-many: one deploy after another) fall into
  step and share their reads from then on;
- the jitter is drawn once per tick, not per machine, so what was read together stays together.

A long job's probe runs only inside its finish window, so that hundreds of nodes are not tried
over SSH all through their installs. When nothing is known yet (no timings learned on this
host, no expected duration, MAAS's last phase not seen), such waits probe from the start
anyway, sharing a budget of `BLIND_PROBERS` probes per probe gap: a lone node is then seen
within a probe gap even by the first process of a host, and the first of a fleet to finish
gives every other a window (when probing stops being blind).

A confirmation (a waiter's probe answered, see `fleet.poller`) is due at once and is not held
back by the floor between polls: it is one request per finished node, and latency is made there.

Pure logic on monotonic timestamps, no threads and no I/O; the caller holds the poller's lock.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

from teuthology_maas.fleet.estimate import FinishEstimator
from teuthology_maas.fleet.policy import TickPolicy
from teuthology_maas.fleet.waiter import Waiter

# How much earlier than wished a machine may be read to share a request that happens anyway.
ALIGN_FRACTION = 0.25
# How much earlier than wished a new due time may snap to an existing one: up to half an
# interval, so that two groups half a cycle apart still merge (once; then they share reads).
SNAP_FRACTION = 0.5
# Probes MAAS did not confirm slow the next ones down (doubling), up to this many times.
MAX_PROBE_BACKOFF = 6
# Probes per probe gap that the long jobs probing with no finish window known share.
BLIND_PROBERS = 4


def blind(waiter: Waiter, history: FinishEstimator) -> bool:
    """Whether a new long job should probe from the start: nothing at all tells when it may
    finish."""
    return (
        waiter.probe is not None
        and waiter.calm is not None
        and waiter.expected is None
        and history.total(waiter.kind) is None
    )


def plan(
    waiters: Sequence[Waiter],
    others: Iterable[Waiter],
    policy: TickPolicy,
    history: FinishEstimator,
    *,
    now: float,
    since: float,
) -> None:
    """Give each of `waiters` its next due time, counted from `since` (the start of the poll
    that just read them, so that a slow answer does not stretch the tick), aligned with the
    due times of `others` and of each other."""
    if not waiters:
        return
    spread = policy.spread()
    planned = {id(w) for w in waiters}
    known = {w.due for w in others if w.due is not None and id(w) not in planned}
    dues = sorted(known)
    for waiter in waiters:
        interval = policy.interval_for(waiter.timing(), now, history)
        waiter.interval = interval
        due = since + max(policy.fast, interval * spread)
        if interval > policy.near:
            # The latest existing due time in [due - half the interval, due].
            at = bisect.bisect_right(dues, due)
            if at and dues[at - 1] >= due - SNAP_FRACTION * interval and dues[at - 1] > now:
                due = dues[at - 1]
        waiter.due = due
        if due not in known:
            known.add(due)
            bisect.insort(dues, due)


def earlier(waiters: Iterable[Waiter], at: float) -> None:
    """Make every waiter that is not a long job due no later than `at` (a kick: an action
    was taken; a long job does not want to hear about it)."""
    for waiter in waiters:
        if waiter.calm is None and (waiter.due is None or waiter.due > at):
            waiter.due = at


def next_tick(waiters: Iterable[Waiter], *, now: float, floor: float | None) -> float | None:
    """When the next poll is due: the earliest due time, not before `floor` (the fastest
    tick after the previous poll) unless a confirmation is waiting."""
    due = math.inf
    confirm = math.inf
    for waiter in waiters:
        when = now if waiter.due is None else waiter.due
        if waiter.confirming:
            confirm = min(confirm, when)
        else:
            due = min(due, when)
    if floor is not None and due < floor:
        due = floor
    best = min(due, confirm)
    return None if math.isinf(best) else best


def due_now(waiters: Iterable[Waiter], *, now: float, policy: TickPolicy) -> list[Waiter]:
    """The waiters a poll at `now` reads: those due, and those due soon enough to share it."""
    chosen = []
    for waiter in waiters:
        if waiter.due is None or waiter.confirming:
            chosen.append(waiter)
            continue
        # Short waits (a release, an abort) share every tick, as they always did.
        wish = waiter.interval
        slack = policy.near if wish <= policy.near else min(ALIGN_FRACTION * wish, policy.near)
        if waiter.due <= now + slack:
            chosen.append(waiter)
    return chosen


def probe_window(
    waiter: Waiter, policy: TickPolicy, history: FinishEstimator
) -> tuple[float, float] | None:
    """The waiter's probing window (`TickPolicy.probe_window`), kept on the waiter until the
    estimator learns or the machine shows a new status_message: every probe asks for it twice,
    and predicting it afresh each time was a ninth of a 200-node process's time."""
    message = waiter.last.status_message if waiter.last is not None else None
    key = (history.version, len(waiter.message_first_seen), message)
    if waiter.window_key != key:
        window = policy.probe_window(waiter.timing(), history)
        if waiter.probe_last is not None and waiter.window is not None:
            # Once probing has begun it goes on: a later message's model may place the finish
            # later than the node will really take (noisy nodes), and a node probed no more
            # would wait for the next calm read, minutes.
            opened = waiter.window
            window = opened if window is None else (
                min(opened[0], window[0]), max(opened[1], window[1])
            )
        waiter.window = window
        waiter.window_key = key
    return waiter.window


def probe_at(
    waiter: Waiter, policy: TickPolicy, history: FinishEstimator, *, now: float, blind: int = 0
) -> float | None:
    """When the waiter's probe should next run (monotonic), or None: not yet known (no finish
    window, and not `blind`), no probe, or a confirmation under way. `blind`: how many waits
    probe with no window known."""
    if waiter.probe is None or waiter.confirming or waiter.outcome is not None:
        return None
    window = probe_window(waiter, policy, history)
    if window is not None:
        opens, gap = window[0], policy.probe_gap_at(window[1], now)
    elif waiter.blind:
        # `blind` waits share the budget: a lone one probes every probe gap.
        opens, gap = waiter.started, policy.probe_gap * max(1.0, blind / BLIND_PROBERS)
    else:
        return None
    if waiter.probe_last is None:
        return opens
    backoff = gap * float(2 ** min(waiter.unconfirmed, MAX_PROBE_BACKOFF))
    if waiter.unconfirmed:
        backoff = min(backoff, max(gap, waiter.calm or gap))
    return max(opens, waiter.probe_last + backoff)
