"""The adaptive tick, on plain numbers (monotonic seconds)."""

from __future__ import annotations

import math
import random

import pytest

from teuthology_maas._fleet_policy import DurationHistory, TickPolicy, WaitTiming

DEPLOY = "deploy"
RELEASE = "release"


def policy(jitter: float = 0.0) -> TickPolicy:
    return TickPolicy(0.5, 10.0, jitter=jitter, rng=random.Random(7))


def test_fast_right_after_an_action_then_slower_up_to_the_slowest_tick():
    p, history = policy(), DurationHistory()
    timing = WaitTiming(started=100.0, kind=DEPLOY)
    assert p.interval_for(timing, 100.0, 0.0, history) == 0.5
    assert p.interval_for(timing, 104.0, 0.0, history) == 1.0
    assert p.interval_for(timing, 120.0, 0.0, history) == 5.0
    assert p.interval_for(timing, 400.0, 0.0, history) == 10.0


def test_a_kick_makes_the_tick_fast_again():
    p, history = policy(), DurationHistory()
    timing = WaitTiming(started=0.0, kind=DEPLOY)
    assert p.interval_for(timing, 300.0, 0.0, history) == 10.0
    assert p.interval_for(timing, 300.0, 299.0, history) == 0.5


def test_the_expected_duration_brings_the_next_poll_to_the_window_and_keeps_it_near():
    p, history = policy(), DurationHistory()
    timing = WaitTiming(started=0.0, kind=DEPLOY, expected=600.0)
    # window opens at 540 (10 % early) and closes at 750 (25 % late)
    assert p.interval_for(timing, 300.0, 0.0, history) == 10.0
    assert p.interval_for(timing, 536.0, 0.0, history) == 4.0
    assert p.interval_for(timing, 545.0, 0.0, history) == 1.5
    assert p.interval_for(timing, 749.0, 0.0, history) == 1.5
    # past every estimate: back off again, from the near tick
    assert p.interval_for(timing, 758.0, 0.0, history) == 2.0
    assert p.interval_for(timing, 900.0, 0.0, history) == 10.0


def test_the_last_deployment_phase_counts_as_near_the_finish():
    p, history = policy(), DurationHistory()
    installing = WaitTiming(started=0.0, kind=DEPLOY, message="Installing OS", message_since=200)
    rebooting = WaitTiming(started=0.0, kind=DEPLOY, message="Rebooting", message_since=400.0)
    assert p.interval_for(installing, 420.0, 0.0, history) == 10.0
    assert p.interval_for(rebooting, 420.0, 0.0, history) == 1.5
    assert p.finish_window(rebooting, history) == (400.0, math.inf)


def test_learned_durations_beat_the_callers_guess():
    p, history = policy(), DurationHistory()
    history.record(DEPLOY, 500.0, {"Installing OS": 300.0})
    history.record(DEPLOY, 560.0, {"Installing OS": 320.0})
    guessed = WaitTiming(started=0.0, kind=DEPLOY, expected=900.0)
    assert p.finish_window(guessed, history) == pytest.approx((450.0, 700.0))
    in_phase = WaitTiming(started=0.0, kind=DEPLOY, expected=900.0, message="Installing OS",
                          message_since=100.0)
    assert p.finish_window(in_phase, history) == pytest.approx((370.0, 500.0))
    # another kind of wait learns nothing from deployments
    release = WaitTiming(started=0.0, kind=RELEASE)
    assert p.finish_window(release, history) is None


def test_next_interval_serves_the_most_urgent_waiter_with_bounded_jitter():
    history = DurationHistory()
    calm = WaitTiming(started=0.0, kind=DEPLOY)
    fresh = WaitTiming(started=995.0, kind=DEPLOY)
    assert policy().next_interval([calm, fresh], 999.0, 0.0, history) == 1.0
    jittery = policy(jitter=0.1)
    values = [jittery.next_interval([calm], 999.0, 0.0, history) for _ in range(200)]
    assert all(9.0 <= v <= 11.0 for v in values)
    assert len({round(v, 3) for v in values}) > 50  # really spread, not one fixed offset
    assert policy().next_interval([], 5.0, 0.0, history) == 10.0


def test_the_tick_never_goes_below_the_fastest_interval():
    p = policy(jitter=0.5)
    timing = WaitTiming(started=0.0, kind=DEPLOY)
    assert min(p.next_interval([timing], 0.0, 0.0, DurationHistory()) for _ in range(100)) >= 0.5
