"""Prometheus metrics (teuthology_maas.metrics): what is recorded, with which labels, when
prometheus_client is absent or switched off, and adding up across processes (multiprocess
mode, as teuthology's supervisors run). The end-to-end scrape after a real teuthology-lock is
in tests/test_metrics_e2e.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests._metrics_read import samples, value
from teuthology_maas import errors, metrics
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.node.create import Ended


@pytest.fixture
def registry():
    registry = CollectorRegistry()
    with metrics.recording_to(metrics.Recorder(registry)):
        yield registry


class Node:
    """What `metrics.measured` needs of the object whose methods it measures."""

    def metrics_labels(self) -> tuple[str, metrics.Labels]:
        return "smithi007", metrics.Labels("smithi", "maas.example.com:5240")

    @metrics.measured("create")
    def create(self, fail: BaseException | None = None) -> str:
        with metrics.phase("allocate"):
            pass
        with metrics.phase("deploy_wait"):
            if fail is not None:
                raise fail
        return "done"


def test_request_kind_keeps_the_label_bounded():
    assert metrics.request_kind("machines/4y3h7n/", "deploy") == "machines/{id}/?op=deploy"
    assert metrics.request_kind("machines/", None) == "machines/"
    assert metrics.request_kind("nodes/abc/interfaces/12/", "link_subnet") == (
        "nodes/{id}/interfaces/{id}/?op=link_subnet"
    )
    # a hostile or unexpected path cannot grow the label set
    hostile = metrics.request_kind("machines/../../etc/passwd/", None)
    assert hostile == "machines/{id}/{id}/{id}/{id}/"


def test_region_is_the_api_host_never_a_secret_or_path():
    region = metrics.region_of
    assert region("http://maas.example.com:5240/MAAS/api/2.0/") == "maas.example.com:5240"
    assert region("https://user:secret@MAAS.example.com/MAAS/api/2.0/") == "maas.example.com"
    metrics.name_region("http://10.0.0.9:5240/MAAS/api/2.0/", "lab-a")
    assert region("http://10.0.0.9:5240/MAAS/api/2.0/") == "lab-a"


@pytest.mark.parametrize(("exc", "reason"), [
    (errors.TakenOver("x"), "taken_over"),
    (errors.OwnershipError("x"), "not_ours"),
    (errors.InvalidNodeName("x"), "not_found"),
    (errors.NoMachineAvailable("x"), "no_machine_available"),
    (errors.MaasOutcomeUnknown("x", op="deploy"), "maas_uncertain"),
    (errors.MaasServerError("x"), "maas_http_error"),
    (errors.ReleaseFailed("x"), "release_failed"),
    (errors.DeploymentFailed("os mismatch"), "deploy_failed"),
    (KeyboardInterrupt(), "interrupted"),
    (ValueError("bug"), "internal"),
])  # fmt: skip
def test_failure_reason_comes_from_the_exception_type(exc, reason):
    assert metrics.failure_reason(exc) == reason
    assert reason in metrics.REASONS


def test_a_wrapped_failure_is_classified_by_its_cause():
    """create() wraps every failure in DeploymentFailed: its cause names the reason."""
    for cause, reason in [(errors.SSHNotReady("no ssh"), "ssh"),
                          (errors.MaasTimeout("slow"), "timeout"),
                          (Ended.__new__(Ended), "deploy_failed")]:
        try:
            try:
                raise cause
            except BaseException as exc:
                raise errors.DeploymentFailed("deploying failed") from exc
        except errors.DeploymentFailed as wrapped:
            assert metrics.failure_reason(wrapped) == reason


def test_an_operation_records_phases_outcome_and_the_failing_node(registry):
    node = Node()
    assert node.create() == "done"
    with pytest.raises(errors.SSHNotReady):
        node.create(errors.SSHNotReady("port 22 refused"))
    found = samples(registry)
    where = {"machine_type": "smithi", "region": "maas.example.com:5240"}
    ops = "teuthology_maas_operations_total"
    assert value(found, ops, operation="create", outcome="success", reason="none", **where) == 1
    assert value(found, ops, operation="create", outcome="failure", reason="ssh", **where) == 1
    assert value(found, "teuthology_maas_node_failures_total", node="smithi007",
                 reason="ssh") == 1
    hist = "teuthology_maas_phase_duration_seconds_count"
    assert value(found, hist, phase="allocate", outcome="success", **where) == 2
    assert value(found, hist, phase="deploy_wait", outcome="success") == 1
    assert value(found, hist, phase="deploy_wait", outcome="failure") == 1
    # nothing is left in progress once the phases ended, however they ended
    assert value(found, "teuthology_maas_phase_in_progress") == 0
    assert value(found, "teuthology_maas_operation_duration_seconds_count",
                 operation="create") == 2


def test_a_phase_is_in_progress_while_it_runs(registry):
    with metrics.operation("release", node="n1", labels=metrics.Labels("smithi", "r")):
        metrics.relabel(machine_type="mira")
        with metrics.phase("erase"):
            inside = samples(registry)
    assert value(inside, "teuthology_maas_phase_in_progress", phase="erase",
                 machine_type="mira", region="r") == 1
    assert value(samples(registry), "teuthology_maas_operations_total",
                 operation="release", machine_type="mira") == 1


def test_maas_requests_and_retries_are_counted_by_kind_and_status(registry, maas_sim):
    maas_sim.sim.faults.add("error", status=503, times=1, path="version/", retry_after=0)
    client = MaasClient(maas_sim.api_url, maas_sim.api_key)
    try:
        client.version()
        with pytest.raises(errors.MaasNotFound):
            client.get_machine("nosuch")
    finally:
        client.close()
    found = samples(registry)
    region = metrics.region_of(client.base_url)
    requests = "teuthology_maas_maas_requests_total"
    assert value(found, requests, region=region, kind="version/", status="503") == 1
    assert value(found, requests, region=region, kind="version/", status="200") == 1
    assert value(found, requests, kind="machines/{id}/", method="GET", status="404") == 1
    assert value(found, "teuthology_maas_maas_retries_total", kind="version/",
                 cause="503") == 1
    assert value(found, "teuthology_maas_maas_request_duration_seconds_count",
                 kind="version/") == 2


def test_without_prometheus_client_nothing_is_recorded_and_nothing_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    monkeypatch.setattr(metrics, "_setup", None)
    on, text = metrics.status()
    assert on is False
    assert "prometheus_client is not installed" in text and "teuthology-maas[metrics]" in text
    assert Node().create() == "done"
    with pytest.raises(errors.SSHNotReady):
        Node().create(errors.SSHNotReady("x"))
    metrics.maas_request("http://m/MAAS/api/2.0/", "GET", "version/", None, "200", 0.1)
    metrics.maas_retry("http://m/MAAS/api/2.0/", "version/", None, "503")


def test_switched_off_or_without_the_shared_directory_it_records_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(metrics, "_setup", None)
    monkeypatch.setenv(metrics.SWITCH_ENV, "off")
    assert metrics.status() == (False, f"off ({metrics.SWITCH_ENV}=off)")
    monkeypatch.setattr(metrics, "_setup", None)
    monkeypatch.delenv(metrics.SWITCH_ENV)
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path / "absent"))
    on, text = metrics.status()
    assert not on and "is not a directory" in text


WORKER = textwrap.dedent("""
    import sys
    from teuthology_maas import metrics, errors
    labels = metrics.Labels("smithi", "maas:5240")
    print(metrics.status()[1])
    for node in sys.argv[1:]:
        try:
            with metrics.operation("create", node=node, labels=labels):
                with metrics.phase("deploy_wait"):
                    if node.endswith("bad"):
                        raise errors.DeploymentFailed("MAAS said Failed deployment")
        except errors.DeploymentFailed:
            pass
""")


def test_several_processes_add_up_in_multiprocess_mode(tmp_path):
    """As teuthology's supervisors: each process writes its own files, and the collector
    teuthology's exporter uses adds them up; no gauge of an ended process stays behind."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    for nodes in (["smithi001", "smithi002"], ["smithi003", "smithi004bad"]):
        done = subprocess.run([sys.executable, "-c", WORKER, *nodes], env=env,
                              capture_output=True, text=True, timeout=60, check=True)
        assert "on (multiprocess" in done.stdout, done
    assert len(list(directory.glob("counter_*.db"))) == 2  # one file per process
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    found = samples(registry)
    ops = "teuthology_maas_operations_total"
    assert value(found, ops, operation="create", outcome="success", reason="none") == 3
    assert value(found, ops, operation="create", outcome="failure",
                 reason="deploy_failed") == 1
    assert value(found, "teuthology_maas_node_failures_total", node="smithi004bad") == 1
    assert value(found, "teuthology_maas_phase_duration_seconds_count",
                 phase="deploy_wait") == 4
    assert value(found, "teuthology_maas_phase_in_progress") == 0
    assert list(directory.glob("gauge_live*")) == []  # removed at each process's exit


def test_metric_names_do_not_collide_with_teuthologys():
    registry = CollectorRegistry()
    metrics.Recorder(registry)
    names = {family.name for family in registry.collect()}
    assert names and all(name.startswith(metrics.PREFIX) for name in names)
    assert Path(metrics.__file__).read_text().count("teuthology_reimaging") == 0


def test_doctor_says_whether_teuthology_workers_record(monkeypatch, tmp_path):
    from teuthology_maas.cli._checks import DoctorState
    from teuthology_maas.cli._checks_metrics import check_metrics

    state = DoctorState(config_path=None, make_client=None, cfg=object())  # type: ignore[arg-type]
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(metrics.SWITCH_ENV, raising=False)
    (row,) = check_metrics(state)
    assert row.verdict == "WARN" and "does not exist" in row.detail
    assert "teuthology-exporter" in row.hint
    (tmp_path / ".cache" / "teuthology-exporter").mkdir(parents=True)
    (row,) = check_metrics(state)
    assert row.verdict == "OK" and row.detail.startswith("on:")
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    (row,) = check_metrics(state)
    assert (row.verdict, row.hint) == ("WARN", metrics.INSTALL_HINT)
    assert row.detail.startswith("off: prometheus_client is not installed")


def test_labels_stay_bounded_whatever_maas_or_the_caller_sends(registry):
    """A hostile server's odd statuses, and names MAAS does not know, add no series."""
    for status in ("418", "599", "999", "200"):
        metrics.maas_request("http://m:5240/MAAS/api/2.0/", "GET", "version/", None, status, 0.1)
    labels = metrics.Labels("smithi", "m:5240")
    for typo in ("smithi9999", "not-a-node"):
        with (pytest.raises(errors.MachineNotFound),
              metrics.operation("create", node=typo, labels=labels)):
            raise errors.MachineNotFound(f"MAAS has no machine with hostname {typo!r}")
    with metrics.phase("lookup"):  # outside an operation: nothing says what it belongs to
        metrics.relabel(machine_type="mira")
    found = samples(registry)
    statuses = {dict(ls)["status"] for n, ls in found if n == "teuthology_maas_maas_requests_total"}
    assert statuses == {"4xx", "5xx", "9xx", "200"}
    nodes = {dict(ls)["node"] for n, ls in found if n == "teuthology_maas_node_failures_total"}
    assert nodes == {"unknown"}
    assert value(found, "teuthology_maas_node_failures_total", reason="not_found") == 2
    assert value(found, "teuthology_maas_phase_duration_seconds_count") == 0
    assert value(found, "teuthology_maas_operations_total", machine_type="mira") == 0


# -- the library over the simulator (in this process) -------------------------------------------

def test_create_and_a_stuck_release_record_their_phases(registry, lab_factory):
    """create() with SSH, then a release MAAS cannot finish: the ladder is its own phase, and
    the release fails with its reason."""
    lab = lab_factory(machine_types=["smithi"], release_timeout=0.5)
    provisioner = lab.provisioner()
    provisioner.create()
    lab.sim.faults.add("release_stuck", machine="smithi001")
    with pytest.raises(errors.ReleaseFailed):
        provisioner.release()
    found = samples(registry)
    where = {"machine_type": "smithi", "region": metrics.region_of(lab.client.base_url)}
    phases = "teuthology_maas_phase_duration_seconds_count"
    for phase in ("lookup", "allocate", "deploy_wait", "ssh_wait", "lock"):
        assert value(found, phases, phase=phase, outcome="success", **where) >= 1, phase
    assert value(found, phases, phase="erase", outcome="failure", **where) == 1  # timed out
    assert value(found, phases, phase="recovery", **where) == 1
    ops = "teuthology_maas_operations_total"
    assert value(found, ops, operation="create", outcome="success", **where) == 1
    assert value(found, ops, operation="release", reason="release_failed", **where) == 1
    assert value(found, "teuthology_maas_node_failures_total", node="smithi001",
                 operation="release") == 1


def test_an_abort_is_an_operation_with_its_wait(registry, lab_factory):
    lab = lab_factory(ssh=False, machine_types=["smithi"])
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    system_id = lab.state("smithi001")["system_id"]
    lab.client.deploy(system_id, distro_series="ubuntu/jammy")
    lab.provisioner().abort()
    found = samples(registry)
    assert value(found, "teuthology_maas_operations_total", operation="abort",
                 outcome="success", machine_type="smithi") == 1
    assert value(found, "teuthology_maas_phase_duration_seconds_count", phase="abort",
                 outcome="success") == 1


def test_each_maas_installation_labels_its_requests_and_operations_by_name(
    registry, two_installations
):
    """`maas: regions:`: a create() in each installation is labelled with its region's name,
    its requests too, over real HTTP to two simulators."""
    from teuthology_maas.node.provisioner import MaasProvisioner

    config = two_installations.config()
    for node in ("smithi001", "mira001"):
        MaasProvisioner(node, config=config).create()
    found = samples(registry)
    requests = "teuthology_maas_maas_requests_total"
    for region, kind in (("sepia", "smithi"), ("octo", "mira")):
        assert value(found, "teuthology_maas_operations_total", operation="create",
                     outcome="success", machine_type=kind, region=region) == 1, region
        assert value(found, "teuthology_maas_phase_duration_seconds_count", phase="deploy_wait",
                     machine_type=kind, region=region) == 1, region
        assert value(found, requests, region=region, kind="machines/{id}/?op=deploy",
                     status="200") == 1, region
    labels = {dict(ls)["region"] for n, ls in found if n.startswith("teuthology_maas_")
              and "region" in dict(ls)}  # fmt: skip
    assert labels == {"sepia", "octo"}


def test_every_url_of_a_named_ha_region_has_its_name_and_a_flat_config_its_host():
    from teuthology_maas.config import MaasConfig

    urls = ["http://10.0.0.1:5240/MAAS/", "http://10.0.0.2:5240/MAAS/"]
    key = "ck:tk:ts"
    named = MaasConfig.from_mapping({"regions": {
        "lab-b": {"api_url": urls, "api_key": key, "machine_types": ["smithi"]},
        "lab-c": {"api_url": "http://10.0.0.3:5240/MAAS/", "api_key": key,
                  "machine_types": ["mira"]},
    }})  # fmt: skip
    for region in named.region_configs:
        MaasClient.from_config(region).close()
    assert [metrics.region_of(f"{u}api/2.0/") for u in urls] == ["lab-b", "lab-b"]
    assert metrics.region_of("http://10.0.0.3:5240/MAAS/api/2.0/") == "lab-c"
    flat = MaasConfig.from_mapping({"api_url": urls, "api_key": key, "machine_types": ["x"]})
    MaasClient.from_config(flat).close()
    assert metrics.region_of(f"{urls[0]}api/2.0/") == "10.0.0.1:5240"
    assert metrics.region_of(f"{urls[1]}api/2.0/") == "10.0.0.2:5240"
