"""End to end: the real teuthology 1.3.0 commands provision through this library.

Each test runs stock teuthology console scripts (or the supervisor's own reimage function) as
subprocesses with a temporary TEUTHOLOGY_CONFIG and HOME, against the MAAS simulator, the
paddles lock server double and one real sshd per machine (tests/fixtures_e2e.py says what is
real and what stands in for the lab network). Every scenario runs twice: with the .pth
activation hook ("activation"), and with the hook off and teuthology's maas.py replaced by the
in-tree module of docs/in-tree-patch.md ("in-tree").
"""

from __future__ import annotations

import json
import platform
import textwrap
from collections.abc import Callable

import pytest
import yaml

from tests.fixtures_e2e import LAB_DOMAIN, MACHINE_TYPE, MODES, OWNER

pytestmark = [pytest.mark.e2e, pytest.mark.sshd, pytest.mark.slow,
              pytest.mark.parametrize("mode", MODES)]

REASON = "curtin: Installation failed with exception: Unexpected error while running command"
SETTLED = {"Ready", "Releasing", "Disk erasing"}


def host_key_of(lab, hostname: str) -> str:
    """The real public host key of a node's sshd, as ssh-keyscan reports it."""
    path = lab.fleet.servers[hostname].workdir / "ssh_host_ed25519_key.pub"
    return " ".join(path.read_text().split()[:2])


def release_erase_flags(lab) -> Callable[[], list[tuple[str, set[str]]]]:
    """A function giving the erase flags (form fields set true) of every single-machine release
    request the simulator got from now on, read from its request log."""
    hostnames = {lab.sim.system_id(h): h for h in lab.hostnames}
    start = len(lab.sim.request_log)

    def flags() -> list[tuple[str, set[str]]]:
        return [
            (hostnames.get(r.system_id, r.system_id),
             {name for name in ("erase", "quick_erase", "secure_erase")
              if (r.param(name) or "").lower() in ("true", "1", "on", "yes")})
            for r in lab.sim.request_log[start:]
            if r.op == "release" and r.method == "POST" and r.system_id is not None
        ]  # fmt: skip

    return flags


def test_each_mode_wires_teuthology_to_the_library(mode, e2e_lab):
    lab = e2e_lab(mode, machines=1)
    done = lab.lab.python(textwrap.dedent("""
        import json
        import teuthology.provision.maas as maas
        from teuthology_maas.teuthology import adapter
        print(json.dumps({"file": maas.__file__, "hooked": hasattr(maas, "__teuthology_maas__"),
                          "types": maas.get_types(),
                          "class": type(maas.MAAS("smithi001")) is adapter.MAAS}))
    """))
    assert done.returncode == 0, done
    wiring = json.loads(done.stdout.strip().splitlines()[-1])
    assert wiring["types"] == [MACHINE_TYPE] and wiring["class"] is True
    if mode == "in-tree":
        assert wiring["file"].startswith(lab.lab.env["PYTHONPATH"].split(":")[-1])
        assert wiring["hooked"] is False
    else:
        assert "site-packages/teuthology/provision/maas.py" in wiring["file"]
        assert wiring["hooked"] is True


def test_lock_many_reimages_and_returns_targets(mode, e2e_lab):
    lab = e2e_lab(mode, machines=3)
    done = lab.run("teuthology-lock", "--lock-many", "2", "-m", MACHINE_TYPE, "--os-type",
                   "ubuntu", "--os-version", "22.04", "--owner", OWNER)
    assert done.returncode == 0, done
    targets = yaml.safe_load(done.stdout)["targets"]
    assert len(targets) == 2, done
    for fqdn, key in targets.items():
        hostname = fqdn.removesuffix("." + LAB_DOMAIN)
        machine = lab.machine(hostname)
        assert (machine["status_name"], machine["owner"], machine["osystem"],
                machine["distro_series"]) == ("Deployed", "teuthology", "ubuntu", "jammy")
        # teuthology's own ssh-keyscan and SSH inventory reached the node's real sshd
        assert key == host_key_of(lab, hostname)
        node = lab.paddles.node(fqdn)
        assert (node["locked"], node["locked_by"], node["up"]) == (True, OWNER, True)
        assert (node["os_type"], node["os_version"]) == ("ubuntu", "22.04")
        assert node["arch"] == platform.machine() and node["ssh_pub_key"] == key
    assert "teuthology_maas.teuthology" in done.stderr  # our adapter did the reimage
    free = [h for h in lab.hostnames if lab.fqdn(h) not in targets]
    assert [lab.status(h) for h in free] == ["Ready"]


def test_lock_many_with_a_failed_deployment_reports_maas_and_leaks_nothing(mode, e2e_lab):
    lab = e2e_lab(mode, machines=3)
    lab.sim.faults.add("deploy_fail", machine="smithi002", reason=REASON)
    done = lab.run("teuthology-lock", "--lock-many", "3", "-m", MACHINE_TYPE, "--os-type",
                   "ubuntu", "--os-version", "22.04", "--owner", OWNER)
    assert done.returncode == 1, done
    assert REASON in done.stderr, done  # MAAS's own words, in teuthology's log
    assert "Reimaging error. Unlocking machines" in done.stderr
    # teuthology unlocked all three in paddles without release(); the library's at-exit
    # clean-up gave the siblings back to MAAS, and create() cleaned up the failed node.
    assert not any(n["locked"] for n in lab.paddles.nodes())
    statuses = lab.statuses()
    assert not {"Deploying", "Allocated", "Deployed"} & set(statuses.values()), statuses
    lab.wait_for(lambda: set(lab.statuses().values()) == {"Ready"}, "every node Ready")
    assert all(lab.machine(h)["owner"] is None for h in lab.hostnames)


def test_lock_named_node_with_a_chosen_os(mode, e2e_lab):
    lab = e2e_lab(mode, machines=2)
    fqdn = lab.fqdn("smithi002")
    done = lab.run("teuthology-lock", "--lock", fqdn, "--os-type", "centos",
                   "--os-version", "9.stream", "--owner", OWNER)
    assert done.returncode == 0, done
    machine = lab.machine("smithi002")
    assert (machine["status_name"], machine["osystem"], machine["distro_series"]) == (
        "Deployed", "centos", "centos9-stream")
    node = lab.paddles.node(fqdn)
    assert (node["locked"], node["locked_by"], node["os_type"]) == (True, OWNER, "centos")
    assert node["os_version"].startswith("9")  # read over SSH from the node's os-release
    assert lab.status("smithi001") == "Ready"


def test_lock_of_a_node_one_already_holds_is_refused_and_maas_is_left_alone(mode, e2e_lab):
    """paddles lets the holder re-lock a node only with the same, non-null description: a
    `teuthology-lock --lock` of one's own node (no --desc) is refused, so nothing redeploys it."""
    lab = e2e_lab(mode, machines=1, machine_fields={"smithi001": {
        "status": "deployed", "owner": "teuthology", "osystem": "ubuntu",
        "distro_series": "jammy"}})
    lab.lock_in_paddles("smithi001")
    done = lab.run("teuthology-lock", "--lock", lab.fqdn("smithi001"), "--os-type", "ubuntu",
                   "--os-version", "24.04", "--owner", OWNER)
    assert done.returncode == 1, done
    assert "Cannot lock an already-locked node" in done.stderr, done
    assert lab.sim.requests(op="deploy", method="POST") == []
    machine = lab.machine("smithi001")
    assert (machine["status_name"], machine["distro_series"]) == ("Deployed", "jammy")
    assert lab.paddles.node(lab.fqdn("smithi001"))["locked_by"] == OWNER


def test_unlock_releases_ours_with_configured_erase_and_refuses_someone_elses(mode, e2e_lab):
    # A superuser key sees every machine, so MAAS can tell us smithi002 is alice's (a
    # non-admin key would not see it at all and the release would fail with "not found").
    deployed = {"status": "deployed", "osystem": "ubuntu", "distro_series": "jammy"}
    lab = e2e_lab(mode, machines=2, erase="secure", maas_user="admin", machine_fields={
        "smithi001": {**deployed, "owner": "admin"},
        "smithi002": {**deployed, "owner": "alice"},
    })
    for hostname in lab.hostnames:
        lab.lock_in_paddles(hostname)
    erase_flags = release_erase_flags(lab)
    done = lab.run("teuthology-lock", "--unlock", "--owner", OWNER,
                   lab.fqdn("smithi001"), lab.fqdn("smithi002"))
    assert done.returncode == 0, done
    assert lab.status("smithi001") == "Ready"
    assert erase_flags() == [("smithi001", {"erase", "secure_erase"})]
    # MAAS says smithi002 is alice's: untouched, and the log says so plainly
    alice = lab.machine("smithi002")
    assert (alice["status_name"], alice["owner"]) == ("Deployed", "alice")
    assert f"NOT releasing {lab.fqdn('smithi002')} in MAAS" in done.stderr, done
    # teuthology unlocks in paddles whatever release() did (documented hazard)
    assert not any(n["locked"] for n in lab.paddles.nodes())


def test_unlock_by_someone_who_does_not_hold_the_lock_leaves_maas_alone(mode, e2e_lab):
    lab = e2e_lab(mode, machines=1, machine_fields={"smithi001": {
        "status": "deployed", "owner": "teuthology", "osystem": "ubuntu",
        "distro_series": "jammy"}})
    lab.lock_in_paddles("smithi001", description="/archive/someone-run/1")
    erase_flags = release_erase_flags(lab)
    done = lab.run("teuthology-lock", "--unlock", "--owner", "eve@elsewhere",
                   lab.fqdn("smithi001"))
    assert done.returncode == 1, done  # paddles refuses eve's unlock...
    # ...and teuthology's release-before-owner-check no longer wipes OWNER's node
    assert erase_flags() == []
    assert (lab.status("smithi001"), lab.machine("smithi001")["owner"]) == (
        "Deployed", "teuthology")
    assert lab.paddles.node(lab.fqdn("smithi001"))["locked_by"] == OWNER
    assert f"NOT releasing {lab.fqdn('smithi001')} in MAAS: paddles will refuse this unlock" in (
        done.stderr
    ), done
    assert "locked_by values must match" in done.stderr, done


def test_reimage_of_a_held_deployed_node_with_another_os(mode, e2e_lab):
    lab = e2e_lab(mode, machines=1, machine_fields={"smithi001": {
        "status": "deployed", "owner": "teuthology", "osystem": "ubuntu",
        "distro_series": "jammy"}})
    lab.lock_in_paddles("smithi001")
    erase_flags = release_erase_flags(lab)
    done = lab.run("teuthology-reimage", "--os-type", "rocky", "--os-version", "9",
                   "--owner", OWNER, "smithi001")
    assert done.returncode == 0, done
    machine = lab.machine("smithi001")
    assert (machine["status_name"], machine["osystem"], machine["distro_series"]) == (
        "Deployed", "rocky", "9")
    # the old deployment was released first, erased as configured (quick)
    assert erase_flags() == [("smithi001", {"erase", "quick_erase"})]
    node = lab.paddles.node(lab.fqdn("smithi001"))
    assert (node["locked_by"], node["os_type"]) == (OWNER, "rocky")
    assert node["os_version"].startswith("9.")  # from the node's /etc/os-release, over SSH


UNLOCK_ONE = """
import json, sys
from teuthology.lock import ops
print(json.dumps({"unlocked": ops.unlock_one(sys.argv[1], sys.argv[2], sys.argv[3])}))
"""


def test_unlock_with_another_jobs_description_leaves_maas_alone(mode, e2e_lab):
    """Scheduled jobs share one locked_by; only the description (the job's archive path) tells
    them apart. A finished job's teardown unlocking a node that another job of the same owner
    holds now (`unlock_one(name, owner, its own archive)`): paddles refuses ("description
    values must match"), so MAAS must not have released the node first."""
    lab = e2e_lab(mode, machines=1, machine_fields={"smithi001": {
        "status": "deployed", "owner": "teuthology", "osystem": "ubuntu",
        "distro_series": "jammy"}})
    lab.lock_in_paddles("smithi001", description=f"/archive/{OWNER}-run/2")
    erase_flags = release_erase_flags(lab)
    done = lab.lab.run("python", "-c", UNLOCK_ONE, lab.fqdn("smithi001"), OWNER,
                       f"/archive/{OWNER}-run/1")
    assert done.returncode == 0, done
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"unlocked": False}
    assert erase_flags() == []
    assert [r.op for r in lab.sim.requests(method="POST")] == []
    assert lab.status("smithi001") == "Deployed"
    node = lab.paddles.node(lab.fqdn("smithi001"))
    assert (node["locked"], node["description"]) == (True, f"/archive/{OWNER}-run/2")
    assert "description values must match" in done.stderr, done
    assert f"NOT releasing {lab.fqdn('smithi001')} in MAAS" in done.stderr, done


SUPERVISOR_REIMAGE = """
import json, sys
from teuthology.dispatcher import supervisor
job_config = json.loads(sys.argv[1])
try:
    supervisor.reimage(job_config)
    print(json.dumps({"ok": True, "targets": job_config["targets"]}))
except Exception as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
"""


def supervisor_job(lab, hostnames, job_id: str, os_version: str) -> dict:
    archive = f"/archive/{OWNER}-run/{job_id}"
    for hostname in hostnames:
        lab.lock_in_paddles(hostname, description=archive)
    return {
        "name": f"{OWNER}-run", "job_id": job_id, "owner": OWNER, "archive_path": archive,
        "machine_type": MACHINE_TYPE, "os_type": "ubuntu", "os_version": os_version,
        "targets": {lab.fqdn(h): None for h in hostnames},
    }


def run_supervisor_reimage(lab, job: dict) -> dict:
    done = lab.lab.run("python", "-c", SUPERVISOR_REIMAGE, json.dumps(job))
    assert done.returncode == 0, done
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "log": done.stderr}


def test_supervisor_reimage_machines(mode, e2e_lab):
    lab = e2e_lab(mode, machines=2)
    job = supervisor_job(lab, lab.hostnames, "1", "24.04")
    result = run_supervisor_reimage(lab, job)
    assert result["ok"] is True, result["log"]
    assert set(result["targets"]) == {lab.fqdn(h) for h in lab.hostnames}
    for hostname in lab.hostnames:
        assert result["targets"][lab.fqdn(hostname)] == host_key_of(lab, hostname)
        assert (lab.status(hostname), lab.machine(hostname)["distro_series"]) == (
            "Deployed", "noble")
    assert lab.paddles.job(job["name"], "1")["status"] == "running"


def test_supervisor_reimage_failure_unlocks_releases_and_marks_the_job_dead(mode, e2e_lab):
    lab = e2e_lab(mode, machines=3)
    lab.sim.faults.add("deploy_fail", machine="smithi003", reason=REASON)
    job = supervisor_job(lab, lab.hostnames, "2", "22.04")
    result = run_supervisor_reimage(lab, job)
    assert result["ok"] is False and REASON in result["error"], result["log"]
    reported = lab.paddles.job(job["name"], "2")
    assert reported["status"] == "dead"
    assert reported["failure_reason"].startswith("Error reimaging machines: ")
    assert REASON in reported["failure_reason"]
    # the supervisor unlocked every target through release(): nothing left to us in MAAS
    assert not any(n["locked"] for n in lab.paddles.nodes())
    lab.wait_for(lambda: set(lab.statuses().values()) <= SETTLED, "every node released")
    assert not any(lab.machine(h)["owner"] for h in lab.hostnames
                   if lab.status(h) == "Ready")


def test_node_cleanup_releases_a_stale_lock_and_keeps_an_active_one(mode, e2e_lab):
    deployed = {"status": "deployed", "owner": "teuthology", "osystem": "ubuntu",
                "distro_series": "jammy"}
    lab = e2e_lab(mode, machines=2, machine_fields={h: deployed for h in
                                                    ("smithi001", "smithi002")})
    scheduler = "scheduled_e2e@control"
    lab.lock_in_paddles("smithi001", owner=scheduler, description="/archive/run2/3")
    lab.lock_in_paddles("smithi002", owner=scheduler, description="/archive/run2/4")
    lab.paddles.add_job("run2", "3", status="dead", updated="2026-01-01 00:00:00")
    lab.paddles.add_job("run2", "4", status="running")
    done = lab.run("teuthology-node-cleanup", "-v")
    assert done.returncode == 0, done
    assert lab.status("smithi001") == "Ready"
    assert lab.paddles.node(lab.fqdn("smithi001"))["locked"] is False
    assert lab.status("smithi002") == "Deployed"
    assert lab.paddles.node(lab.fqdn("smithi002"))["locked_by"] == scheduler


STOP_NODE_DURING_REIMAGE = """
import argparse, json, sys
import gevent
import teuthology.provision as provision
from teuthology.lock import ops
fqdn = sys.argv[1]
ctx = argparse.Namespace(os_type="ubuntu", os_version="22.04", config={})
reimage = gevent.spawn(provision.reimage, ctx, fqdn, "smithi")
from teuthology_maas.endpoint import endpoint_for
from teuthology_maas.teuthology import adapter
client = endpoint_for(adapter.load_config()).client
for _ in range(600):  # the deployment is stuck in Deploying by an injected fault
    gevent.sleep(0.05)
    if [m for m in client.list_machines(hostname=fqdn.split(".")[0]) if m.status == 9]:
        break
ops.stop_node(fqdn, {"machine_type": "smithi"})
reimage.join(timeout=60)
print(json.dumps({"reimage_finished": reimage.dead}))
"""


def test_stop_node_during_a_reimage_in_the_same_process_stops_it_first(mode, e2e_lab):
    """teuthology's own provision.reimage() and lock.ops.stop_node(), called the way the
    supervisor does when a sibling failed: release() must not race the running create()."""
    # stuck for longer than the run: MAAS's own 30-minute timeout is 0.6 s at this clock
    lab = e2e_lab(mode, machines=1,
                  machine_fields={"smithi001": {"timings": {"node_timeout": 10**6}}})
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    done = lab.lab.run("python", "-c", STOP_NODE_DURING_REIMAGE, lab.fqdn("smithi001"))
    assert done.returncode == 0, done
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"reimage_finished": True}
    assert "stopping its reimage still running in this process" in done.stderr, done
    ops = [r.op for r in lab.sim.requests(method="POST")]
    # one actor at a time: the stopped create() aborted and released once; release() waited
    assert (ops.count("abort"), ops.count("release")) == (1, 1), ops
    lab.wait_for(lambda: lab.status("smithi001") == "Ready", "smithi001 Ready")
    assert lab.machine("smithi001")["owner"] is None


def test_a_quarantined_node_is_marked_broken_in_maas_and_down_in_paddles(mode, e2e_lab):
    lab = e2e_lab(mode, machines=1, quarantine_after=1)
    lab.sim.faults.add("deploy_fail", machine="smithi001", reason=REASON)
    done = lab.run("teuthology-lock", "--lock-many", "1", "-m", MACHINE_TYPE, "--os-type",
                   "ubuntu", "--os-version", "22.04", "--owner", OWNER)
    assert done.returncode == 1, done
    assert "quarantined" in done.stderr, done
    machine = lab.machine("smithi001")
    assert machine["status_name"] == "Broken"
    assert "1 failed deployments in a row (quarantine_after 1)" in machine["error_description"]
    node = lab.paddles.node(lab.fqdn("smithi001"))
    # locked by the job when the create() failed: only `up` changed; teuthology then
    # unlocked it (its lock calls are its own), and lock_many no longer hands it out
    assert node["up"] is False and node["locked"] is False
    again = lab.run("teuthology-lock", "--lock-many", "1", "-m", MACHINE_TYPE, "--os-type",
                    "ubuntu", "--os-version", "22.04", "--owner", OWNER)
    assert again.returncode != 0
    assert lab.machine("smithi001")["status_name"] == "Broken"
