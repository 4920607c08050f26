"""The `deploy:` section: its shape, every validation error (naming the key's path, showing
the value and what is expected), and how levels resolve for one node."""

from __future__ import annotations

import pytest

from teuthology_maas.config import MaasConfig
from teuthology_maas.deploy_config import DeployConfig, StorageLayout
from teuthology_maas.errors import ConfigError
from teuthology_maas.models import Machine
from teuthology_maas.node.deploy_options import machine_type_of, parse_overrides, resolve

BASE = {"api_url": "http://maas:5240/MAAS/", "api_key": "ck:tk:secret",
        "machine_types": ["smithi", "mira"]}  # fmt: skip


def load(deploy):
    return MaasConfig.from_mapping({**BASE, "deploy": deploy}).deploy


def test_no_deploy_section_changes_nothing():
    deploy = MaasConfig.from_mapping(BASE).deploy
    assert deploy == DeployConfig() and not deploy.configured
    options = resolve(deploy, machine_type="smithi", os_type="ubuntu", os_version="22.04")
    assert options.deploy_params() == {"hwe_kernel": None, "ephemeral_deploy": None}
    assert (options.storage, options.bonds) == (None, ())


def test_a_full_section_is_read():
    deploy = load({
        "hwe_kernel": "ga-22.04",
        "storage": "flat",
        "os": {"Ubuntu 24.04": {"hwe_kernel": "hwe-24.04"}, "centos": {"ephemeral": "yes"}},
        "machine_types": {"smithi": {
            "storage": {"layout": "lvm", "root_device": "sdb", "root_size": "50%",
                        "vg_name": "vgroot", "lv_size": 200000000000},
            "bonds": [{"name": "bond0", "interfaces": ["eno1", "eno2"], "mode": "802.3ad",
                       "options": {"lacp_rate": "fast", "miimon": "100"}, "mtu": 9000,
                       "link": "dhcp"}],
            "os": {"ubuntu": {"hwe_kernel": "hwe-22.04-lowlatency"}},
        }},
    })  # fmt: skip
    assert deploy.configured
    assert deploy.defaults.storage == StorageLayout("flat")
    assert set(deploy.os) == {"ubuntu 24.04", "centos"}
    assert deploy.os["centos"].ephemeral is True
    smithi = deploy.machine_types["smithi"]
    assert smithi.settings.storage == StorageLayout(
        "lvm", root_device="sdb", root_size="50%", vg_name="vgroot", lv_size="200000000000"
    )
    (bond,) = smithi.settings.bonds
    assert (bond.mode, bond.options, bond.mtu, bond.link) == (
        "802.3ad", (("lacp_rate", "fast"), ("miimon", 100)), 9000, "dhcp"
    )  # fmt: skip
    assert smithi.os["ubuntu"].where == "deploy.machine_types.smithi.os['ubuntu']"


@pytest.mark.parametrize(
    ("deploy", "key", "text"),
    [
        ("hwe-22.04", "deploy", "got a value of type str; expected a mapping of deploy settings"),
        ({"kernel": "ga-22.04"}, "deploy.kernel",
         "got an unknown key; expected one of hwe_kernel, ephemeral, storage, bonds, os, "
         "machine_types"),
        ({"hwe_kernel": "generic"}, "deploy.hwe_kernel",
         "got 'generic'; expected a MAAS kernel name such as ga-22.04"),
        ({"ephemeral": "sometimes"}, "deploy.ephemeral", "expected true or false"),
        ({"storage": {"layout": "zfs"}}, "deploy.storage.layout",
         "got 'zfs'; expected one of flat, lvm, bcache, blank, custom"),
        ({"storage": {"root_device": "sda"}}, "deploy.storage.layout", "got None"),
        ({"storage": {"layout": "flat", "lv_size": "10G"}}, "deploy.storage.lv_size",
         "expected lv_size only with layout lvm"),
        ({"storage": {"layout": "blank", "root_size": "10G"}}, "deploy.storage.root_size",
         "only with flat, lvm or bcache"),
        ({"storage": {"layout": "flat", "root_size": "10 GB"}}, "deploy.storage.root_size",
         "got '10 GB'; expected a size in bytes with an optional SI suffix"),
        ({"storage": {"layout": "bcache", "cache_size": "1G", "cache_no_part": True}},
         "deploy.storage.cache_size", "expected no cache_size with cache_no_part"),
        ({"storage": {"layout": "bcache", "cache_mode": "fast"}}, "deploy.storage.cache_mode",
         "expected one of writeback, writethrough, writearound"),
        ({"bonds": {"name": "bond0"}}, "deploy.bonds", "expected a list of bonds"),
        ({"bonds": [{"name": "bond0"}]}, "deploy.bonds[0].interfaces",
         "expected a list of interface names"),
        ({"bonds": [{"name": "bond0", "interfaces": ["eno1", "eno1"]}]},
         "deploy.bonds[0].interfaces", "expected distinct interfaces, not the bond"),
        ({"bonds": [{"name": "a-very-long-bond-name", "interfaces": ["eno1"]}]},
         "deploy.bonds[0].name", "at most 15 characters"),
        ({"bonds": [{"name": "bond0", "interfaces": ["eno1"], "mode": "lacp"}]},
         "deploy.bonds[0].mode", "got 'lacp'; expected one of balance-rr, active-backup"),
        ({"bonds": [{"name": "bond0", "interfaces": ["eno1"], "options": {"lacp": "fast"}}]},
         "deploy.bonds[0].options.lacp", "got an unknown key"),
        ({"bonds": [{"name": "bond0", "interfaces": ["eno1"],
                     "options": {"num_grat_arp": 300}}]},
         "deploy.bonds[0].options.num_grat_arp", "expected an integer from 0 to 255"),
        ({"bonds": [{"name": "bond0", "interfaces": ["eno1"], "mtu": 500}]},
         "deploy.bonds[0].mtu", "expected an integer >= 552"),
        ({"bonds": [{"name": "bond0", "interfaces": ["eno1"], "link": "static"}]},
         "deploy.bonds[0].link", "expected one of inherit, auto, dhcp, link_up"),
        ({"bonds": [{"name": "bond0", "interfaces": ["eno1"]},
                    {"name": "bond1", "interfaces": ["eno1"]}]},
         "deploy.bonds[1].interfaces", "interfaces in one bond only (also in bond0)"),
        ({"machine_types": {"smithy": {}}}, "deploy.machine_types.smithy",
         "got 'smithy'; expected one of maas.machine_types (smithi, mira)"),
        ({"machine_types": {"smithi": {"machine_types": {}}}},
         "deploy.machine_types.smithi.machine_types", "got an unknown key"),
        ({"os": {"ubuntu 22.04 lts": {}}}, "deploy.os['ubuntu 22.04 lts']",
         "expected '<os_type>' or '<os_type> <os_version>'"),
        ({"os": {"ubuntu": {"os": {}}}}, "deploy.os['ubuntu'].os", "got an unknown key"),
    ],
)  # fmt: skip
def test_every_bad_value_names_its_key_and_what_was_expected(deploy, key, text):
    with pytest.raises(ConfigError) as info:
        load(deploy)
    assert info.value.key == key
    assert str(info.value).startswith(f"maas: {key}: ")
    assert text in str(info.value)


def test_a_broken_deploy_section_disables_maas_with_the_reason():
    problem = MaasConfig.problem({**BASE, "deploy": {"hwe_kernel": "newest"}})
    assert problem is not None and "deploy.hwe_kernel" in problem


def test_levels_resolve_from_general_to_specific():
    deploy = load({
        "hwe_kernel": "ga-22.04",
        "ephemeral": False,
        "os": {"ubuntu": {"hwe_kernel": "hwe-22.04"}, "ubuntu 24.04": {"hwe_kernel": "hwe-24.04"}},
        "machine_types": {"smithi": {
            "ephemeral": True,
            "os": {"ubuntu 22.04": {"hwe_kernel": "hwe-22.04-lowlatency"}},
        }},
    })  # fmt: skip

    def kernel_and_memory(machine_type, version, overrides=None):
        options = resolve(deploy, machine_type=machine_type, os_type="Ubuntu",
                          os_version=version, overrides=overrides)  # fmt: skip
        return options.hwe_kernel, options.ephemeral, options.sources["hwe_kernel"]

    assert kernel_and_memory("mira", "20.04") == (
        "hwe-22.04", False, "deploy.os['ubuntu']"
    )  # fmt: skip
    assert kernel_and_memory("mira", "noble") == (
        "hwe-24.04", False, "deploy.os['ubuntu 24.04']"
    )  # fmt: skip
    assert kernel_and_memory("smithi", "jammy") == (
        "hwe-22.04-lowlatency", True, "deploy.machine_types.smithi.os['ubuntu 22.04']"
    )  # fmt: skip
    overrides = parse_overrides({"hwe_kernel": None, "ephemeral": False})
    assert kernel_and_memory("smithi", "22.04", overrides) == (
        None, False, "per-job deploy options"
    )  # fmt: skip


def test_a_memory_deploy_gets_no_storage_layout():
    deploy = load({"storage": "lvm", "os": {"centos": {"ephemeral": True}}})
    assert resolve(deploy, machine_type=None, os_type="centos",
                   os_version="9.stream").storage is None  # fmt: skip
    assert resolve(deploy, machine_type=None, os_type="ubuntu",
                   os_version="22.04").storage == StorageLayout("lvm")  # fmt: skip


def machine(**fields):
    return Machine.from_json({"system_id": "x", "hostname": "node7", "status": 4, **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tag_names": ["mira", "smithi"]}, "smithi"),  # configured order decides
        ({"pool": {"name": "mira"}}, "mira"),
        ({"hostname": "mira012"}, "mira"),
        ({"hostname": "smithi-3"}, "smithi"),
        ({"hostname": "gibba001"}, None),
    ],
)
def test_the_machine_type_comes_from_a_tag_a_pool_or_the_name(fields, expected):
    assert machine_type_of(machine(**fields), ["smithi", "mira"]) == expected
