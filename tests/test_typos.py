"""Typos are caught and answered with the nearest known name: configuration keys, OS names and
versions (library level; the command's answers are in tests/test_cli_typos.py)."""

from __future__ import annotations

import logging

import pytest

from teuthology_maas.config import MaasConfig, unknown_keys
from teuthology_maas.errors import ImageNotAvailable
from teuthology_maas.node import images
from teuthology_maas.suggest import closest, did_you_mean

SECTION = {"api_url": "http://maas.example.com:5240/MAAS/", "api_key": "ck:tk:secret"}


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr("teuthology_maas.config_values._warned", set())
    monkeypatch.setenv("HOME", str(tmp_path))


def test_closest_finds_near_names_and_ignores_far_ones() -> None:
    assert closest("timeuot", ["timeout", "ssh_timeout", "erase"]) [0] == "timeout"
    assert closest("smithy", ["smithi", "mira"]) == ["smithi"]
    assert closest("mira", ["smithi"]) == []
    # case is ignored, but the name comes back as it is spelled
    assert closest("Deployed", ["deployed", "ready"]) == ["deployed"]


def test_did_you_mean_words_one_and_several_names() -> None:
    assert did_you_mean("smithy", ["smithi"]) == "did you mean 'smithi'?"
    assert did_you_mean("zzz", ["smithi"]) == ""
    several = did_you_mean("mira1", ["mira", "mira2", "smithi"], limit=3)
    assert several in ("did you mean 'mira' or 'mira2'?", "did you mean 'mira2' or 'mira'?")


def test_unknown_maas_keys_get_the_nearest_known_key() -> None:
    found = unknown_keys({**SECTION, "machine_type": ["smithi"], "timeuot": 5, "zzzz": 1})
    assert found == [
        "'machine_type' (did you mean 'machine_types'?)",
        "'timeuot' (did you mean 'timeout'?)",
        "'zzzz'",
    ]
    assert unknown_keys(SECTION) == []


def test_the_config_warning_names_each_typo_with_a_suggestion(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="teuthology_maas.config"):
        cfg = MaasConfig.from_mapping({**SECTION, "timeuot": 5}, source="lab.yaml")
    assert cfg.timeout == 900  # the typo is ignored, not applied
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "lab.yaml: ignoring unknown maas key(s): 'timeuot' (did you mean 'timeout'?)"
    ]


def test_an_os_type_typo_suggests_the_os_not_an_image_map_entry() -> None:
    with pytest.raises(ImageNotAvailable) as caught:
        images.resolve("ubunto", "22.04")
    text = str(caught.value)
    assert "unknown os_type 'ubunto'; did you mean 'ubuntu'?" in text
    assert "image_map" not in text  # mapping 'ubunto 22.04' is not the fix for a typo


@pytest.mark.parametrize(
    ("os_type", "version", "nearest"),
    [("ubuntu", "22.4", "22.04"), ("ubuntu", "jamy", "jammy"), ("centos", "9.steam", "9.stream")],
)
def test_a_version_typo_suggests_the_nearest_known_version(
    os_type: str, version: str, nearest: str
) -> None:
    with pytest.raises(ImageNotAvailable) as caught:
        images.resolve(os_type, version)
    assert f"unknown {os_type} version {version!r}; did you mean {nearest!r}?" in str(caught.value)


def test_versions_mapped_in_image_map_are_known_too() -> None:
    image_map = {"rocky": {"9.7": "custom/rocky97"}, "alma 9": "custom/alma9"}
    assert "alma" in images.known_os_types(image_map)
    assert "9.7" in images.known_versions("rocky", image_map)
    with pytest.raises(ImageNotAvailable) as caught:
        images.resolve("almma", "9", image_map)
    assert "did you mean 'alma'?" in str(caught.value)


def test_an_os_far_from_every_known_one_still_gets_the_image_map_advice() -> None:
    with pytest.raises(ImageNotAvailable) as caught:
        images.resolve("gentoo", "2024")
    text = str(caught.value)
    assert "did you mean" not in text
    assert "'gentoo 2024': '<os>/<release>'" in text
