"""teuthology's production path on one machine, a TEST/DEMO harness: `teuthology-schedule` or
`teuthology-suite` put jobs into beanstalkd; `teuthology-dispatcher` reserves each, locks its
nodes in paddles and starts one `teuthology-supervisor`, which reimages the job's nodes through
this project, runs the job (`teuthology`) over SSH and unlocks the nodes (releasing them in
MAAS). All of it is stock teuthology 1.3.0; what it needs here, beyond a TeuthologyLab
(teuthology_maas.testing.teuthology_lab), is:

- a beanstalkd on a loopback port (`Beanstalkd`; `queue_host`/`queue_port`);
- local git repositories instead of GitHub: teuthology runs `git ls-remote` for a job without
  `teuthology_sha1` and always fetches the suite repository, so jobs carry `teuthology_sha1`,
  `suite_sha1` and `suite_branch`; `teuthology_path` is a git checkout whose `.venv` is this
  virtualenv (the supervisor and the job run `<teuthology_path>/.venv/bin/...`), and
  `ceph_qa_suite_git_url`/`ceph_git_url`/`teuthology_git_url` are file:// URLs; the suite
  repository holds `tasks/__init__.py` and `qa/suites/<suite>/*.yaml`;
- no package or ceph-cm-ansible steps: `verify_ceph_hash: false`, `ceph_cm_ansible: false`
  (job keys), `suite_verify_ceph_hash: false`, `-k none`;
- a short `watchdog_interval` (the supervisor sleeps that long before it first checks its job);
- sandboxed nodes (SSHDFleet(sandbox=True), see teuthology_maas.testing.node_command): a
  job's commands must not change the host;
- the dispatcher's quirks: it refuses to start beside another one on the same tube (the tube is
  the machine type, so each lab uses its own), it watches fixed sentinel files under /tmp
  (never created here), it reserves with a 60 s timeout (so it is stopped, not waited for, once
  the supervisors are done) and its supervisors, jobs and `teuthology-results` detach: `stop()`
  ends every process of the lab by PID (TeuthologyLab.end_processes).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from teuthology_maas.testing.ports import LOOPBACK, free_port
from teuthology_maas.testing.processes import die_with_parent
from teuthology_maas.testing.teuthology_lab import Finished, Support, TeuthologyLab

__all__ = ["BEANSTALKD_PATH", "Beanstalkd", "DispatcherLab", "Reimage", "SuiteRun", "job_config",
           "reimages"]

BEANSTALKD_PATH = "/usr/bin/beanstalkd"
FINAL = ("pass", "fail", "dead")
# Job keys that keep teuthology off the network and away from package builds.
OFFLINE_JOB = {"verify_ceph_hash": False, "ceph_cm_ansible": False}
_GIT_IDENTITY = ["-c", "user.name=teuthology-maas lab", "-c", "user.email=lab@localhost"]


class Beanstalkd:
    """One beanstalkd on 127.0.0.1:`port`, its own process group, ended by PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.host = LOOPBACK
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, *, timeout: float = 10.0) -> Beanstalkd:
        if not os.access(BEANSTALKD_PATH, os.X_OK):
            raise RuntimeError(f"{BEANSTALKD_PATH} not found: install Debian's beanstalkd "
                               "(run scripts/ensure-system-packages)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "beanstalkd.log"
        for _attempt in range(5):
            self.port = free_port()
            with log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    [BEANSTALKD_PATH, "-l", self.host, "-p", str(self.port)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True, preexec_fn=die_with_parent(),
                )
            if self._wait_listening(timeout):
                return self
            self.stop()  # most likely lost the port to someone else: take another
        raise RuntimeError(f"beanstalkd did not listen on a loopback port; see {log_path}")

    def _wait_listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(
                (self.host, self.port), timeout=1.0
            ):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def git_repository(path: Path, files: Mapping[str, str]) -> str:
    """A git repository at `path` (branch main) holding `files`; returns its HEAD sha1."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text, encoding="utf-8")

    def git(*args: str) -> str:
        return subprocess.run(["git", *_GIT_IDENTITY, "-C", str(path), *args], check=True,
                              capture_output=True, text=True, timeout=60).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "teuthology-maas lab")
    return git("rev-parse", "HEAD")


def job_config(os_type: str, os_version: str, nodes: int = 1,
               command: str = "cat /etc/os-release", **extra: Any) -> dict[str, Any]:
    """A job needing `nodes` nodes with that OS, which runs `command` on each (exec task)."""
    return {
        "os_type": os_type, "os_version": str(os_version),
        "roles": [[f"client.{i}"] for i in range(nodes)],
        "tasks": [{"exec": {"all-hosts": [command]}}],
        **OFFLINE_JOB, **extra,
    }


# The adapter's own log lines around create() (teuthology_maas.teuthology.adapter), as a
# supervisor's log has them, behind teuthology's timestamp.
_STAMP = r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) \w+:teuthology_maas\.teuthology\.\S+:"
_REIMAGING = re.compile(_STAMP + r"Reimaging (\S+) with (\S+) (\S+) through MAAS$", re.M)
_REIMAGE_END = re.compile(
    _STAMP + r"(?:Reimaged (\S+) with \S+ \S+ in|Reimaging (\S+) through MAAS failed after "
    r"\S+ s: (.*))", re.M)


@dataclass(frozen=True)
class Reimage:
    """One node's reimage as its supervisor logged it."""

    node: str  # the FQDN
    os: str  # "ubuntu 22.04"
    seconds: float | None  # None: not finished in this log
    error: str | None = None


def reimages(supervisor_log: str) -> list[Reimage]:
    """Every reimage a supervisor's log records, with its duration from the log's timestamps."""

    def stamp(text: str) -> float:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").timestamp()

    started = {m[2]: (stamp(m[1]), f"{m[3]} {m[4]}") for m in _REIMAGING.finditer(supervisor_log)}
    ended = {(m[2] or m[3]): (stamp(m[1]), m[4]) for m in _REIMAGE_END.finditer(supervisor_log)}
    found = []
    for node, (began, os_name) in started.items():
        end = ended.get(node)
        found.append(Reimage(node, os_name, None if end is None else round(end[0] - began, 1),
                             None if end is None else end[1]))
    return found


@dataclass(frozen=True)
class SuiteRun:
    """What teuthology-suite scheduled: the run's name and its jobs' beanstalk ids."""

    name: str
    job_ids: list[str]
    finished: Finished


class DispatcherLab:
    """A TeuthologyLab wired to beanstalkd, local repositories and a dispatcher of its own."""

    def __init__(self, lab: TeuthologyLab, machine_type: str, sha1s: Mapping[str, str]) -> None:
        self.lab = lab
        self.machine_type = machine_type
        self.sha1s = dict(sha1s)
        self.archive = lab.root / "archive"
        self.log_dir = lab.root / "dispatcher-logs"
        self.dispatcher: subprocess.Popen[str] | None = None

    @classmethod
    def create(
        cls,
        root: Path,
        support: Support,
        *,
        queue: Beanstalkd,
        machine_type: str,
        suites: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
        **lab_options: Any,
    ) -> DispatcherLab:
        """`suites`: {suite name: {fragment file name: job YAML}} for teuthology-suite."""
        teuthology = root / "teuthology"
        teuthology_sha1 = git_repository(teuthology, {"README": "teuthology_path of a lab\n",
                                                      ".gitignore": ".venv\n"})
        (teuthology / ".venv").symlink_to(Path(sys.prefix))
        files = {"tasks/__init__.py": "", "qa/tasks/__init__.py": ""}
        for suite, fragments in (suites or {}).items():
            for fragment, document in fragments.items():
                files[f"qa/suites/{suite}/{fragment}"] = yaml.safe_dump(dict(document))
        suite_repo = root / "ceph-qa-suite"
        suite_sha1 = git_repository(suite_repo, files)
        extra = {
            "queue_host": queue.host, "queue_port": queue.port,
            "teuthology_path": str(teuthology),
            "teuthology_git_url": f"file://{teuthology}",
            "ceph_qa_suite_git_url": f"file://{suite_repo}",
            "ceph_git_url": f"file://{suite_repo}",
            "src_base_path": str(root / "src"),
            "suite_verify_ceph_hash": False,
            "watchdog_interval": 1,
            **dict(lab_options.pop("extra", None) or {}),
        }
        lab = TeuthologyLab.create(root, support, extra=extra, **lab_options)
        (root / "archive").mkdir(exist_ok=True)
        (root / "dispatcher-logs").mkdir(exist_ok=True)
        return cls(lab, machine_type, {"teuthology": teuthology_sha1, "suite": suite_sha1})

    # ---- scheduling ----------------------------------------------------------------------
    def job_defaults(self) -> dict[str, Any]:
        """What every scheduled job carries so that nothing asks GitHub."""
        return {"teuthology_branch": "main", "teuthology_sha1": self.sha1s["teuthology"],
                "suite_branch": "main", "suite_sha1": self.sha1s["suite"]}

    def schedule(self, jobs: Sequence[Mapping[str, Any]], *, name: str, owner: str) -> list[str]:
        """teuthology-schedule each job onto this lab's tube; returns the job ids."""
        ids = []
        for index, job in enumerate(jobs):
            path = self.lab.root / f"job-{name}-{index}.yaml"
            path.write_text(yaml.safe_dump({**self.job_defaults(), **job}), encoding="utf-8")
            done = self.lab.run("teuthology-schedule", "--name", name, "--owner", owner,
                                "--worker", self.machine_type, "--description",
                                f"{name} job {index}", str(path), timeout=120)
            found = re.findall(r"and ID (\d+)", done.output)
            if done.returncode != 0 or len(found) != 1:
                raise RuntimeError(f"teuthology-schedule failed:\n{done}")
            ids += found
        return ids

    def suite(self, suite: str, *, owner: str, args: Sequence[str] = ()) -> SuiteRun:
        """teuthology-suite `suite` from the lab's suite repository onto this lab's tube."""
        done = self.lab.run(
            "teuthology-suite", "-v", "--suite", suite, "--machine-type", self.machine_type,
            "--owner", owner, "--suite-repo", self.lab.config()["ceph_qa_suite_git_url"],
            "--suite-branch", "main", "--suite-sha1", self.sha1s["suite"],
            "--ceph", "main", "--sha1", self.sha1s["suite"], "--validate-sha1", "false",
            "--kernel", "none", "--non-interactive", *args, timeout=180)
        scheduled = re.findall(r"Job scheduled with name (\S+) and ID (\d+)", done.output)
        if done.returncode != 0 or not scheduled:
            raise RuntimeError(f"teuthology-suite failed:\n{done}")
        return SuiteRun(scheduled[0][0], [job_id for _, job_id in scheduled], done)

    # ---- the dispatcher ----------------------------------------------------------------------
    def start_dispatcher(self) -> subprocess.Popen[str]:
        log = (self.log_dir / "dispatcher.out").open("a", encoding="utf-8")
        with log:
            self.dispatcher = self.lab.popen(self.lab.argv(
                "teuthology-dispatcher", "-v", "--tube", self.machine_type,
                "--log-dir", str(self.log_dir), "--archive-dir", str(self.archive)), stdout=log)
        return self.dispatcher

    def dispatcher_log(self) -> str:
        return "".join(path.read_text(errors="replace")
                       for path in sorted(self.log_dir.glob(f"dispatcher.{self.machine_type}.*")))

    def reserved(self) -> list[str]:
        """The beanstalk ids of the jobs the dispatcher has taken so far."""
        return re.findall(r"Reserved job (\d+)", self.dispatcher_log())

    def supervisor_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"Job supervisor PID: (\d+)",
                                               self.dispatcher_log())]

    def job_dir(self, run: str, job_id: str) -> Path:
        return self.archive / run / str(job_id)

    def supervisor_log(self, run: str, job_id: str) -> str:
        path = self.job_dir(run, job_id) / f"supervisor.{job_id}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def job_log(self, run: str, job_id: str) -> str:
        path = self.job_dir(run, job_id) / "teuthology.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def paddles_jobs(self, run: str) -> list[dict[str, Any]]:
        """The run's jobs as the results server shows them (none yet: [])."""
        url = f"{self.lab.config()['results_server']}/runs/{run}/jobs/"
        response = requests.get(url, timeout=10)
        return list(response.json()) if response.status_code == 200 else []

    def explain(self, run: str, *, lines: int = 40) -> str:
        """Why each job of `run` that did not pass ended as it did: paddles' status and
        failure_reason, then the tail of its teuthology.log and the errors its supervisor
        logged. For assertion messages: a failed run must say why without its archive."""
        parts = []
        for job in self.paddles_jobs(run):
            job_id = str(job.get("job_id"))
            if job.get("status") == "pass":
                continue
            job_log = self.job_log(run, job_id).splitlines()[-lines:]
            errors = [line for line in self.supervisor_log(run, job_id).splitlines()
                      if " ERROR:" in line or "Traceback" in line][-lines:]
            parts.append("\n".join([
                f"job {job_id}: {job.get('status')}: {job.get('failure_reason')}",
                f"archive: {self.job_dir(run, job_id)}",
                "--- teuthology.log (tail)", *job_log,
                "--- supervisor errors", *errors]))
        return "\n".join(parts) or f"every job of {run} passed"

    def wait_for_run(self, run: str, job_ids: Sequence[str], *, timeout: float,
                     progress: Callable[[str], None] | None = None) -> dict[str, str]:
        """Wait (at most `timeout` s) until the dispatcher took every job in `job_ids`, paddles
        shows each job it tracks as pass, fail or dead, and every supervisor has exited.
        Returns {job_id: status}; raises TimeoutError saying what was still pending."""
        from teuthology_maas.testing.processes import alive

        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while True:
            statuses = {str(j["job_id"]): str(j["status"]) for j in self.paddles_jobs(run)}
            if progress is not None:
                for job_id, status in sorted(statuses.items()):
                    if seen.get(job_id) != status:
                        progress(f"job {job_id}: {status}")
                seen = statuses
            pending = [j for j in job_ids if j not in self.reserved()]
            unfinished = {j: s for j, s in statuses.items() if s not in FINAL}
            running = [pid for pid in self.supervisor_pids() if alive(pid)]
            if not (pending or unfinished or running):
                return statuses
            if self.dispatcher is not None and self.dispatcher.poll() is not None:
                raise RuntimeError(f"teuthology-dispatcher exited ({self.dispatcher.returncode})"
                                   f"; its log:\n{self.dispatcher_log()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {run} not done after {timeout:.0f} s: not reserved {pending}, "
                    f"unfinished {unfinished}, supervisors running {running}")
            time.sleep(0.2)

    def stop(self, *, grace: float = 10.0) -> list[int]:
        """End the dispatcher and every process of the lab (supervisors, jobs, results), by
        PID; returns the PIDs that were still running."""
        ended = []
        dispatcher, self.dispatcher = self.dispatcher, None
        if dispatcher is not None and dispatcher.poll() is None:
            ended.append(dispatcher.pid)
            dispatcher.terminate()
            try:
                dispatcher.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                dispatcher.kill()
                dispatcher.wait(timeout=grace)
        return ended + self.lab.end_processes(grace=grace)
