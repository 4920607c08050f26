"""Many processes, one MAAS user: races between separate OS processes over real HTTP.

Each scenario runs 20 seeds at once, one node per seed (race001..race020): every seed draws
its own staggered start times (0 to 10 simulated seconds; the simulator's clock runs 10x, so
the starts fall anywhere from before the allocate to after the hand-over of a 6-second
deployment and its SSH wait). The racers are separate processes (tests/_racer.py) sharing the
MAAS API key, as teuthology's supervisors and an operator's `teuthology-maas` do.

After every run, for every node, from MAAS's own record (the simulator's request log in the
order MAAS applied it, with each machine's state before each request):

* a create() that returned success has its node Deployed, locked, with its token, and nobody
  changed it afterwards (unless the scenario's other actor had the right to: the job's own
  unlock, reconcile on a node paddles no longer holds);
* every failed attempt left nothing allocated to us that no attempt holds;
* no create() attempt's request (its clean-up included) acted on a deployment that was not its
  own; the other actors acted only as their authority allows;
* no failure waited out a timeout: each names the race it lost.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import pytest

from tests._races import (
    USER,
    RaceLab,
    Result,
    applied_posts,
    classify,
    final_state,
    foreign_touches,
    overlaps,
    sender,
    touches_after,
)
from tests.fixtures_reliability import Audit

pytestmark = [pytest.mark.slow]

SEEDS = 20
STAGGER = 10.0  # simulated seconds


@pytest.fixture
def race_lab(tmp_path) -> Iterator[RaceLab]:
    lab = RaceLab(tmp_path, SEEDS)
    try:
        yield lab
    finally:
        lab.close()


def by_node(results: list[Result], kind: str | None = None) -> dict[str, list[Result]]:
    grouped: dict[str, list[Result]] = {}
    for result in results:
        if kind is None or result.kind == kind:
            grouped.setdefault(result.node, []).append(result)
    return grouped


def check_failures(creates: list[Result], causes: Counter[str]) -> list[str]:
    """Every failed create() names the race it lost; none waited out a timeout."""
    problems = []
    for result in creates:
        if result.ok:
            continue
        cause = classify(result.error)
        causes[cause] += 1
        if cause.startswith("other") or "did not reach" in result.error:
            problems.append(f"{result.node}: unexplained failure: {result.error[:300]}")
    return problems


def check_winner(lab: RaceLab, hostname: str, winner: Result, *, allowed: set[str]) -> list[str]:
    """The winner's node is Deployed, locked, with its token; nobody but `allowed` changed it
    after the winner returned."""
    problems = []
    status, locked, owner, token = final_state(lab.sim, hostname)
    if (status, locked, owner, token) != ("Deployed", True, USER, winner.token):
        problems.append(
            f"{hostname}: winner {winner.token} returned, but MAAS ends {status}, locked={locked}, "
            f"owner={owner}, token={token}"
        )
    problems += touches_after(lab.sim, hostname, winner.ended, {*allowed, winner.token or ""})
    return problems


def check_free(lab: RaceLab, hostname: str) -> list[str]:
    status, _, owner, _ = final_state(lab.sim, hostname)
    if status != "Ready" or owner is not None:
        return [f"{hostname}: no attempt holds it, but MAAS ends {status} for {owner}"]
    return []


def note(matrix, problems: list[str], causes: Counter[str], extra: str = "") -> None:
    leaked = [p for p in problems if "no attempt holds it" in p or "ends" in p]
    foreign = [p for p in problems if p not in leaked]
    summary = ", ".join(f"{n} {c}" for c, n in causes.most_common())
    matrix.note(Audit(leaked=leaked, foreign_touched=foreign), f"{extra}{summary}")
    print(f"\n{matrix.scenario}: {extra}{summary}")  # the whole tally, with pytest -s


def lost_allocates(lab: RaceLab, results: list[Result]) -> int:
    """Attempts that raced another for the allocate itself and were answered 409."""
    losers = {r.token for r in results if r.kind == "create" and not r.ok}
    return sum(
        1
        for r in lab.sim.requests(op="allocate")
        if r.status == 409 and sender(r) in losers
    )


def stagger(rng: random.Random) -> float:
    """A start 0 to 10 simulated seconds after the first one; one in five at the same moment
    (within 50 ms of simulated time), where both attempts race for the allocate itself."""
    if rng.random() < 0.2:
        return rng.uniform(0.0, 0.05)
    return rng.uniform(0.0, STAGGER)


@pytest.mark.parametrize("processes", [2, 3])
def test_the_same_node_created_by_several_processes(race_lab, matrix, processes):
    """Library callers without authority over each other: the first attempt to hold the node
    keeps it; the others touch nothing and say whose deployment it is."""
    lab = race_lab
    lab.start(processes)
    plan = []
    for seed, hostname in enumerate(lab.hostnames):
        rng = random.Random(seed)
        first = seed % processes
        for index in range(processes):
            delay = 0.0 if index == first else stagger(rng)
            plan.append((index, {"kind": "create", "node": hostname, "delay": delay}))
    results = lab.run(plan)
    lab.settle()

    problems: list[str] = []
    causes: Counter[str] = Counter()
    for hostname, creates in by_node(results).items():
        winners = [r for r in creates if r.ok]
        problems += check_failures(creates, causes)
        problems += foreign_touches(lab.sim, hostname, [t for r in creates for t in r.tokens])
        if len(winners) != 1:
            problems.append(
                f"{hostname}: {len(winners)} winners: {[r.error[:80] for r in creates]}"
            )
        else:
            problems += check_winner(lab, hostname, winners[0], allowed=set())
    raced = lost_allocates(lab, results)
    note(matrix, problems, causes, f"{SEEDS} seeds x {processes} processes, {raced} lost the "
         "allocate itself; losers: ")  # fmt: skip
    assert not problems, "\n".join(problems)


def test_the_same_jobs_node_created_twice_takes_over_and_the_loser_stands_down(race_lab, matrix):
    """Two creates for the job paddles says holds the node (its lock on each): the later one
    may take over (it stamps its token first); the one taken over stops at once, touching
    nothing more, whether it was allocating, deploying, waiting for SSH or done."""
    lab = race_lab
    lab.start(2)
    plan = []
    for seed, hostname in enumerate(lab.hostnames):
        rng = random.Random(100 + seed)
        lock = ["scheduled@control", f"/archive/run/{seed}"]
        first = seed % 2
        for index in range(2):
            delay = 0.0 if index == first else stagger(rng)
            command = {"kind": "create", "node": hostname, "delay": delay, "lock": lock}
            plan.append((index, command))
    results = lab.run(plan)
    lab.settle()

    problems: list[str] = []
    causes: Counter[str] = Counter()
    winners_seen: Counter[int] = Counter()
    for hostname, creates in by_node(results).items():
        tokens = [t for r in creates for t in r.tokens]
        problems += check_failures(creates, causes)
        problems += foreign_touches(lab.sim, hostname, tokens, claims=True)
        winners = sorted((r for r in creates if r.ok), key=lambda r: r.ended)
        winners_seen[len(winners)] += 1
        if winners:
            # The last success holds it; an earlier one was replaced after it had returned.
            last = winners[-1]
            problems += check_winner(lab, hostname, last, allowed=set())
            for earlier in winners[:-1]:
                if [r for r in applied_posts(lab.sim, lab.sim.system_id(hostname))
                        if sender(r) == last.token and r.time < earlier.ended]:  # fmt: skip
                    problems.append(f"{hostname}: replaced before the earlier winner returned")
        else:
            problems += check_free(lab, hostname)
    raced = sum(len(overlaps.pop(h, [])) for h in lab.hostnames)
    note(matrix, problems, causes, f"nodes with 0/1/2 winners {winners_seen[0]}/"
         f"{winners_seen[1]}/{winners_seen[2]}; {raced} deploy/lock in flight at a takeover; "
         "losers: ")  # fmt: skip
    assert not problems, "\n".join(problems)


def test_create_versus_release(race_lab, matrix):
    """Even seeds: the job's own unlock (release() for the paddles lock the create() stamped)
    while its create() runs, as teuthology-kill does from another process: the release may
    undo it, and the create() stops at once without touching it again. Odd seeds: a release
    with no authority over the deployment (another process's plain release()): it touches
    nothing, and the create() succeeds."""
    lab = race_lab
    lab.start(2)
    plan = []
    for seed, hostname in enumerate(lab.hostnames):
        rng = random.Random(200 + seed)
        lock = ["scheduled@control", f"/archive/run/{seed}"]
        plan.append((0, {"kind": "create", "node": hostname, "delay": 0.0, "lock": lock}))
        release = {
            "kind": "release",
            "node": hostname,
            "delay": stagger(rng),
            "owner": f"unlock{seed}",
            "lock": lock if seed % 2 == 0 else None,
        }
        plan.append((1, release))
    results = lab.run(plan)
    lab.settle()

    problems: list[str] = []
    causes: Counter[str] = Counter()
    releases = {r.node: r for r in results if r.kind == "release"}
    for seed, (hostname, creates) in enumerate(sorted(by_node(results, "create").items())):
        create, release = creates[0], releases[hostname]
        problems += check_failures(creates, causes)
        problems += foreign_touches(lab.sim, hostname, create.tokens)
        posts = applied_posts(lab.sim, lab.sim.system_id(hostname))
        by_releaser = [r for r in posts if sender(r) == release.actor]
        judged = {(r.before or {}).get("owner_data", {}).get("teuthology_maas_token")
                  for r in by_releaser} - {None}  # fmt: skip
        if judged - {create.token}:
            problems.append(f"{hostname}: the release acted on {judged}, not {create.token}")
        if seed % 2:
            causes["unauthorized release refused" if not release.ok else "release: nothing"] += 1
            if by_releaser:
                problems.append(f"{hostname}: a release without authority sent {by_releaser}")
            if not create.ok:
                problems.append(f"{hostname}: create failed: {create.error[:200]}")
            else:
                problems += check_winner(lab, hostname, create, allowed=set())
        elif by_releaser:
            problems += check_free(lab, hostname)
        elif create.ok:
            problems += check_winner(lab, hostname, create, allowed={release.actor})
        else:
            problems += check_free(lab, hostname)
    note(matrix, problems, causes, "creates: ")
    assert not problems, "\n".join(problems)


def test_create_versus_an_operators_abort(race_lab, matrix):
    """`teuthology-maas abort NODE` (another process, an operator's explicit action) while a
    create() runs: an abort that lands stops the create() at once, which says who aborted it
    (from MAAS's events) and releases its own node; one that comes too late does nothing."""
    lab = race_lab
    lab.start(2)
    config = str(lab.config_file())
    plan = []
    for seed, hostname in enumerate(lab.hostnames):
        rng = random.Random(300 + seed)
        plan.append((0, {"kind": "create", "node": hostname, "delay": 0.0}))
        argv = ["--config", config, "abort", hostname]
        plan.append((1, {"kind": "cli", "argv": argv, "target": hostname, "delay": stagger(rng)}))
    results = lab.run(plan)
    lab.settle()

    problems: list[str] = []
    causes: Counter[str] = Counter()
    for hostname, creates in sorted(by_node(results, "create").items()):
        create = creates[0]
        problems += check_failures(creates, causes)
        problems += foreign_touches(lab.sim, hostname, create.tokens)
        aborts = [r for r in applied_posts(lab.sim, lab.sim.system_id(hostname))
                  if r.op == "abort" and sender(r) == "racer1"]  # fmt: skip
        if create.ok:
            problems += check_winner(lab, hostname, create, allowed=set())
            if aborts:
                problems.append(f"{hostname}: aborted, yet create() reported success")
        else:
            problems += check_free(lab, hostname)
            if aborts and "was aborted by MAAS user 'teuthology'" not in create.error:
                problems.append(f"{hostname}: the error does not name the abort: {create.error}")
    note(matrix, problems, causes, "creates: ")
    assert not problems, "\n".join(problems)


def test_create_versus_reconcile_apply(race_lab, matrix):
    """`teuthology-maas reconcile --apply` (another process) runs five times while 20 creates
    start, then once more. Nodes paddles shows locked (even seeds) are never touched by it;
    on the others (a create() whose lock paddles dropped: abandoned) it releases the leak,
    only the deployment it saw, and the create() stops at once without touching it again."""
    lab = race_lab
    for seed, hostname in enumerate(lab.hostnames):
        if seed % 2 == 0:
            lab.paddles.add_node(
                lab.fqdn(hostname),
                "race",
                locked=True,
                locked_by="scheduled@control",
                description=f"/a/run/{seed}",
            )
    lab.start(2)
    argv = ["--config", str(lab.config_file()), "reconcile", "--apply"]
    plan = []
    for seed, hostname in enumerate(lab.hostnames):
        rng = random.Random(400 + seed)
        plan.append((0, {"kind": "create", "node": hostname, "delay": stagger(rng)}))
    for delay in (0.0, 2.5, 5.0, 7.5, 10.0):
        plan.append((1, {"kind": "cli", "argv": argv, "delay": delay}))
    results = lab.run(plan)
    final = lab.run([(1, {"kind": "cli", "argv": argv})])
    lab.settle()

    problems: list[str] = []
    causes: Counter[str] = Counter()
    for run in [r for r in results if r.kind == "cli"] + final:
        if run.raw.get("exit") not in (0, 1, 4):
            problems.append(f"reconcile exit {run.raw.get('exit')}: {run.error[:300]}")
    if final[0].raw.get("exit") != 0:
        problems.append(f"the last reconcile left findings: {final[0].raw.get('stdout')}")
    for seed, (hostname, creates) in enumerate(sorted(by_node(results, "create").items())):
        create = creates[0]
        problems += check_failures(creates, causes)
        problems += foreign_touches(lab.sim, hostname, create.tokens)
        by_reconcile = [r for r in applied_posts(lab.sim, lab.sim.system_id(hostname))
                        if sender(r) == "racer1"]  # fmt: skip
        if seed % 2 == 0:
            if by_reconcile:
                problems.append(f"{hostname}: reconcile touched a node locked in paddles")
            if not create.ok:
                problems.append(f"{hostname}: create failed: {create.error[:200]}")
            else:
                problems += check_winner(lab, hostname, create, allowed=set())
        else:
            causes["released as a leak" if by_reconcile else "not seen leaked"] += 1
            problems += check_free(lab, hostname)
    note(matrix, problems, causes, "")
    assert not problems, "\n".join(problems)
