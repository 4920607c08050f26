"""Read-only endpoints: events, installation results, boot resources, config, users."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest


@pytest.fixture
def lab(manual_sim):
    handle = manual_sim
    http = handle.http()
    for host in ("smithi001", "smithi002"):
        system_id = handle.sim.system_id(host)
        assert http.post(f"machines/{system_id}/", "deploy").status_code == 200
    handle.sim.clock.advance(600)
    alice = handle.http("alice")
    alice.post(f"machines/{handle.sim.system_id('smithi003')}/", "deploy")
    return handle


def query(handle, user="teuthology", **params):
    answer = handle.http(user).get("events/", params={"op": "query", **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_events_are_newest_first_and_default_to_info(lab):
    document = query(lab, id=lab.sim.system_id("smithi001"))
    events = document["events"]
    assert document["count"] == len(events) == 8
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True)
    assert {e["level"] for e in events} == {"INFO"}
    assert events[0]["type"] == "Deployed"
    keys = {"username", "node", "hostname", "id", "level", "created", "type", "description"}
    assert set(events[0]) == keys
    assert events[0]["node"] == lab.sim.system_id("smithi001")
    assert events[0]["hostname"] == "smithi001"
    # created looks like MAAS's: "Sat, 21 Nov. 2026 05:52:18"
    day, rest = events[0]["created"].split(", ", 1)
    assert len(day) == 3 and rest.split(" ")[1].endswith(".")


def test_debug_level_shows_user_requests(lab):
    events = query(lab, hostname="smithi001", level="DEBUG")["events"]
    requests = [e for e in events if e["type"] == "User starting deployment"]
    assert len(requests) == 1
    assert (requests[0]["level"], requests[0]["username"]) == ("DEBUG", "teuthology")
    assert query(lab, hostname="smithi001", level="ERROR")["events"] == []


def test_events_only_of_visible_machines(lab):
    mine = {e["hostname"] for e in query(lab, level="DEBUG", limit="1000")["events"]}
    assert mine == {"smithi001", "smithi002"}
    everything = {e["hostname"] for e in query(lab, "admin", level="DEBUG")["events"]}
    assert everything == {"smithi001", "smithi002", "smithi003"}


def test_limit_and_cursors(lab):
    system_id = lab.sim.system_id("smithi001")
    first = query(lab, id=system_id, limit="3")
    assert len(first["events"]) == 3
    before = urlsplit(first["prev_uri"])
    assert before.path == "/MAAS/api/2.0/events/"
    cursor = parse_qs(before.query)
    assert cursor["op"] == ["query"] and cursor["id"] == [system_id]
    assert cursor["before"] == [str(first["events"][-1]["id"])]
    older = query(lab, id=system_id, limit="3", before=cursor["before"][0])["events"]
    assert [e["id"] for e in older] == sorted((e["id"] for e in older), reverse=True)
    assert older[0]["id"] < first["events"][-1]["id"]
    after = query(lab, id=system_id, after=str(older[-1]["id"]), limit="2")["events"]
    # Still newest first, and the oldest ones after the cursor.
    assert [e["id"] for e in after] == [older[0]["id"], older[1]["id"]]
    newest = parse_qs(urlsplit(first["next_uri"]).query)["after"]
    assert newest == [str(first["events"][0]["id"])]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"level": "LOUD"}, "Unrecognised log level: LOUD"),
        ({"limit": "1001"}, "Requested number of events 1001 is greater than limit: 1000"),
        ({"after": "1", "before": "5"}, None),
    ],
)
def test_bad_event_queries(lab, params, message):
    answer = lab.http().get("events/", params={"op": "query", **params})
    assert answer.status_code == 400
    if message is not None:
        assert answer.text == message


def test_installation_output(lab):
    http = lab.http()
    system_id = lab.sim.system_id("smithi001")
    machine = lab.sim.machine("smithi001")
    summary = http.get(f"nodes/{system_id}/results/current-installation/").json()
    assert summary["id"] == machine["current_installation_result_id"]
    assert (summary["status_name"], summary["type_name"]) == ("Passed", "Installation")
    assert "output" not in summary["results"][0]
    full = http.get(
        f"nodes/{system_id}/results/current-installation/", params={"include_output": "1"}
    ).json()
    result = full["results"][0]
    assert result["name"] == "/tmp/install.log"
    assert b"curtin: Installation finished." in base64.b64decode(result["output"])
    text = http.get(f"nodes/{system_id}/results/{summary['id']}/", params={"op": "download"})
    assert text.headers["Content-Type"].startswith("text/plain")
    assert "Installation finished" in text.text
    listed = http.get(f"nodes/{system_id}/results/", params={"type": "installation"}).json()
    assert [s["id"] for s in listed] == [summary["id"]]
    never = http.get(f"nodes/{lab.sim.system_id('smithi004')}/results/current-installation/")
    assert (never.status_code, never.text) == (404, "No ScriptSet matches the given query.")


def test_boot_resources(lab):
    http = lab.http()
    resources = http.get("boot-resources/").json()
    names = sorted({(r["name"], r["architecture"].split("/")[0]) for r in resources})
    assert names == [
        ("centos/centos9-stream", "amd64"),
        ("rhel/9", "amd64"),
        ("rocky/9", "amd64"),
        ("ubuntu/focal", "amd64"),
        ("ubuntu/jammy", "amd64"),
        ("ubuntu/jammy", "arm64"),
        ("ubuntu/noble", "amd64"),
    ]
    jammy = next(r for r in resources if r["name"] == "ubuntu/jammy")
    assert jammy["architecture"] == "amd64/ga-22.04"
    assert "generic" in jammy["subarches"].split(",")
    assert jammy["type"] == "Synced"
    one = http.get(f"boot-resources/{jammy['id']}/").json()
    assert one["name"] == "ubuntu/jammy" and "sets" in one
    assert http.get("boot-resources/", params={"type": "uploaded"}).json() == []
    bad = http.get("boot-resources/", params={"type": "generated"})
    assert bad.status_code == 400
    assert bad.text == (
        "'generated' is not a valid boot resource type. Available types: ['synced', 'uploaded']"
    )
    assert http.get("boot-resources/", params={"op": "is_importing"}).json() is False


def test_config_values(lab):
    http = lab.http()
    series = http.get("maas/", params={"op": "get_config", "name": "default_distro_series"})
    assert (series.text, series.headers["Content-Type"]) == ('"jammy"', "application/json")
    timeout = http.get("maas/", params={"op": "get_config", "name": "node_timeout"})
    assert timeout.json() == 30
    missing = http.get("maas/", params={"op": "get_config"})
    assert (missing.status_code, missing.text) == (400, "No provided name!")
    unknown = http.get("maas/", params={"op": "get_config", "name": "colour"})
    assert unknown.status_code == 400
    assert unknown.json()["colour"][0].startswith("colour is not a valid config setting")


def test_account_tokens_and_users(lab):
    http = lab.http()
    tokens = http.get("account/", params={"op": "list_authorisation_tokens"}).json()
    assert tokens[0]["token"] == lab.api_key
    assert http.get("users/alice/").json()["username"] == "alice"
    assert http.get("users/bob/").status_code == 404


def test_curtin_config_only_in_deployment_states(lab):
    http = lab.http()
    deployed = http.get(f"machines/{lab.sim.system_id('smithi001')}/",
                        params={"op": "get_curtin_config"})  # fmt: skip
    assert deployed.headers["Content-Type"].startswith("text/plain")
    assert "install.log" in deployed.text and "ubuntu/amd64/generic/jammy" in deployed.text
    ready = http.get(f"machines/{lab.sim.system_id('smithi004')}/",
                     params={"op": "get_curtin_config"})  # fmt: skip
    assert (ready.status_code, ready.text) == (
        400,
        "Machine smithi004 is not in a deployment state.",
    )


def test_set_config_needs_an_admin_and_changes_behaviour(lab):
    form = [("name", "enable_disk_erasing_on_release"), ("value", "true")]
    assert lab.http().post("maas/", "set_config", form).status_code == 403
    assert lab.http("admin").post("maas/", "set_config", form).text == "OK"
    value = lab.http().get("maas/", params={"op": "get_config", "name": form[0][1]})
    assert value.json() is True
    system_id = lab.sim.system_id("smithi001")
    released = lab.http().post(f"machines/{system_id}/", "release").json()
    assert released["status_name"] == "Disk erasing"  # erasing forced by the config
