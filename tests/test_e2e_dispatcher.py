"""End to end on teuthology's production path: teuthology-schedule / teuthology-suite ->
beanstalkd -> teuthology-dispatcher -> one teuthology-supervisor per job, which reimages the
job's nodes through this project, runs the job over SSH and unlocks (releasing in MAAS).

All of it is stock teuthology 1.3.0 in subprocesses (tests/fixtures_dispatcher.py and
teuthology_maas/testing/dispatcher_lab.py say what stands in for the lab). The happy paths run
in both integration modes: the activation hook and the in-tree patch.
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.fixtures_dispatcher import OWNER, GatedClock
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.testing.dispatcher_lab import job_config
from teuthology_maas.testing.fast_timings import FAST_SCALE
from teuthology_maas.testing.processes import alive
from teuthology_maas.testing.teuthology_lab import MODES

pytestmark = [pytest.mark.e2e, pytest.mark.sshd, pytest.mark.slow]

REASON = "curtin: Installation failed with exception: Unexpected error while running command"
SUITE = "maas-smoke"
SUITE_FRAGMENTS = {"jammy.yaml": job_config("ubuntu", "22.04", nodes=2),
                   "noble.yaml": job_config("ubuntu", "24.04", nodes=1)}
DISTRO_SERIES = {"22.04": "ubuntu/jammy", "24.04": "ubuntu/noble"}
EXEC_LINE = re.compile(r"teuthology\.orchestra\.run\.(\w+):> sudo TESTDIR=\S+ bash -c "
                       r"'cat /etc/os-release'")
STDOUT_VERSION = re.compile(r"teuthology\.orchestra\.run\.(\w+)\.stdout:VERSION_ID=\"?([\d.]+)")


def exec_os_versions(job_log: str) -> dict[str, str]:
    """Per node, the VERSION_ID the job's exec task printed (not the earlier inventory reads)."""
    asked: set[str] = set()
    seen: dict[str, str] = {}
    for line in job_log.splitlines():
        if found := EXEC_LINE.search(line):
            asked.add(found[1])
        elif (found := STDOUT_VERSION.search(line)) and found[1] in asked:
            seen.setdefault(found[1], found[2])
    return seen


def job_nodes(job: dict) -> list[str]:
    return sorted(target.split("@")[-1].split(".")[0] for target in job["targets"] or {})


def assert_passed_and_released(lab, run: str, jobs: list[dict]) -> None:
    """Each job passed on nodes reimaged with its OS (its own exec task read it over SSH),
    and every node ended Ready, ours no more, erased as configured, unlocked in paddles."""
    deployed = {(r.system_id, r.param("distro_series"))
                for r in lab.sim.requests(op="deploy", method="POST")}
    used = []
    for job in jobs:
        assert job["status"] == "pass", job
        nodes = job_nodes(job)
        used += nodes
        job_log = lab.lab.job_log(run, job["job_id"])
        assert exec_os_versions(job_log) == dict.fromkeys(nodes, job["os_version"]), job_log
        supervisor_log = lab.lab.supervisor_log(run, job["job_id"])
        for node in nodes:
            assert (lab.sim.system_id(node), DISTRO_SERIES[job["os_version"]]) in deployed
            assert (f"Reimaged {lab.fqdn(node)} with ubuntu {job['os_version']}"
                    in supervisor_log), supervisor_log
    assert sorted(used) == lab.hostnames  # no node served two jobs at once
    lab.wait_for(lambda: set(lab.statuses().values()) == {"Ready"}, "every node Ready")
    assert not any(lab.sim.machine(h)["owner"] for h in lab.hostnames)
    assert lab.release_erase_flags() == {h: {"erase", "quick_erase"} for h in lab.hostnames}
    assert not any(node["locked"] for node in lab.paddles.nodes())


@pytest.mark.parametrize("mode", MODES)
def test_two_scheduled_jobs_reimage_at_once_run_and_release(mode, dispatch_lab):
    clock = GatedClock(FAST_SCALE)  # no deployment moves until both jobs are deploying
    lab = dispatch_lab(mode, machines=3, clock=clock)
    run = f"e2e-{mode}-{lab.lab.machine_type}"
    ids = lab.lab.schedule([job_config("ubuntu", "22.04", nodes=2),
                            job_config("ubuntu", "24.04", nodes=1)], name=run, owner=OWNER)
    lab.lab.start_dispatcher()
    # two supervisors, two jobs, three deployments in flight together
    lab.wait_for(lambda: set(lab.statuses().values()) == {"Deploying"},
                 "both supervisors deploying", timeout=120)
    assert len(lab.lab.supervisor_pids()) == 2
    clock.open()
    statuses = lab.lab.wait_for_run(run, ids, timeout=240)
    assert statuses == dict.fromkeys(ids, "pass"), lab.lab.explain(run)
    assert_passed_and_released(lab, run, lab.paddles.jobs(run))


@pytest.mark.parametrize("mode", MODES)
def test_a_suite_is_scheduled_dispatched_run_and_reported(mode, dispatch_lab):
    lab = dispatch_lab(mode, machines=3, suites={SUITE: SUITE_FRAGMENTS})
    # --timeout 0: the last-in-suite job's teuthology-results reports at once, not in 60 s
    suite = lab.lab.suite(SUITE, owner=OWNER, args=["--timeout", "0"])
    assert len(suite.job_ids) == 4  # first-in-suite, the two jobs, last-in-suite
    lab.lab.start_dispatcher()
    statuses = lab.lab.wait_for_run(suite.name, suite.job_ids, timeout=300)
    jobs = lab.paddles.jobs(suite.name)
    assert sorted(statuses.values()) == ["pass", "pass"], lab.lab.explain(suite.name)
    assert sorted((j["description"], j["os_version"]) for j in jobs) == [
        (f"{SUITE}/jammy", "22.04"), (f"{SUITE}/noble", "24.04")]
    assert_passed_and_released(lab, suite.name, jobs)
    # the detached teuthology-results of the last job read the run from paddles and exited
    results = lab.lab.archive / suite.name / "results.log"
    lab.wait_for(lambda: "Found 2 jobs" in results.read_text(), "teuthology-results")
    assert "Traceback" not in results.read_text()


def test_a_failed_reimage_ends_the_job_dead_with_maas_reason_and_releases(dispatch_lab):
    lab = dispatch_lab("activation", machines=2)
    lab.sim.faults.add("deploy_fail", machine="smithi002", reason=REASON)
    run = f"e2e-fail-{lab.lab.machine_type}"
    ids = lab.lab.schedule([job_config("ubuntu", "22.04", nodes=2)], name=run, owner=OWNER)
    lab.lab.start_dispatcher()
    assert lab.lab.wait_for_run(run, ids, timeout=180) == {ids[0]: "dead"}
    job = lab.paddles.job(run, ids[0])
    assert job["failure_reason"].startswith("Error reimaging machines: ")
    assert REASON in job["failure_reason"]
    assert REASON in lab.lab.supervisor_log(run, ids[0])  # MAAS's own words in the job's log
    assert lab.lab.job_log(run, ids[0]) == ""  # the job never ran
    assert f"job {ids[0]}: dead: Error reimaging machines: " in lab.lab.explain(run)
    assert not any(node["locked"] for node in lab.paddles.nodes())
    lab.wait_for(lambda: set(lab.statuses().values()) == {"Ready"}, "both nodes released")
    assert not any(lab.sim.machine(h)["owner"] for h in lab.hostnames)
    # what the run's results mail says: the dead job, MAAS's reason, its log link
    mail = lab.lab.lab.run("teuthology-results", "--archive-dir", str(lab.lab.archive / run),
                           "--name", run, "--email", "lab@example.com", "--dry-run")
    assert mail.returncode == 0, mail
    assert f"Subject: 1 dead in {run}" in mail.stdout
    text = " ".join(mail.stdout.split())  # the mail wraps long lines
    assert REASON in text and f"teuthology/{run}/{ids[0]}/" in text, mail.stdout


def test_teuthology_kill_mid_reimage_leaks_nothing(dispatch_lab):
    # every deployment hangs: the reimage is mid-way until teuthology-kill (MAAS's own
    # node_timeout, 9 s of real time at FAST_SCALE, would fail it first under load)
    lab = dispatch_lab("in-tree", machines=2, timings={"node_timeout": 10**7})
    lab.sim.faults.add("deploy_stuck")
    run = f"e2e-kill-{lab.lab.machine_type}"
    ids = lab.lab.schedule([job_config("ubuntu", "22.04", nodes=2)], name=run, owner=OWNER)
    lab.lab.start_dispatcher()
    lab.wait_for(lambda: set(lab.statuses().values()) == {"Deploying"}, "the reimage",
                 timeout=120)
    [supervisor] = lab.lab.supervisor_pids()
    # teuthology-kill finds the supervisor by the pid it reported to paddles
    lab.wait_for(lambda: lab.paddles.job(run, ids[0])["pid"] == str(supervisor),
                 "the supervisor's pid in paddles")
    killed = lab.lab.lab.run("teuthology-kill", "--run", run, "--job", ids[0],
                             "--owner", OWNER, timeout=180)
    assert killed.returncode == 0, killed
    assert f"Killing Pids: {{{supervisor}}}" in killed.output  # `kill PID`: SIGTERM
    lab.wait_for(lambda: not alive(supervisor), "the supervisor to exit")
    assert lab.lab.wait_for_run(run, ids, timeout=60) == {ids[0]: "dead"}
    assert lab.paddles.job(run, ids[0])["failure_reason"] == "killed"
    # the stuck deployments were stopped, and nothing is left to us in MAAS or paddles
    assert len(lab.sim.requests(op="abort", method="POST")) >= 2
    lab.wait_for(lambda: set(lab.statuses().values()) == {"Ready"}, "both nodes released")
    assert not any(lab.sim.machine(h)["owner"] for h in lab.hostnames)
    assert not any(node["locked"] for node in lab.paddles.nodes())


def test_a_sigterm_to_a_supervisor_mid_reimage_stops_only_its_own_deployments(dispatch_lab):
    """A bare SIGTERM (no teuthology-kill to unlock and release): teuthology's Exiter owns
    SIGTERM in the supervisor (its reimage runs inside the console_log task); the supervisor
    still aborts and releases the deployments it made, runs the Exiter's handlers, and leaves
    the deployment another worker made on a third machine alone."""
    # every deployment hangs (MAAS's node_timeout out of reach): the reimage is mid-way
    lab = dispatch_lab("activation", machines=3, timings={"node_timeout": 10**7})
    lab.sim.faults.add("deploy_stuck")
    other = "someone-else@control"
    lab.paddles.add_node(lab.fqdn("smithi003"), lab.lab.machine_type, locked=True,
                         locked_by=other, description="another job")
    client = MaasClient(lab.maas.api_url, lab.maas.key_for("teuthology"))  # the same MAAS user
    theirs = lab.sim.system_id("smithi003")
    client.allocate(system_id=theirs, comment="another worker")
    client.deploy(theirs, distro_series="ubuntu/jammy", comment="another worker")
    run = f"e2e-sigterm-{lab.lab.machine_type}"
    ids = lab.lab.schedule([job_config("ubuntu", "22.04", nodes=2)], name=run, owner=OWNER)
    lab.lab.start_dispatcher()
    lab.wait_for(lambda: set(lab.statuses().values()) == {"Deploying"}, "the reimage",
                 timeout=120)
    [supervisor] = lab.lab.supervisor_pids()
    ours = [n for n in lab.hostnames if n != "smithi003"]
    os.kill(supervisor, signal.SIGTERM)
    lab.wait_for(lambda: not alive(supervisor), "the supervisor to exit", timeout=120)
    log = lab.lab.supervisor_log(run, ids[0])
    assert "SIGTERM: cleaning up 2 deployment(s) in flight" in log, log
    # teuthology's own exit handling still ran: its Exiter's handler (console_log's), then
    # the end by the signal, after the clean-up
    assert "SIGTERM: running teuthology's 1 signal handler(s)" in log, log
    assert all(f"Killing console logger for {n}" in log for n in ours), log
    assert log.rindex("ending the process by the signal") > max(
        log.rindex(f"{n} ") for n in ours), log
    aborted = {r.system_id for r in lab.sim.requests(op="abort", method="POST")}
    assert aborted == {lab.sim.system_id(n) for n in ours}
    lab.wait_for(lambda: all(lab.status(n) == "Ready" for n in ours), "our nodes released")
    assert not any(lab.sim.machine(n)["owner"] for n in ours)
    assert lab.status("smithi003") == "Deploying"  # the other worker's, untouched
    assert lab.sim.machine("smithi003")["owner"] == "teuthology"
