"""The simulator speaks MAAS's wire format: URLs, op dispatch, bodies, headers, describe."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest
import requests

from teuthology_maas.simulator.describe import API_HASH


def test_paths_without_trailing_slash_are_unknown_endpoints(maas_sim):
    http = maas_sim.http()
    for method in ("GET", "POST"):
        answer = http.request(method, "machines")
        assert answer.status_code == 404
        assert answer.text == "Unknown API endpoint: /MAAS/api/2.0/machines."
        assert answer.headers["Content-Type"].startswith("text/plain")


def test_unknown_resource_and_api_1_0(maas_sim):
    http = maas_sim.http()
    assert http.get("no-such-thing/").text == "Unknown API endpoint: /MAAS/api/2.0/no-such-thing/."
    gone = requests.get(maas_sim.url + "api/1.0/machines/", timeout=5)
    assert gone.status_code == 410
    assert gone.text == "The 1.0 API is no longer available. Please use API version 2.0."
    version = requests.get(maas_sim.url + "api/version/", timeout=5)
    assert (version.status_code, version.text) == (200, "2.0")


def test_repeated_slashes_are_collapsed(maas_sim):
    answer = maas_sim.http().get("/machines//")
    assert answer.status_code == 200
    assert len(answer.json()) == 6


def test_op_from_query_body_or_path_suffix(maas_sim):
    http = maas_sim.http()
    from_query = http.post("machines/", "allocate", [("name", "smithi001")])
    from_body = http.post("machines/", None, [("op", "allocate"), ("name", "smithi002")])
    from_path = http.post("machines/op-allocate", None, [("name", "smithi003")])
    assert [a.status_code for a in (from_query, from_body, from_path)] == [200, 200, 200]
    assert [a.json()["hostname"] for a in (from_query, from_body, from_path)] == [
        "smithi001",
        "smithi002",
        "smithi003",
    ]
    whoami = http.get("users/op-whoami")
    assert whoami.json()["username"] == "teuthology"


def test_path_op_with_trailing_slash_is_a_system_id(maas_sim):
    http = maas_sim.http()
    assert http.post("machines/op-allocate/").text == "Unrecognised signature: method=POST op=None"
    missing = http.get("machines/op-x/")
    assert (missing.status_code, missing.text) == (404, "No Machine matches the given query.")


def test_query_op_wins_over_path_op(maas_sim):
    answer = maas_sim.http().get("users/op-whoami", params={"op": "nosuchop"})
    assert answer.text == "Unrecognised signature: method=GET op=nosuchop"


def test_op_with_the_wrong_method_and_unknown_methods(maas_sim):
    http = maas_sim.http()
    wrong = http.get("machines/", params={"op": "allocate"})
    assert wrong.status_code == 400
    assert wrong.text == "Unrecognised signature: method=GET op=allocate"
    system_id = maas_sim.sim.system_id("smithi001")
    crud = http.post(f"machines/{system_id}/")
    assert crud.text == "Unrecognised signature: method=POST op=None"
    not_exported = http.request("PUT", "machines/")
    assert not_exported.status_code == 405
    assert set(not_exported.headers["Allow"].split(", ")) == {"GET", "POST"}
    assert http.request("DELETE", "events/").status_code == 405


def test_post_ops_ignore_query_parameters(maas_sim):
    http = maas_sim.http()
    answer = http.request("POST", "machines/", params={"op": "allocate", "name": "smithi004"})
    # The name in the query is ignored: the cheapest machine is allocated.
    assert answer.json()["hostname"] == "smithi001"


def test_multipart_with_base64_parts_and_quoted_boundary(maas_sim):
    http = maas_sim.http()
    body = (
        b"--===============1234567890==\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"MIME-Version: 1.0\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: form-data; name="name"\r\n\r\n'
        b"c21pdGhpMDA1\r\n"
        b"\r\n--===============1234567890==--\r\n"
    )
    answer = http.request(
        "POST",
        "machines/",
        params={"op": "allocate"},
        data=body,
        headers={
            "Content-Type": 'multipart/form-data; boundary="===============1234567890=="',
            "MIME-Version": "1.0",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["hostname"] == "smithi005"


def test_file_parts_are_invisible_to_handlers(maas_sim):
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="name"; filename="name.txt"\r\n\r\n'
        b"smithi006\r\n--XyZ--\r\n"
    )
    answer = maas_sim.http().request(
        "POST", "machines/", params={"op": "allocate"}, data=body,
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )  # fmt: skip
    assert answer.json()["hostname"] == "smithi001"


def test_empty_multipart_no_body_and_no_content_type(maas_sim):
    http = maas_sim.http()
    empty_multipart = http.request(
        "POST", "machines/", params={"op": "allocate"}, data=b"--B\r\n\r\n--B--",
        headers={"Content-Type": "multipart/form-data; boundary=B"},
    )  # fmt: skip
    assert empty_multipart.status_code == 200, empty_multipart.text
    no_body = http.request("POST", "machines/", params={"op": "allocate"})
    assert no_body.status_code == 200, no_body.text
    assert "Content-Type" not in no_body.request.headers
    assert [empty_multipart.json()["hostname"], no_body.json()["hostname"]] == [
        "smithi001",
        "smithi002",
    ]


def test_urlencoded_bodies(maas_sim):
    answer = maas_sim.http().request(
        "POST", "machines/", params={"op": "allocate"}, data={"name": "smithi003", "comment": "x"}
    )
    assert answer.status_code == 200
    assert answer.json()["hostname"] == "smithi003"


def test_json_bodies_behave_as_in_maas(maas_sim):
    http = maas_sim.http()
    crash = http.request("POST", "machines/", params={"op": "allocate"}, data=b'{"name": "x"}',
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert crash.status_code == 500
    system_id = maas_sim.sim.system_id("smithi002")
    http.post("machines/", "allocate", [("name", "smithi002")])
    ignored = http.request("POST", f"machines/{system_id}/", params={"op": "deploy"},
                           data=b'{"distro_series": "focal"}',
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert ignored.status_code == 200
    assert ignored.json()["distro_series"] == "jammy"  # the default: the JSON body was ignored


def test_responses_are_pretty_json_with_api_hash(maas_sim):
    answer = maas_sim.http().get("users/", params={"op": "whoami"})
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.headers["X-MAAS-API-Hash"] == API_HASH
    assert answer.headers["Vary"] == "Authorization"
    assert answer.text.startswith("{\n    ")
    assert answer.json() == {
        "username": "teuthology",
        "email": "teuthology@example.com",
        "is_local": True,
        "is_superuser": False,
        "resource_uri": "/MAAS/api/2.0/users/teuthology/",
    }


def test_describe_is_anonymous_and_follows_the_host(maas_sim):
    port = urlsplit(maas_sim.url).port
    answer = requests.get(
        maas_sim.api_url + "describe/", headers={"Host": f"maas.example:{port}"}, timeout=5
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"  # maascli compares exactly
    assert "X-MAAS-API-Hash" not in answer.headers
    document = answer.json()
    assert set(document) == {"doc", "resources", "handlers", "hash"}
    assert document["hash"] == API_HASH
    names = [r["name"] for r in document["resources"]]
    assert names == sorted(names)
    by_name = {r["name"]: r for r in document["resources"]}
    machine = by_name["MachineHandler"]["auth"]
    assert machine["uri"] == f"http://maas.example:{port}/MAAS/api/2.0/machines/{{system_id}}/"
    assert machine["path"] == "/MAAS/api/2.0/machines/{system_id}/"
    assert machine["params"] == ["system_id"]
    actions = {a["name"]: a for a in machine["actions"]}
    assert actions["deploy"]["op"] == "deploy" and actions["deploy"]["method"] == "POST"
    assert ":param user_data:" in actions["deploy"]["doc"]
    assert actions["read"] == {**actions["read"], "op": None, "restful": True, "method": "GET"}
    assert by_name["MachinesHandler"]["anon"]["name"] == "AnonMachinesHandler"
    assert by_name["VersionHandler"]["auth"] is None
    assert len(document["handlers"]) == sum(
        (r["anon"] is not None) + (r["auth"] is not None) for r in document["resources"]
    )


def test_version_document(maas_sim):
    answer = requests.get(maas_sim.api_url + "version/", timeout=5)
    document = answer.json()
    assert "authenticate-api" in document["capabilities"]
    assert (document["version"], document["subversion"]) == ("3.5.4", "")


def test_lowercase_header_names_are_accepted(maas_sim):
    http = maas_sim.http()
    host, port = urlsplit(maas_sim.url).hostname, urlsplit(maas_sim.url).port
    request = (
        f"GET /MAAS/api/2.0/users/?op=whoami HTTP/1.1\r\nhost: {host}:{port}\r\n"
        f"authorization: {http.auth_header()}\r\nconnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(request)
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["username"] == "teuthology"


def test_werkzeug_alone_would_not_decode_base64_parts():
    # Why forms.py parses multipart with the email package: Werkzeug's form parser ignores
    # Content-Transfer-Encoding and would hand handlers the base64 text.
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from tests.fixtures_simulator import maas_multipart
    from teuthology_maas.simulator.forms import parse_body

    body, content_type = maas_multipart([("distro_series", "jammy")])
    environ = EnvironBuilder(method="POST", data=body, content_type=content_type).get_environ()
    assert Request(environ).form.get("distro_series") != "jammy"
    assert parse_body(content_type, body).form.get("distro_series") == "jammy"


def test_quoted_printable_parts(maas_sim):
    from tests.fixtures_simulator import maas_multipart

    body, content_type = maas_multipart([("name", "smithi002")])
    body = body.replace(
        b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable"
    )
    body = body.replace(b"c21pdGhpMDAy\r\n\r\n", b"smithi=30=302\r\n")
    answer = maas_sim.http().request("POST", "machines/", params={"op": "allocate"}, data=body,
                                     headers={"Content-Type": content_type})  # fmt: skip
    assert answer.json()["hostname"] == "smithi002"


def test_request_log_records_each_call(maas_sim):
    http = maas_sim.http()
    system_id = maas_sim.sim.system_id("smithi001")
    http.post(f"machines/{system_id}/", "deploy")
    http.get("machines/nosuch/")
    maas_sim.http(None).get("users/", params={"op": "whoami"})
    records = maas_sim.sim.request_log[-3:]
    assert [(r.method, r.path, r.op, r.user, r.status, r.system_id) for r in records] == [
        ("POST", f"/MAAS/api/2.0/machines/{system_id}/", "deploy", "teuthology", 200, system_id),
        ("GET", "/MAAS/api/2.0/machines/nosuch/", None, "teuthology", 404, "nosuch"),
        ("GET", "/MAAS/api/2.0/users/", "whoami", None, 401, None),
    ]
    assert all(r.time > 0 and r.duration >= 0 and r.fault is None for r in records)
    assert [r.op for r in maas_sim.sim.requests(method="POST")] == ["deploy"]


def test_request_log_records_parameters_but_never_credentials_or_user_data(maas_sim):
    import base64
    import hashlib
    import time
    import uuid

    sim = maas_sim.sim
    http = maas_sim.http()
    system_id = sim.system_id("smithi001")
    secret_script = b"#cloud-config\npassword: hunter2-very-secret\n"
    user_data = base64.b64encode(secret_script).decode()
    fields = [("distro_series", "jammy"), ("user_data", user_data), ("comment", "job 7")]
    http.post(f"machines/{system_id}/", "deploy", fields)
    http.get("machines/", params=[("hostname", "smithi001"), ("hostname", "smithi002")])
    ck, tk, ts = maas_sim.api_key.split(":")
    signed_in_query = {
        "op": "whoami", "oauth_consumer_key": ck, "oauth_token": tk,
        "oauth_signature": "&" + ts, "oauth_signature_method": "PLAINTEXT",
        "oauth_timestamp": str(int(time.time())), "oauth_nonce": uuid.uuid4().hex,
    }  # fmt: skip
    requests.get(maas_sim.api_url + "users/", params=signed_in_query, timeout=5)
    requests.post(maas_sim.api_url + f"machines/{sim.system_id('smithi002')}/?op=deploy",
                  json={"user_data": user_data, "distro_series": "noble"},
                  headers={"Authorization": http.auth_header()}, timeout=5)  # fmt: skip
    deploy, listing, whoami, json_deploy = sim.request_log[-4:]

    summary = f"<{len(user_data)} bytes, sha256 {hashlib.sha256(user_data.encode()).hexdigest()}>"
    assert deploy.params == (
        ("op", "deploy"),
        ("distro_series", "jammy"),
        ("user_data", summary),
        ("comment", "job 7"),
    )
    assert deploy.param("comment") == "job 7" and deploy.param("erase") is None
    assert listing.param_list("hostname") == ["smithi001", "smithi002"]
    assert whoami.status == 200 and whoami.params == (("op", "whoami"),)
    assert dict(json_deploy.params) == {"op": "deploy", "user_data": summary,
                                        "distro_series": "noble"}  # fmt: skip
    logged = repr(sim.request_log)
    for secret in (user_data, "hunter2", ts, tk):
        assert secret not in logged


def test_request_log_records_release_flags_and_dropped_connections(maas_sim):
    sim = maas_sim.sim
    http = maas_sim.http()
    system_id = sim.system_id("smithi001")
    http.post(f"machines/{system_id}/", "deploy")
    sim.faults.add("drop", when="after", op="release", times=1)
    flags = [("erase", "true"), ("quick_erase", "true"), ("secure_erase", "false")]
    with pytest.raises(requests.ConnectionError):
        http.post(f"machines/{system_id}/", "release", flags)
    dropped = sim.requests(op="release")[-1]
    assert (dropped.status, dropped.fault, dropped.system_id) == (None, "drop", system_id)
    assert dropped.param("erase") == "true" and dropped.param("secure_erase") == "false"


def test_delete_with_a_multipart_body_keeps_the_connection_usable(maas_sim):
    # python-libmaas sends an (empty) multipart body with DELETE, on a kept-alive connection.
    admin = maas_sim.http("admin")
    system_id = maas_sim.sim.system_id("smithi006")
    deleted = admin.request("DELETE", f"machines/{system_id}/", fields=[("force", "true")])
    assert deleted.status_code == 204
    after = admin.get("machines/")
    assert after.status_code == 200
    assert [m["hostname"] for m in after.json()][-1] == "smithi005"
