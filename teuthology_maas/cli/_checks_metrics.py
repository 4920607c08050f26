"""The doctor's metrics row: whether teuthology workers on this host will record metrics, and
where (docs/metrics.md)."""

from __future__ import annotations

import importlib.util
import os

from teuthology_maas import metrics
from teuthology_maas.cli._checks import CheckResult, DoctorState
from teuthology_maas.metrics_export import TEUTHOLOGY_DIR


def check_metrics(state: DoctorState) -> list[CheckResult]:
    if state.cfg is None:
        return []  # the configuration check said what is wrong; the rest is skipped
    if importlib.util.find_spec("prometheus_client") is None:
        return [CheckResult("metrics", "WARN", "off: prometheus_client is not installed, "
                            "nothing is measured", metrics.INSTALL_HINT)]  # fmt: skip
    switch = os.environ.get(metrics.SWITCH_ENV, "").strip().lower()
    if switch in metrics.OFF:
        return [CheckResult("metrics", "OK", f"off ({metrics.SWITCH_ENV}={switch})")]
    directory = TEUTHOLOGY_DIR.expanduser()
    if directory.is_dir():
        return [CheckResult("metrics", "OK", f"on: teuthology workers record into {directory}, "
                            "which teuthology-exporter serves")]  # fmt: skip
    return [CheckResult(
        "metrics", "WARN",
        f"off for teuthology workers: {directory} does not exist (teuthology creates it when "
        "teuthology-exporter runs)",
        f"start teuthology-exporter, or create {directory} and scrape it (docs/metrics.md)",
    )]
