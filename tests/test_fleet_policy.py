"""The adaptive tick, on plain numbers (monotonic seconds)."""

from __future__ import annotations

import math
import random

import pytest

from teuthology_maas.fleet.estimate import Bracket, FinishEstimator
from teuthology_maas.fleet.policy import TickPolicy, WaitTiming

DEPLOY = "deploy"
RELEASE = "release"


def policy(jitter: float = 0.0) -> TickPolicy:
    return TickPolicy(0.5, 10.0, jitter=jitter, rng=random.Random(7))


def test_fast_right_after_an_action_then_slower_up_to_the_slowest_tick():
    p, history = policy(), FinishEstimator()
    timing = WaitTiming(started=100.0, kind=DEPLOY)
    assert p.interval_for(timing, 100.0, history) == 1.5  # the near tick: 3 x 0.5 s
    assert p.interval_for(timing, 108.0, history) == 2.0
    assert p.interval_for(timing, 120.0, history) == 5.0
    assert p.interval_for(timing, 400.0, history) == 10.0


def test_a_fresh_waiter_makes_the_tick_fast_for_everyone():
    p, history = policy(), FinishEstimator()
    old = WaitTiming(started=0.0, kind=DEPLOY)
    fresh = WaitTiming(started=299.0, kind=DEPLOY)
    assert p.next_interval([old], 300.0, history) == 10.0
    assert p.next_interval([old, fresh], 300.0, history) == 1.5


def test_the_expected_duration_brings_the_next_poll_to_the_window_and_keeps_it_near():
    p, history = policy(), FinishEstimator()
    timing = WaitTiming(started=0.0, kind=DEPLOY, expected=600.0)
    # window opens at 540 (10 % early) and closes at 750 (25 % late)
    assert p.interval_for(timing, 300.0, history) == 10.0
    # the first poll that matters is one near tick (1.5 s) into the window
    assert p.interval_for(timing, 536.0, history) == 5.5
    assert p.interval_for(timing, 545.0, history) == 1.5
    assert p.interval_for(timing, 700.0, history) == 1.5
    assert p.interval_for(timing, 749.0, history) == 1.5
    # past every estimate: back off again, from the near tick
    assert p.interval_for(timing, 758.0, history) == 2.0
    assert p.interval_for(timing, 900.0, history) == 10.0


def test_the_last_deployment_phase_counts_as_near_the_finish():
    p, history = policy(), FinishEstimator()
    installing = WaitTiming(started=0.0, kind=DEPLOY, message="Installing OS", message_since=200)
    rebooting = WaitTiming(started=0.0, kind=DEPLOY, message="Rebooting", message_since=400.0)
    assert p.interval_for(installing, 420.0, history) == 10.0
    assert p.interval_for(rebooting, 420.0, history) == 1.5
    assert p.finish_window(rebooting, history) == (400.0, math.inf)


def test_learned_totals_beat_the_callers_guess():
    p, history = policy(), FinishEstimator()
    history.learn(DEPLOY, Bracket(495.0, 500.0), {})
    history.learn(DEPLOY, Bracket(555.0, 560.0), {})
    guessed = WaitTiming(started=0.0, kind=DEPLOY, expected=900.0)
    assert p.finish_window(guessed, history) == pytest.approx((445.5, 700.0))
    # another kind of wait learns nothing from deployments
    release = WaitTiming(started=0.0, kind=RELEASE)
    assert p.finish_window(release, history) is None


def test_a_message_seen_by_finished_nodes_predicts_a_tight_window():
    p, history = policy(), FinishEstimator()
    # every node reboots at 90 % of its deploy time (the proportional model fits)
    for total in (500.0, 640.0, 880.0):
        history.learn(DEPLOY, Bracket(total - 1, total), {"Rebooting": Bracket(0.9 * total - 1,
                                                                              0.9 * total)})
    timing = WaitTiming(started=1000.0, kind=DEPLOY, message="Rebooting", message_since=1630.0,
                        seen={"Rebooting": Bracket(629.0, 630.0)})
    opens, closes = p.finish_window(timing, history)
    assert 1000 + 695 < opens <= 1000 + 700 <= closes < 1000 + 705
    assert p.interval_for(timing, 1400.0, history) == 10.0
    assert p.interval_for(timing, opens - 3.0, history) == pytest.approx(4.5)
    assert p.interval_for(timing, opens + 0.1, history) <= 1.5

def test_next_interval_serves_the_most_urgent_waiter_with_bounded_jitter():
    history = FinishEstimator()
    calm = WaitTiming(started=0.0, kind=DEPLOY)
    fresh = WaitTiming(started=990.0, kind=DEPLOY)
    assert policy().next_interval([calm, fresh], 999.0, history) == 2.25
    jittery = policy(jitter=0.1)
    values = [jittery.next_interval([calm], 999.0, history) for _ in range(200)]
    assert all(9.0 <= v <= 11.0 for v in values)
    assert len({round(v, 3) for v in values}) > 50  # really spread, not one fixed offset
    assert policy().next_interval([], 5.0, history) == 10.0


def test_the_tick_never_goes_below_the_fastest_interval():
    p = policy(jitter=0.5)
    timing = WaitTiming(started=0.0, kind=DEPLOY)
    assert min(p.next_interval([timing], 0.0, FinishEstimator()) for _ in range(100)) >= 0.5


def test_the_additive_model_wins_when_the_rest_takes_the_same_time_everywhere():
    history = FinishEstimator()
    # a 60 s reboot on every node, whatever the install took
    for total in (300.0, 500.0, 800.0):
        history.learn(DEPLOY, Bracket(total - 0.5, total), {"Rebooting": Bracket(total - 60.5,
                                                                                total - 60.0)})
    low, high = history.predict(DEPLOY, {"Rebooting": Bracket(399.5, 400.0)})
    assert 458.9 <= low <= 460.0 <= high <= 460.6  # as tight as the brackets allow


def test_a_model_no_value_fits_falls_back_to_the_spread_of_what_was_seen():
    history = FinishEstimator()
    # neither constant time nor constant ratio after "Installing OS": noisy real nodes
    history.learn(DEPLOY, Bracket(499.0, 500.0), {"Installing OS": Bracket(199.0, 200.0)})
    history.learn(DEPLOY, Bracket(699.0, 700.0), {"Installing OS": Bracket(249.0, 250.0)})
    history.learn(DEPLOY, Bracket(599.0, 600.0), {"Installing OS": Bracket(299.0, 300.0)})
    low, high = history.predict(DEPLOY, {"Installing OS": Bracket(249.0, 250.0)})
    # still a usable window around what finished nodes did, not a point
    assert low < 600.0 < high
    assert high - low < 400.0


def test_messages_never_seen_by_a_finished_node_predict_nothing():
    history = FinishEstimator()
    history.learn(DEPLOY, Bracket(499.0, 500.0), {"Rebooting": Bracket(449.0, 450.0)})
    assert history.predict(DEPLOY, {"Installing OS": Bracket(100.0, 110.0)}) is None
    assert history.predict(RELEASE, {"Rebooting": Bracket(449.0, 450.0)}) is None
    assert history.total(DEPLOY) == (499.0, 500.0)


def test_learning_stops_at_a_bounded_number_of_distinct_messages(monkeypatch):
    from teuthology_maas.fleet import estimate as _fleet_estimate

    monkeypatch.setattr(_fleet_estimate, "MAX_MESSAGES", 2)
    history = FinishEstimator()
    for n in range(5):
        history.learn(DEPLOY, Bracket(99.0, 100.0), {f"Marking node failed - reason {n}":
                                                       Bracket(9.0, 10.0)})
    assert history.predict(DEPLOY, {"Marking node failed - reason 1": Bracket(9.0, 10.0)})
    assert history.predict(DEPLOY, {"Marking node failed - reason 4": Bracket(9.0, 10.0)}) is None


def test_a_long_job_is_read_ever_more_rarely_up_to_its_calm_cadence():
    p = TickPolicy(0.5, 10.0, jitter=0.0)
    history = FinishEstimator()
    job = WaitTiming(started=0.0, kind="deploy", calm=120.0)
    assert p.interval_for(job, 0.0, history) == 1.5
    assert p.interval_for(job, 4.5, history) == 9.0
    assert p.interval_for(job, 500.0, history) == 120.0  # beyond poll_interval: failures only
    # no probe: near the expected finish, the near tick as before
    near = WaitTiming(started=0.0, kind="deploy", calm=120.0, expected=600.0)
    assert p.interval_for(near, 560.0, history) == 1.5
    # with a probe the probe watches the finish; MAAS is read for failures only
    probed = WaitTiming(started=0.0, kind="deploy", calm=120.0, expected=600.0, probing=True)
    assert p.interval_for(probed, 560.0, history) == 120.0
    # later than every estimate: MAAS again, at least every poll_interval
    assert p.interval_for(probed, 800.0, history) == 12.5


def test_a_probe_runs_only_inside_a_known_finish_window():
    p = TickPolicy(0.5, 10.0, jitter=0.0)
    history = FinishEstimator()
    unknown = WaitTiming(started=0.0, kind="deploy", calm=120.0, probing=True)
    assert p.probe_schedule(unknown, 100.0, history) is None
    rebooting = WaitTiming(started=0.0, kind="deploy", calm=120.0, probing=True,
                           message="Rebooting", message_since=400.0)
    # (opening a tenth earlier: a window learned from few noisy nodes may open late)
    assert p.probe_schedule(rebooting, 410.0, history) == (360.0, 1.0)
    expected = WaitTiming(started=0.0, kind="deploy", calm=120.0, probing=True, expected=600.0)
    assert p.probe_schedule(expected, 100.0, history) == (486.0, 1.0)
    not_long = WaitTiming(started=0.0, kind="release", probing=True, expected=60.0)
    assert p.probe_schedule(not_long, 100.0, history) is None


def test_a_probe_window_kept_on_the_waiter_follows_what_is_learned_and_seen():
    from teuthology_maas.fleet import schedule
    from teuthology_maas.fleet.waiter import Waiter
    from teuthology_maas.models import Machine, NodeStatus

    p, history = policy(), FinishEstimator()
    waiter = Waiter(system_id="abc123", targets=frozenset({NodeStatus.DEPLOYED}),
                    failures=frozenset(), started=0.0, deadline=math.inf, expected=None,
                    label=DEPLOY, calm=120.0, probe=lambda: False)
    assert schedule.probe_at(waiter, p, history, now=10.0) is None  # nothing known yet
    # another node of the kind finished between 500 and 510 s: the window opens well before
    # (-10 % of the earliest finish, then a tenth of that earlier: one sample may be late)
    history.learn(DEPLOY, Bracket(500.0, 510.0), {})
    assert schedule.probe_at(waiter, p, history, now=10.0) == 405.0
    waiter.probe_last = 455.0
    assert schedule.probe_at(waiter, p, history, now=455.0) == 456.0  # every probe gap, 1 s
    # the machine shows its last phase, and a node that showed it finished 30-31 s later:
    # the window narrows to that node's pace
    history.learn(DEPLOY, Bracket(600.0, 601.0), {"Rebooting": Bracket(570.0, 570.0)})
    waiter.last = Machine.from_json({"system_id": "abc123", "hostname": "n1", "status": 9,
                                     "status_message": "Rebooting"})
    waiter.seen["Rebooting"] = Bracket(560.0, 560.0)
    waiter.probe_last = None
    # (both models fit that node: 30-31 s after Rebooting, or about 1.052 x its time so far,
    # the earliest being 588.9 s; opening a tenth of that earlier)
    assert schedule.probe_at(waiter, p, history, now=561.0) == pytest.approx(530.0, abs=0.01)
    waiter.probe_last = 590.0
    assert schedule.probe_at(waiter, p, history, now=590.0) == 591.0  # every probe gap
    # later than every estimate: the gap backs off, slowly
    waiter.probe_last = 700.0
    later = schedule.probe_at(waiter, p, history, now=700.0)
    assert later is not None and 700.0 + 1.0 < later < 700.0 + 10.0


def test_a_probe_window_once_open_never_closes_before_its_node_finishes():
    from teuthology_maas.fleet import schedule
    from teuthology_maas.fleet.waiter import Waiter
    from teuthology_maas.models import Machine, NodeStatus

    p, history = policy(), FinishEstimator()
    history.learn(DEPLOY, Bracket(500.0, 510.0), {})
    waiter = Waiter(system_id="abc123", targets=frozenset({NodeStatus.DEPLOYED}),
                    failures=frozenset(), started=0.0, deadline=math.inf, expected=None,
                    label=DEPLOY, calm=120.0, probe=lambda: False)
    assert schedule.probe_at(waiter, p, history, now=410.0) == 405.0
    waiter.probe_last = 410.0
    # a message whose model places the finish much later (another node showed it 400 s
    # before finishing): the node is still probed every probe gap, not from 800 s on
    history.learn(DEPLOY, Bracket(900.0, 901.0), {"Configuring OS": Bracket(500.0, 500.0)})
    waiter.last = Machine.from_json({"system_id": "abc123", "hostname": "n1", "status": 9,
                                     "status_message": "Configuring OS"})
    waiter.message_first_seen["Configuring OS"] = 412.0
    waiter.seen["Configuring OS"] = Bracket(405.0, 412.0)
    assert schedule.probe_at(waiter, p, history, now=412.0) == 411.0
    # a waiter that has not begun probing takes the new, later window as it is
    fresh = Waiter(system_id="def456", targets=frozenset({NodeStatus.DEPLOYED}),
                   failures=frozenset(), started=0.0, deadline=math.inf, expected=None,
                   label=DEPLOY, calm=120.0, probe=lambda: False)
    fresh.seen["Configuring OS"] = Bracket(405.0, 412.0)
    assert schedule.probe_at(fresh, p, history, now=412.0) > 600.0
