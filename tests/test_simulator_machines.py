"""Machine listing, reading, visibility and allocation, over real HTTP."""

from __future__ import annotations

import pytest

INVENTORY = {
    "machines": [
        {"hostname": "smithi001", "tags": ["smithi", "nvme"], "pool": "smithi", "cpu_count": 8,
         "memory": 32768},
        {"hostname": "smithi002", "tags": ["smithi"], "pool": "smithi", "cpu_count": 4,
         "memory": 8192},
        {"hostname": "mira001", "tags": ["mira"], "pool": "mira", "zone": "lab2", "cpu_count": 16,
         "memory": 65536},
        {"hostname": "mira002", "tags": ["mira"], "pool": "mira", "zone": "lab2",
         "status": "deployed", "owner": "alice", "osystem": "ubuntu", "distro_series": "jammy"},
        {"hostname": "arm001", "architecture": "arm64/generic", "tags": ["arm"], "status": "ready"},
        {"hostname": "new001", "status": "new"},
        {"hostname": "mine001", "status": "allocated", "owner": "teuthology",
         "agent_name": "teuthology-maas"},
    ]
}  # fmt: skip


@pytest.fixture
def lab(maas_sim_factory):
    return maas_sim_factory(INVENTORY)


def hostnames(answer) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [m["hostname"] for m in answer.json()]


def test_visibility_per_user(lab):
    everyone = ["smithi001", "smithi002", "mira001", "arm001", "new001", "mine001"]
    assert hostnames(lab.http("teuthology").get("machines/")) == everyone
    assert hostnames(lab.http("admin").get("machines/")) == [
        "smithi001", "smithi002", "mira001", "mira002", "arm001", "new001", "mine001"]  # fmt: skip
    assert "mira002" in hostnames(lab.http("alice").get("machines/"))
    assert "mine001" not in hostnames(lab.http("alice").get("machines/"))


def test_reading_someone_elses_machine_is_403_empty_and_unknown_is_404(lab):
    http = lab.http("teuthology")
    other = http.get(f"machines/{lab.sim.system_id('mira002')}/")
    assert (other.status_code, other.text) == (403, "")
    missing = http.get("machines/nosuch/")
    assert (missing.status_code, missing.text) == (404, "No Machine matches the given query.")
    assert lab.http("admin").get(f"machines/{lab.sim.system_id('mira002')}/").status_code == 200


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"hostname": ["smithi001", "mira001"]}, ["smithi001", "mira001"]),
        ({"not_hostname": "smithi001", "pool": "smithi"}, ["smithi002"]),
        ({"pool": "mira"}, ["mira001"]),
        ({"not_in_pool": ["mira", "default"]}, ["smithi001", "smithi002"]),
        ({"zone": "lab2"}, ["mira001"]),
        ({"not_in_zone": "lab2", "tags": "smithi"}, ["smithi001", "smithi002"]),
        ({"tags": "smithi,nvme"}, ["smithi001"]),
        ({"tags": ["smithi", "nvme"]}, ["smithi001"]),
        ({"tags": "smithi nvme"}, ["smithi001"]),
        ({"not_tags": ["smithi", "arm"]}, ["mira001", "new001", "mine001"]),
        ({"status": "new"}, ["new001"]),
        ({"status": ["=allocated", "new"]}, ["new001", "mine001"]),
        ({"not_status": "ready"}, ["new001", "mine001"]),
        ({"simple_status": "allocated"}, ["mine001"]),
        ({"owner": "teuthology"}, ["mine001"]),
        ({"agent_name": "teuthology-maas"}, ["mine001"]),
        ({"agent_name": ""}, ["smithi001", "smithi002", "mira001", "arm001", "new001"]),
        ({"arch": "arm64"}, ["arm001"]),
        ({"not_arch": "amd64", "pool": "default"}, ["arm001"]),
        ({"cpu_count": "10"}, ["mira001"]),
        ({"mem": "30000"}, ["smithi001", "mira001"]),
        ({"power_state": "on"}, []),
        ({"domain": "maas", "pool": "mira"}, ["mira001"]),
    ],
)
def test_list_filters(lab, params, expected):
    assert hostnames(lab.http().get("machines/", params=params)) == expected


def test_list_filter_by_system_id(lab):
    wanted = [lab.sim.system_id("new001"), lab.sim.system_id("smithi002")]
    answer = lab.http().get("machines/", params={"id": wanted})
    # Any of the ids, listed in MAAS's order (oldest machine first), not the query's.
    assert hostnames(answer) == ["smithi002", "new001"]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"colour": "blue"}, {"colour": ["No such constraint."]}),
        ({"tags": "nosuch"}, {"tags": ["No such tag(s): 'nosuch'."]}),
        ({"pool": "nosuch"}, {"pool": ["No such pool(s): nosuch."]}),
        ({"zone": "nosuch"}, {"zone": ["No such zone(s): nosuch."]}),
        ({"owner": "bob"}, {"owner": ["No such owner: 'bob'."]}),
        ({"arch": "ppc64el"}, {"arch": ["Architecture not recognised."]}),
        (
            {"status": "sleeping"},
            {"status": ["Select a valid choice. sleeping is not one of the available choices."]},
        ),
    ],
)
def test_invalid_filters_are_refused(lab, params, error):
    answer = lab.http().get("machines/", params=params)
    assert answer.status_code == 400
    assert answer.json() == error


def test_machine_object_shape(lab):
    machine = lab.http().get(f"machines/{lab.sim.system_id('mine001')}/").json()
    for name in (
        "system_id", "hostname", "fqdn", "domain", "description", "hardware_uuid", "owner",
        "owner_data", "workload_annotations", "locked", "status", "status_name", "status_message",
        "status_action", "error_description", "architecture", "min_hwe_kernel", "hwe_kernel",
        "osystem", "distro_series", "ephemeral_deploy", "netboot", "power_type", "power_state",
        "cpu_count", "cpu_speed", "memory", "swap_size", "storage", "tag_names", "ip_addresses",
        "interface_set", "boot_interface", "zone", "pool", "address_ttl", "disable_ipv4",
        "bios_boot_method", "boot_disk", "blockdevice_set", "physicalblockdevice_set",
        "virtualblockdevice_set", "volume_groups", "raids", "bcaches", "cache_sets",
        "special_filesystems", "default_gateways", "parent", "node_type", "node_type_name",
        "current_commissioning_result_id", "current_testing_result_id",
        "current_installation_result_id", "commissioning_status", "testing_status_name",
        "hardware_info", "numanode_set", "last_sync", "next_sync", "sync_interval",
        "enable_hw_sync", "enable_kernel_crash_dump", "is_dpu", "resource_uri",
    ):  # fmt: skip
        assert name in machine, name
    assert "constraints_by_type" not in machine
    assert machine["owner"] == "teuthology"
    assert (machine["status"], machine["status_name"]) == (10, "Allocated")
    assert machine["fqdn"] == "mine001.maas"
    assert machine["domain"]["name"] == "maas" and machine["domain"]["is_default"] is True
    assert machine["zone"] == {
        "id": 1,
        "name": "default",
        "description": "Default availability zone",
        "resource_uri": "/MAAS/api/2.0/zones/default/",
    }
    assert machine["pool"]["resource_uri"] == f"/MAAS/api/2.0/resourcepool/{machine['pool']['id']}/"
    assert machine["tag_names"] == []
    assert machine["node_type"] == 0 and machine["node_type_name"] == "Machine"
    assert machine["resource_uri"] == f"/MAAS/api/2.0/machines/{machine['system_id']}/"
    assert machine["storage"] == 1_000_000.0  # MB of the single 1 TB disk
    assert machine["power_state"] in ("on", "off", "unknown", "error")


def test_allocate_picks_the_cheapest_match_and_records_owner(lab):
    http = lab.http()
    answer = http.post("machines/", "allocate", [("tags", "smithi"), ("agent_name", "me"),
                                                  ("comment", "for a test")])  # fmt: skip
    machine = answer.json()
    assert machine["hostname"] == "smithi002"  # 4 cpus + 8 GiB is cheaper than 8 + 32
    assert (machine["status_name"], machine["owner"]) == ("Allocated", "teuthology")
    assert machine["constraints_by_type"] == {}
    listed = http.get("machines/", params={"agent_name": "me"})
    assert hostnames(listed) == ["smithi002"]
    event = lab.sim.events_for("smithi002")[1]
    assert (event["type"], event["username"], event["description"]) == (
        "User acquiring node", "teuthology", "for a test")  # fmt: skip
    allocated = http.get("machines/", params={"op": "list_allocated"})
    assert hostnames(allocated) == ["smithi002", "mine001"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([("name", "smithi001")], "smithi001"),
        ([("name", "smithi001.maas")], "smithi001"),
        ([("arch", "arm64")], "arm001"),
        ([("arch", "amd64/generic"), ("cpu_count", "10")], "mira001"),
        ([("mem", "20000")], "smithi001"),
        ([("zone", "lab2")], "mira001"),
        ([("pool", "smithi"), ("not_tags", "nvme")], "smithi002"),
        ([("not_in_pool", "smithi"), ("not_in_pool", "default")], "mira001"),
        ([("tags", "smithi"), ("tags", "nvme")], "smithi001"),
        ([("storage", "900")], "smithi002"),
    ],
)
def test_allocate_constraints(lab, fields, expected):
    answer = lab.http().post("machines/", "allocate", fields)
    assert answer.status_code == 200, answer.text
    assert answer.json()["hostname"] == expected


def test_allocate_storage_beyond_the_disk_matches_nothing(lab):
    answer = lab.http().post("machines/", "allocate", [("storage", "root:2000")])
    assert answer.status_code == 409
    malformed = lab.http().post("machines/", "allocate", [("storage", "root:big")])
    assert (malformed.status_code, malformed.text) == (
        400,
        'Malformed storage constraint, "root:big".',
    )


def test_allocate_system_id_constraint(lab):
    system_id = lab.sim.system_id("mira001")
    answer = lab.http().post("machines/", "allocate", [("system_id", system_id)])
    assert answer.json()["hostname"] == "mira001"
    again = lab.http().post("machines/", "allocate", [("system_id", system_id)])
    assert (again.status_code, again.text) == (
        409,
        f"No machine with system ID {system_id} available.",
    )


def test_allocate_no_match_messages(lab):
    http = lab.http()
    by_name = http.post("machines/", "allocate", [("name", "foo")])
    assert by_name.status_code == 409
    assert by_name.text == (
        "No available machine matches constraints: [('name', ['foo'])] (resolved to \"name=foo\")"
    )
    several = http.post("machines/", "allocate", [("tags", "mira"), ("cpu_count", "64"),
                                                  ("agent_name", "x")])  # fmt: skip
    assert several.text == (
        "No available machine matches constraints: [('tags', ['mira']), ('cpu_count', ['64']), "
        "('agent_name', ['x'])] (resolved to \"cpu_count=64 tags=mira\")"
    )
    assert several.headers["Content-Type"].startswith("text/plain")
    assert "Retry-After" not in several.headers
    for _ in range(4):  # the Ready machines
        assert http.post("machines/", "allocate").status_code == 200
    exhausted = http.post("machines/", "allocate")
    assert (exhausted.status_code, exhausted.text) == (409, "No machine available.")


def test_allocate_never_takes_locked_owned_or_other_users_machines(lab):
    lab.sim.update_machine("smithi002", locked=True)
    answer = lab.http("alice").post("machines/", "allocate", [("tags", "smithi")])
    assert answer.json()["hostname"] == "smithi001"
    none_left = lab.http().post("machines/", "allocate", [("tags", "smithi")])
    assert none_left.status_code == 409


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ([("distro_series", "jammy")], {"distro_series": ["No such constraint."]}),
        ([("tags", "nosuch")], {"tags": ["No such tag(s): 'nosuch'."]}),
        ([("pool", "nosuch")], {"pool": ["No such pool(s): nosuch."]}),
        ([("cpu_count", "many")], {"cpu_count": ["Invalid CPU count: number required."]}),
        ([("arch", "s390x")], {"arch": ["Architecture not recognised."]}),
    ],
)
def test_allocate_rejects_bad_constraints(lab, fields, error):
    answer = lab.http().post("machines/", "allocate", fields)
    assert answer.status_code == 400
    assert answer.json() == error


def test_allocate_dry_run_and_bad_booleans(lab):
    http = lab.http()
    dry = http.post("machines/", "allocate", [("name", "smithi001"), ("dry_run", "true")])
    assert dry.json()["status_name"] == "Ready"
    assert lab.sim.machine("smithi001")["owner"] is None
    bad = http.post("machines/", "allocate", [("dry_run", "perhaps")])
    assert (bad.status_code, bad.text) == (
        400,
        "Invalid dry_run: Value should be 'true' or 'false'",
    )


def test_nodes_endpoints_and_misc_collections(lab):
    http = lab.http()
    assert hostnames(http.get("nodes/", params={"pool": "mira"})) == ["mira001"]
    node = http.get(f"nodes/{lab.sim.system_id('smithi001')}/").json()
    assert node["hostname"] == "smithi001"
    assert {z["name"] for z in http.get("zones/").json()} == {"default", "lab2"}
    pools = {p["name"]: p for p in http.get("resourcepools/").json()}
    assert set(pools) == {"default", "smithi", "mira"}
    assert pools["smithi"]["resource_uri"] == f"/MAAS/api/2.0/resourcepool/{pools['smithi']['id']}/"
    assert [t["name"] for t in http.get("tags/").json()] == ["arm", "mira", "nvme", "smithi"]
    mac = lab.sim.machine("smithi001")["boot_interface"]["mac_address"]
    registered = lab.http(None).get("machines/", params={"op": "is_registered", "mac_address": mac})
    assert registered.json() is True


def test_admin_update_and_delete(lab):
    admin, user = lab.http("admin"), lab.http()
    system_id = lab.sim.system_id("new001")
    assert (
        user.request("PUT", f"machines/{system_id}/", fields=[("description", "x")]).status_code
        == 403
    )
    updated = admin.request("PUT", f"machines/{system_id}/", fields=[("description", "rack 4")])
    assert updated.json()["description"] == "rack 4"
    assert user.request("DELETE", f"machines/{system_id}/").status_code == 403
    assert admin.request("DELETE", f"machines/{system_id}/").status_code == 204
    assert admin.get(f"machines/{system_id}/").status_code == 404
