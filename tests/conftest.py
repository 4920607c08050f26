"""Shared pytest configuration. Area-specific fixtures live in tests/fixtures_<area>.py and are
registered here, one line each."""

pytest_plugins: list[str] = [
    "tests.fixtures_provisioner",
    "tests.fixtures_sshd",
    "tests.fixtures_simulator",
    "tests.fixtures_reliability",
    "tests.fixtures_e2e",
    "tests.fixtures_dispatcher",
    "tests.fixtures_cli",
    "tests.fixtures_regions",
]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _own_host_store(tmp_path_factory, monkeypatch):
    """Every test (and every process it starts) gets a host store of its own: what one test's
    simulator answered must never be another's cached answer ..."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    # ... and its own host-sharing directory: a leader a test kills leaves its socket and lock
    # file behind (the next leader of that name clears them), which belongs in the test's tmp.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
