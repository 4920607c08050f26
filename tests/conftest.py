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
