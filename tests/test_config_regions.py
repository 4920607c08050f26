"""The two forms of `maas:` with several MAAS endpoints: `api_url` as a list of region URLs of
one MAAS (HA), and `regions:` for separate installations; and every mistake in them refused
with a message naming the key, the region and what was expected."""

from __future__ import annotations

import pytest

from teuthology_maas.config import KNOWN_KEYS, MaasConfig
from teuthology_maas.errors import ConfigError

KEY_A = "consumerAAAA:tokenAAAAAAA:secretAAAAAAAAAAAAAAAAAAAA"
KEY_B = "consumerBBBB:tokenBBBBBBB:secretBBBBBBBBBBBBBBBBBBBB"


def region(url="http://maas-a:5240/MAAS/", key=KEY_A, types=("smithi",), **more):
    return {"api_url": url, "api_key": key, "machine_types": list(types), **more}


def two_regions(**top):
    return {
        "regions": {
            "sepia": region(),
            "octo": region("https://maas.octo:5443/MAAS", KEY_B, ["mira", "gibba"]),
        },
        **top,
    }


def refused(section) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        MaasConfig.from_mapping(section)
    for secret in ("secretAAAAAAAAAAAAAAAAAAAA", "secretBBBBBBBBBBBBBBBBBBBB"):
        assert secret not in str(caught.value)
    return caught.value


def test_the_flat_form_is_one_region_named_default():
    cfg = MaasConfig.from_mapping(region())
    assert cfg.region == "default"
    assert cfg.regions == ()
    assert cfg.region_configs == (cfg,)
    assert cfg.api_urls == ("http://maas-a:5240/MAAS/api/2.0/",)
    assert cfg.for_type("smithi") is cfg and cfg.for_type("mira") is None
    assert cfg.for_node("anything") is cfg


def test_api_url_lists_the_region_urls_of_one_maas():
    cfg = MaasConfig.from_mapping(
        region(["http://maas-a:5240/MAAS", "http://maas-b:5240/MAAS/api/2.0", "http://maas-a:5240/MAAS/"])
    )
    assert cfg.api_urls == ("http://maas-a:5240/MAAS/api/2.0/", "http://maas-b:5240/MAAS/api/2.0/")
    assert cfg.api_url == cfg.api_urls[0]  # the first names this MAAS


@pytest.mark.parametrize(
    ("urls", "key", "expected"),
    [
        ([], "api_url", "at least one region URL"),
        (["http://maas-a/MAAS", "http://169.254.169.254/MAAS"], "api_url[1]", "metadata"),
        (["http://maas-a/MAAS", "http://[fe80::1]/MAAS"], "api_url[1]", "link-local"),
        (["http://maas-a/MAAS", "ftp://maas-b/"], "api_url[1]", "http:// or https://"),
        (["http://maas-a/MAAS", 5240], "api_url[1]", "the MAAS URL"),
        ({"a": "http://maas-a/MAAS"}, "api_url", "a list of the region URLs"),
    ],
)
def test_a_bad_region_url_list_names_the_entry(urls, key, expected):
    error = refused(region(urls))
    assert error.key == key
    assert f"maas: {key}:" in str(error) and expected in str(error), error


def test_regions_map_machine_types_to_installations_with_their_own_settings():
    cfg = MaasConfig.from_mapping(
        {
            "erase": "none",
            "timeout": 1000,
            "lab_domain": "front.example.com",
            "regions": {
                "sepia": region(),
                "octo": region("https://maas.octo:5443/MAAS", KEY_B, ["mira"], erase="full",
                               lab_domain="octo.example.com"),
            },
        }
    )
    assert cfg.machine_types == ("smithi", "mira")
    assert cfg.enabled and cfg.handles("mira")
    sepia, octo = cfg.region_configs
    assert (sepia.region, octo.region) == ("sepia", "octo")
    assert (sepia.erase, octo.erase) == ("none", "full")  # the top is each region's default
    assert sepia.timeout == octo.timeout == 1000
    assert (sepia.api_url, octo.api_url) == (
        "http://maas-a:5240/MAAS/api/2.0/", "https://maas.octo:5443/MAAS/api/2.0/"
    )
    assert octo.api_key.consumer_key == "consumerBBBB"
    assert cfg.for_type("mira") is octo and cfg.for_type("smithi") is sepia
    assert cfg.for_node("mira012") is octo and cfg.for_node("smithi001") is sepia
    assert cfg.for_node("qa-box") is None  # MAAS has to be asked (node/region.py)
    assert cfg.for_node("qa-box", "mira") is octo
    assert octo.fqdn("mira012") == "mira012.octo.example.com"
    assert sepia.fqdn("smithi001") == "smithi001.front.example.com"


def test_an_inherited_deploy_section_may_name_the_types_of_every_region():
    cfg = MaasConfig.from_mapping(
        two_regions(deploy={"machine_types": {"smithi": {"ephemeral": True}, "mira": {}}})
    )
    assert cfg.for_type("smithi").deploy == cfg.for_type("mira").deploy


def test_a_machine_type_in_two_regions_is_refused_naming_both():
    section = two_regions()
    section["regions"]["octo"]["machine_types"] = ["mira", "smithi"]
    error = refused(section)
    assert "'smithi'" in str(error) and "'sepia'" in str(error) and "'octo'" in str(error)
    assert error.key == "regions.octo.machine_types"


@pytest.mark.parametrize(
    ("typo", "hint"),
    [("machine_type", "machine_types"), ("api_uri", "api_url"), ("timeuot", "timeout")],
)
def test_an_unknown_key_in_a_region_is_refused_with_the_nearest_known(typo, hint):
    section = two_regions()
    section["regions"]["octo"][typo] = "x"
    error = refused(section)
    assert f"regions.octo: unknown key '{typo}'" in str(error), error
    assert f"did you mean '{hint}'?" in str(error), error
    assert error.key == f"regions.octo.{typo}"


@pytest.mark.parametrize("missing", ["api_url", "api_key", "machine_types"])
def test_each_region_needs_its_url_key_and_types(missing):
    section = two_regions()
    section["regions"]["octo"][missing] = [] if missing != "api_key" else ""
    error = refused(section)
    assert f"regions.octo.{missing} is missing or empty" in str(error), error


@pytest.mark.parametrize("key", ["api_url", "api_key", "machine_types"])
def test_installation_keys_at_the_top_are_refused_with_regions(key):
    section = two_regions(**{key: region()[key]})
    error = refused(section)
    assert error.key == key and "under each region" in str(error)


def test_a_bad_value_in_a_region_names_the_region_and_never_shows_a_key():
    section = two_regions()
    section["regions"]["octo"]["http_timeout"] = "secretBBBBBBBBBBBBBBBBBBBB"
    error = refused(section)
    assert str(error).startswith("maas: regions.octo: http_timeout: got"), error
    assert error.key == "regions.octo.http_timeout"


@pytest.mark.parametrize(
    ("regions", "expected"),
    [
        ({}, "a mapping of region name"),
        ([region()], "a mapping of region name"),
        ({"bad name!": region()}, "region names of letters"),
        ({"sepia": "http://maas/"}, "a mapping with api_url"),
    ],
)
def test_a_malformed_regions_section_is_refused(regions, expected):
    assert expected in str(refused({"regions": regions}))


def test_the_activation_switch_stays_at_the_top():
    section = two_regions()
    section["regions"]["octo"]["activate"] = False
    assert "unknown key 'activate'" in str(refused(section))
    assert "regions" in KNOWN_KEYS
