"""MaasClient request shapes, pinned with `responses`: auth header, op placement, form fields,
user_data encoding, list parameters, paths."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import quote

import pytest
import responses
from _maas_wire import API_KEY, ROOT, SECRET, form, oauth_fields, path, query

from teuthology_maas.maas.client import MaasClient
from teuthology_maas.models import NodeStatus

MACHINE = {"system_id": "abc123", "hostname": "smithi001", "status": 9, "status_name": "Deploying"}


@pytest.fixture
def maas():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client():
    with MaasClient("http://maas.test:5240/MAAS/", API_KEY, timeout=7) as c:
        yield c


def reply(maas, method, resource, body=MACHINE, status=200, **kwargs):
    maas.add(method, ROOT + resource, json=body, status=status, **kwargs)


def header_text(request, name="Authorization") -> str:
    value = request.headers[name]
    return value.decode("ascii") if isinstance(value, bytes) else value


def only_request(maas):
    assert len(maas.calls) == 1, [c.request.url for c in maas.calls]
    return maas.calls[0].request


# ---- authentication ----------------------------------------------------------------------


def test_authorization_header_is_oauth1_plaintext_with_ampersand_secret(maas, client):
    reply(maas, "GET", "users/", {"username": "teuthology"})
    before = int(time.time())
    client.whoami()
    request = only_request(maas)
    fields = oauth_fields(request.headers["Authorization"])
    assert set(fields) == {
        "oauth_nonce",
        "oauth_timestamp",
        "oauth_version",
        "oauth_signature_method",
        "oauth_consumer_key",
        "oauth_token",
        "oauth_signature",
    }
    assert fields["oauth_signature_method"] == "PLAINTEXT"
    assert fields["oauth_version"] == "1.0"
    assert fields["oauth_consumer_key"] == "ConsumerKeyAAAAAAA"
    assert fields["oauth_token"] == "TokenKeyBBBBBBBBBB"
    assert fields["oauth_signature"] == "&" + SECRET
    # On the wire the signature is percent-encoded: %26 then the secret.
    assert f'oauth_signature="%26{SECRET}"' in header_text(request)
    assert int(fields["oauth_timestamp"]) >= before
    assert fields["oauth_nonce"]


def test_every_request_gets_a_fresh_nonce(maas, client):
    reply(maas, "GET", "users/", {"username": "teuthology"})
    client.whoami()
    client.whoami()
    nonces = {oauth_fields(c.request.headers["Authorization"])["oauth_nonce"] for c in maas.calls}
    assert len(nonces) == 2


def test_signature_percent_encodes_a_secret_with_reserved_characters(maas):
    reply(maas, "GET", "users/", {"username": "u"})
    with MaasClient(ROOT, "ck:tk:a+b/c=d") as c:
        c.whoami()
    header = header_text(maas.calls[0].request)
    # signature = encode(consumer secret "") & encode(token secret); the header value is
    # that string percent-encoded once more.
    assert oauth_fields(header)["oauth_signature"] == "&" + quote("a+b/c=d", safe="~")
    assert 'oauth_signature="%26a%252Bb%252Fc%253Dd"' in header


def test_whoami_records_the_username(maas, client):
    reply(maas, "GET", "users/", {"username": "teuthology", "is_superuser": False})
    assert client.username is None
    assert client.whoami()["is_superuser"] is False
    assert client.username == "teuthology"
    request = only_request(maas)
    assert path(request.url) == "/MAAS/api/2.0/users/"
    assert query(request.url) == [("op", "whoami")]


# ---- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "api_url",
    [
        "http://maas.test:5240/MAAS",
        "http://maas.test:5240/MAAS/",
        "http://maas.test:5240/MAAS/api/2.0",
        "http://maas.test:5240/MAAS/api/2.0/",
        "http://maas.test:5240/MAAS/api/2.0//",
    ],
)
def test_request_paths_never_hold_double_slashes(maas, api_url):
    reply(maas, "GET", "machines/abc123/")
    reply(maas, "GET", "machines/", [])
    with MaasClient(api_url, API_KEY) as c:
        assert c.base_url == ROOT
        c.get_machine("abc123")
        c.list_machines()
    paths = [path(call.request.url) for call in maas.calls]
    assert paths == ["/MAAS/api/2.0/machines/abc123/", "/MAAS/api/2.0/machines/"]


def test_every_resource_path_ends_in_a_slash(maas, client):
    for method, resource, body in [
        ("GET", "users/", {"username": "u"}),
        ("GET", "version/", {"version": "3.5.4"}),
        ("GET", "maas/", "jammy"),
        ("GET", "machines/", []),
        ("GET", "machines/abc123/", MACHINE),
        ("POST", "machines/", MACHINE),
        ("POST", "machines/abc123/", MACHINE),
        ("GET", "boot-resources/", []),
        ("GET", "events/", {"events": []}),
        ("GET", "nodes/abc123/results/current-installation/", {"results": []}),
    ]:
        reply(maas, method, resource, body)
    client.whoami()
    client.version()
    client.get_config("default_distro_series")
    client.list_machines()
    client.get_machine("abc123")
    client.allocate()
    for op in ("abort", "lock", "unlock", "mark_broken", "mark_fixed"):
        getattr(client, op)("abc123")
    client.boot_resources()
    client.events()
    client.installation_output("abc123")
    for call in maas.calls:
        assert path(call.request.url).endswith("/"), call.request.url
        assert "//" not in path(call.request.url)


def test_system_id_is_quoted_in_the_path(maas, client):
    maas.add("GET", ROOT + "machines/a%2Fb/", json=MACHINE)
    client.get_machine("a/b")
    assert path(only_request(maas).url) == "/MAAS/api/2.0/machines/a%2Fb/"
    with pytest.raises(ValueError, match="system_id"):
        client.get_machine("")


# ---- GET parameters ----------------------------------------------------------------------


def test_list_machines_filters_go_in_the_query_with_repeated_keys(maas, client):
    reply(maas, "GET", "machines/", [MACHINE])
    machines = client.list_machines(
        id=["abc123", "def456"],
        hostname="smithi001",
        agent_name="teuthology-maas",
        owner="teuthology",
        pool="smithi",
        zone="default",
        tags=["smithi", "nvme"],
        status=[NodeStatus.READY, "deployed"],
    )
    assert [m.system_id for m in machines] == ["abc123"]
    request = only_request(maas)
    assert request.body is None
    assert query(request.url) == [
        ("id", "abc123"),
        ("id", "def456"),
        ("hostname", "smithi001"),
        ("agent_name", "teuthology-maas"),
        ("owner", "teuthology"),
        ("pool", "smithi"),
        ("zone", "default"),
        ("tags", "smithi"),
        ("tags", "nvme"),
        ("status", "ready"),
        ("status", "deployed"),
    ]


def test_list_machines_without_filters_sends_no_query(maas, client):
    reply(maas, "GET", "machines/", [])
    assert client.list_machines() == []
    assert query(only_request(maas).url) == []


def test_get_config_returns_the_json_value(maas, client):
    reply(maas, "GET", "maas/", 30)
    assert client.get_config("node_timeout") == 30
    assert query(only_request(maas).url) == [("op", "get_config"), ("name", "node_timeout")]


def test_events_query(maas, client):
    event = {
        "id": 7,
        "node": "abc123",
        "hostname": "smithi001",
        "level": "ERROR",
        "created": "Sat, 21 Nov. 2026 05:00:00",
        "type": "Marking node failed",
        "description": "Installation failed",
        "username": "teuthology",
    }
    reply(maas, "GET", "events/", {"count": 1, "events": [event], "next_uri": "", "prev_uri": None})
    events = client.events(id="abc123", level="debug", limit=50, after=3)
    assert [(e.id, e.type, e.node) for e in events] == [(7, "Marking node failed", "abc123")]
    assert query(only_request(maas).url) == [
        ("op", "query"),
        ("id", "abc123"),
        ("level", "DEBUG"),
        ("limit", "50"),
        ("after", "3"),
    ]


def test_boot_resources(maas, client):
    reply(
        maas,
        "GET",
        "boot-resources/",
        [
            {
                "id": 1,
                "type": "Synced",
                "name": "ubuntu/jammy",
                "architecture": "amd64/ga-22.04",
                "subarches": "generic,ga-22.04",
            }
        ],
    )
    (resource,) = client.boot_resources(type="synced")
    assert resource.name == "ubuntu/jammy" and resource.serves("amd64/generic")
    assert query(only_request(maas).url) == [("type", "synced")]


def test_query_power_state_is_a_get_op_with_a_longer_timeout(maas, client):
    reply(maas, "GET", "machines/abc123/", {"state": "on"})
    assert client.query_power_state("abc123") == "on"
    request = only_request(maas)
    assert query(request.url) == [("op", "query_power_state")]
    assert min(maas.calls[0].request.req_kwargs["timeout"]) >= 60  # (connect, read)


def test_installation_output_prefers_the_curtin_log(maas, client):
    def b64(text):
        return base64.b64encode(text.encode()).decode()

    reply(
        maas,
        "GET",
        "nodes/abc123/results/current-installation/",
        {
            "results": [
                {"name": "other", "output": b64("x")},
                {"name": "/tmp/install.log", "output": b64("curtin: boom\n")},
            ]
        },
    )
    assert client.installation_output("abc123") == "curtin: boom\n"
    assert query(only_request(maas).url) == [("include_output", "1")]


def test_installation_output_missing_is_none(maas, client):
    maas.add(
        "GET",
        ROOT + "nodes/abc123/results/current-installation/",
        body="Not Found",
        status=404,
    )
    assert client.installation_output("abc123") is None


# ---- POST parameters -----------------------------------------------------------------------


def test_allocate_sends_op_in_query_and_constraints_as_form_fields(maas, client):
    reply(maas, "POST", "machines/", {**MACHINE, "status": 10})
    machine = client.allocate(
        name="smithi001",
        tags=["smithi", "nvme"],
        not_tags="broken",
        pool="smithi",
        zone="default",
        arch="amd64",
        cpu_count=8,
        mem=16384,
        agent_name="teuthology-maas",
        comment="teuthology job 42",
    )
    assert machine.status is NodeStatus.ALLOCATED
    request = only_request(maas)
    assert query(request.url) == [("op", "allocate")]
    assert form(request) == [
        ("name", "smithi001"),
        ("tags", "smithi"),
        ("tags", "nvme"),
        ("not_tags", "broken"),
        ("pool", "smithi"),
        ("zone", "default"),
        ("arch", "amd64"),
        ("cpu_count", "8"),
        ("mem", "16384"),
        ("agent_name", "teuthology-maas"),
        ("comment", "teuthology job 42"),
    ]


def test_post_bodies_are_multipart_never_json_and_op_never_in_the_body(maas, client):
    reply(maas, "POST", "machines/abc123/")
    client.deploy("abc123", distro_series="ubuntu/jammy")
    request = only_request(maas)
    assert header_text(request, "Content-Type").startswith("multipart/form-data; boundary=")
    with pytest.raises(ValueError):
        json.loads(request.body)
    assert "op" not in dict(form(request))
    assert query(request.url) == [("op", "deploy")]


def test_deploy_fields_and_base64_user_data(maas, client):
    reply(maas, "POST", "machines/abc123/")
    user_data = "#cloud-config\n" + "\n".join(f"# line {i} " + "x" * 60 for i in range(20))
    machine = client.deploy(
        "abc123",
        distro_series="ubuntu/jammy",
        osystem="ubuntu",
        hwe_kernel="ga-22.04",
        user_data=user_data,
        agent_name="teuthology-maas",
        comment="job 42",
    )
    assert machine.status is NodeStatus.DEPLOYING
    fields = form(only_request(maas))
    assert [name for name, _ in fields] == [
        "distro_series",
        "osystem",
        "hwe_kernel",
        "user_data",
        "agent_name",
        "comment",
    ]
    values = dict(fields)
    assert values["distro_series"] == "ubuntu/jammy"
    encoded = values["user_data"]
    assert "\n" not in encoded and len(encoded) > 76  # standard base64, one line
    assert base64.b64decode(encoded, validate=True).decode() == user_data
    assert base64.b64encode(base64.b64decode(encoded)).decode() == encoded  # canonical


def test_deploy_user_data_bytes_are_encoded_verbatim(maas, client):
    reply(maas, "POST", "machines/abc123/")
    raw = b"#!/bin/sh\n\xff\x00binary\n"
    client.deploy("abc123", distro_series="jammy", user_data=raw)
    values = dict(form(only_request(maas)))
    assert base64.b64decode(values["user_data"]) == raw
    assert set(values) == {"distro_series", "user_data"}  # None parameters are left out


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {"erase": "false", "secure_erase": "false", "quick_erase": "false", "force": "false"}),
        (
            {"erase": True, "quick_erase": True},
            {"erase": "true", "secure_erase": "false", "quick_erase": "true", "force": "false"},
        ),
        (
            {"erase": True, "secure_erase": True, "force": True},
            {"erase": "true", "secure_erase": "true", "quick_erase": "false", "force": "true"},
        ),
    ],
)
def test_release_booleans_are_true_or_false_never_0_or_1(maas, client, kwargs, expected):
    reply(maas, "POST", "machines/abc123/", {**MACHINE, "status": 12})
    client.release("abc123", **kwargs)
    request = only_request(maas)
    assert query(request.url) == [("op", "release")]
    assert dict(form(request)) == expected


def test_release_scripts_and_their_parameters(maas, client):
    reply(maas, "POST", "machines/abc123/", {**MACHINE, "status": 12})
    client.release(
        "abc123",
        erase=True,
        comment="done",
        scripts=["wipe-disks", "ceph-wipe"],
        script_params={"ceph-wipe_offsets_gib": "0,1,10"},
    )
    fields = form(only_request(maas))
    assert ("scripts", "wipe-disks,ceph-wipe") in fields
    assert ("ceph-wipe_offsets_gib", "0,1,10") in fields
    assert ("comment", "done") in fields


@pytest.mark.parametrize("op", ["abort", "lock", "unlock", "mark_broken", "mark_fixed"])
def test_simple_ops_with_and_without_comment(maas, client, op):
    reply(maas, "POST", "machines/abc123/")
    getattr(client, op)("abc123", comment="why")
    getattr(client, op)("abc123")
    with_comment, without = (c.request for c in maas.calls)
    assert query(with_comment.url) == [("op", op)] == query(without.url)
    assert form(with_comment) == [("comment", "why")]
    assert not without.body  # nothing to send: no body at all, like MAAS's own CLI


def test_power_on_and_off(maas, client):
    reply(maas, "POST", "machines/abc123/")
    assert client.power_on("abc123").system_id == "abc123"
    maas.replace("POST", ROOT + "machines/abc123/", body="null", content_type="application/json")
    assert client.power_off("abc123", stop_mode="soft", comment="c") is None
    on, off = (c.request for c in maas.calls)
    assert query(on.url) == [("op", "power_on")]
    assert query(off.url) == [("op", "power_off")]
    assert form(off) == [("stop_mode", "soft"), ("comment", "c")]


def test_set_owner_data_sends_each_key_as_a_field(maas, client):
    reply(maas, "POST", "machines/abc123/", {**MACHINE, "owner_data": {"job": "42"}})
    machine = client.set_owner_data("abc123", {"job": "42", "stale": ""})
    assert machine.owner_data == {"job": "42"}
    request = only_request(maas)
    assert query(request.url) == [("op", "set_owner_data")]
    assert form(request) == [("job", "42"), ("stale", "")]


def test_every_call_carries_the_configured_timeout(maas, client):
    reply(maas, "GET", "machines/abc123/")
    reply(maas, "POST", "machines/abc123/")
    client.get_machine("abc123")
    client.abort("abc123")
    assert [c.request.req_kwargs["timeout"] for c in maas.calls] == [(7, 7), (7, 7)]


def test_from_config_uses_the_config_values(maas):
    from teuthology_maas.config import MaasConfig

    cfg = MaasConfig.from_mapping(
        {"api_url": "http://maas.test:5240/MAAS", "api_key": API_KEY, "http_timeout": 3}
    )
    reply(maas, "GET", "machines/abc123/")
    with MaasClient.from_config(cfg) as c:
        c.get_machine("abc123")
        assert c.base_url == ROOT
        assert SECRET not in repr(c)
    assert maas.calls[0].request.req_kwargs["timeout"] == (3, 3)  # (connect, read)


def test_pool_is_sized_for_many_nodes():
    with MaasClient(ROOT, API_KEY, pool_size=200) as c:
        adapter = c.session.get_adapter(ROOT)
        assert adapter._pool_maxsize == 200


def test_version_is_asked_anonymously(maas, client):
    reply(maas, "GET", "version/", {"version": "3.5.4", "subversion": "", "capabilities": []})
    assert client.version()["version"] == "3.5.4"
    request = only_request(maas)
    assert "Authorization" not in request.headers
    assert path(request.url) == "/MAAS/api/2.0/version/"
