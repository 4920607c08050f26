"""OAuth 1.0 PLAINTEXT verification as MAAS does it, over real HTTP."""

from __future__ import annotations

import time
import uuid
from urllib.parse import quote

import requests


def test_missing_credentials(maas_sim):
    anonymous = maas_sim.http(None)
    whoami = anonymous.get("users/", params={"op": "whoami"})
    assert whoami.status_code == 401
    assert anonymous.get(f"machines/{maas_sim.sim.system_id('smithi001')}/").status_code == 401
    # /machines/ has an anonymous handler: it answers 400, not 401.
    listing = anonymous.get("machines/")
    assert listing.status_code == 400
    assert listing.text == "Unrecognised signature: method=GET op=None"
    allocate = anonymous.post("machines/", "allocate")
    assert allocate.text == "Unrecognised signature: method=POST op=allocate"


def test_valid_header_with_and_without_realm(maas_sim):
    http = maas_sim.http()
    with_realm = http.auth_header()
    without_realm = http.auth_header().replace('OAuth realm="OAuth", ', "OAuth ")
    assert "realm" not in without_realm
    for header in (with_realm, without_realm):
        answer = http.get("users/", params={"op": "whoami"}, headers={"Authorization": header})
        assert answer.status_code == 200, answer.text


def test_unquoted_signature_is_accepted(maas_sim):
    http = maas_sim.http()
    secret = maas_sim.api_key.split(":")[2]
    header = http.auth_header().replace(quote("&" + secret, safe=""), "&" + secret)
    assert "%26" not in header
    answer = http.get("users/", params={"op": "whoami"}, headers={"Authorization": header})
    assert answer.status_code == 200


def _refused(answer: requests.Response, text: str) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.text.startswith("Authorization Error: ")
    assert text in answer.text
    assert answer.headers["WWW-Authenticate"] == 'OAuth realm="OAuth"'


def test_unknown_consumer_and_token(maas_sim):
    ck, tk, ts = maas_sim.api_key.split(":")
    from tests.fixtures_simulator import MaasHttp

    bad_consumer = MaasHttp(maas_sim.api_url, f"nope:{tk}:{ts}")
    _refused(bad_consumer.get("users/", params={"op": "whoami"}), "Invalid API key.")
    bad_token = MaasHttp(maas_sim.api_url, f"{ck}:nope:{ts}")
    _refused(bad_token.get("users/", params={"op": "whoami"}), "Invalid access token: nope")
    bad_secret = MaasHttp(maas_sim.api_url, f"{ck}:{tk}:wrong")
    answer = bad_secret.get("users/", params={"op": "whoami"})
    _refused(answer, "Invalid signature")
    assert ts not in answer.text


def test_stale_timestamp_is_refused_future_is_not(maas_sim):
    http = maas_sim.http()
    stale = http.auth_header(timestamp=int(time.time()) - 301)
    _refused(http.get("users/", params={"op": "whoami"}, headers={"Authorization": stale}),
             "Expired timestamp")  # fmt: skip
    future = http.auth_header(timestamp=int(time.time()) + 3600)
    ok = http.get("users/", params={"op": "whoami"}, headers={"Authorization": future})
    assert ok.status_code == 200


def test_reused_nonce_is_refused_even_after_a_bad_signature(maas_sim):
    http = maas_sim.http()
    header = http.auth_header(nonce="once")
    assert http.get("users/", params={"op": "whoami"}, headers={"Authorization": header}).ok
    again = http.get("users/", params={"op": "whoami"}, headers={"Authorization": header})
    _refused(again, "Nonce already used: once")
    secret = maas_sim.api_key.split(":")[2]
    badly_signed = http.auth_header(nonce="burnt").replace(quote(secret), "wrong")
    _refused(http.get("users/", params={"op": "whoami"}, headers={"Authorization": badly_signed}),
             "Invalid signature")  # fmt: skip
    good = http.auth_header(nonce="burnt")
    _refused(http.get("users/", params={"op": "whoami"}, headers={"Authorization": good}),
             "Nonce already used")  # fmt: skip


def test_non_integer_timestamp_is_a_bad_request(maas_sim):
    http = maas_sim.http()
    header = http.auth_header().replace('oauth_timestamp="', 'oauth_timestamp="x')
    header = header.replace('oauth_token="', 'oauth_tok="')  # incomplete: not an OAuth attempt
    answer = http.get("users/", params={"op": "whoami"}, headers={"Authorization": header})
    assert answer.status_code == 400
    assert "oauth_timestamp has an unexpected type" in answer.text


def test_credentials_in_the_query_string(maas_sim):
    ck, tk, ts = maas_sim.api_key.split(":")
    params = {
        "op": "whoami",
        "oauth_consumer_key": ck,
        "oauth_token": tk,
        "oauth_signature": "&" + ts,
        "oauth_signature_method": "PLAINTEXT",
        "oauth_timestamp": str(int(time.time())),
        "oauth_nonce": uuid.uuid4().hex,
    }
    answer = requests.get(maas_sim.api_url + "users/", params=params, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["username"] == "teuthology"


def test_hmac_sha1_signatures(maas_sim):
    from requests_oauthlib import OAuth1

    ck, tk, ts = maas_sim.api_key.split(":")
    signed = OAuth1(ck, "", tk, ts, signature_method="HMAC-SHA1")
    whoami = requests.get(maas_sim.api_url + "users/", params={"op": "whoami"}, auth=signed,
                          timeout=5)  # fmt: skip
    assert whoami.json()["username"] == "teuthology"
    listed = requests.get(maas_sim.api_url + "machines/", auth=signed, timeout=5,
                          params={"hostname": ["smithi001", "smithi002"]})  # fmt: skip
    assert [m["hostname"] for m in listed.json()] == ["smithi001", "smithi002"]
    # urlencoded form fields are part of what is signed
    allocated = requests.post(maas_sim.api_url + "machines/?op=allocate", auth=signed, timeout=5,
                              data={"name": "smithi003", "comment": "a b&c=d"})  # fmt: skip
    assert allocated.json()["hostname"] == "smithi003"
    wrong = OAuth1(ck, "", tk, "not" + ts, signature_method="HMAC-SHA1")
    _refused(requests.get(maas_sim.api_url + "users/", params={"op": "whoami"}, auth=wrong,
                          timeout=5), "Invalid signature")  # fmt: skip
    plaintext_as_hmac = maas_sim.http().auth_header().replace("PLAINTEXT", "HMAC-SHA1")
    answer = maas_sim.http().get("users/", params={"op": "whoami"},
                                 headers={"Authorization": plaintext_as_hmac})  # fmt: skip
    _refused(answer, "Invalid signature")


def test_each_key_is_its_own_user(maas_sim):
    assert maas_sim.http("admin").get("users/", params={"op": "whoami"}).json()["is_superuser"]
    alice = maas_sim.http("alice").get("users/", params={"op": "whoami"}).json()
    assert (alice["username"], alice["is_superuser"]) == ("alice", False)
    users = maas_sim.http().get("users/").json()
    assert [u["username"] for u in users] == ["admin", "alice", "teuthology"]


def test_anonymous_only_resources_serve_signed_and_unsigned_callers_alike(maas_sim):
    """version/ and describe/ have only an anonymous handler; real MAAS serves them to
    authenticated callers too (python-libmaas reads the version signed)."""
    from requests_oauthlib import OAuth1

    ck, tk, ts = maas_sim.api_key.split(":")
    hmac_signed = OAuth1(ck, "", tk, ts, signature_method="HMAC-SHA1")
    query_signed = OAuth1(ck, "", tk, ts, signature_method="PLAINTEXT", signature_type="query")
    for path in ("version/", "describe/"):
        answers = {
            "unsigned": maas_sim.http(None).get(path),
            "plaintext header": maas_sim.http().get(path),
            "admin key": maas_sim.http("admin").get(path),
            "hmac-sha1": requests.get(maas_sim.api_url + path, auth=hmac_signed, timeout=5),
            "query string": requests.get(maas_sim.api_url + path, auth=query_signed, timeout=5),
        }
        bodies = set()
        for how, answer in answers.items():
            assert answer.status_code == 200, (path, how, answer.text)
            assert "Unrecognised signature" not in answer.text
            bodies.add(answer.text)
        assert len(bodies) == 1, f"{path} answers differ between signed and unsigned callers"
    version = maas_sim.http().get("version/").json()
    assert version["version"] == "3.5.4" and "authenticate-api" in version["capabilities"]
    describe = maas_sim.http().get("describe/")
    assert describe.headers["Content-Type"] == "application/json"
    assert any(r["name"] == "VersionHandler" for r in describe.json()["resources"])
