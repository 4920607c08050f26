"""OAuth 1.0 verification the way MAAS (through django-piston) does it.

Clients sign with PLAINTEXT: `oauth_signature` is `&` + the token secret (the consumer secret
is always empty). HMAC-SHA1 is accepted too, computed over the URL the request reached. The six
oauth parameters may come from the Authorization header, the query string or a form body; the
first complete source is used. Timestamps older than 300 s and reused nonces are refused with
401, exactly like the region.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from teuthology_maas.simulator.inventory import UserSpec

OAUTH_PARAMS: tuple[str, ...] = (
    "oauth_consumer_key",
    "oauth_token",
    "oauth_signature",
    "oauth_signature_method",
    "oauth_timestamp",
    "oauth_nonce",
)
TIMESTAMP_WINDOW = 300.0
_WWW_AUTHENTICATE = {"WWW-Authenticate": 'OAuth realm="OAuth"'}


@dataclass(frozen=True)
class SignedRequest:
    """What an HMAC-SHA1 signature covers: method, URL as reached, query and urlencoded form."""

    method: str
    url: str
    query: Sequence[tuple[str, str]]
    form: Sequence[tuple[str, str]]


@dataclass
class AuthFailure(Exception):
    """The request must be answered with `status` and `body` (never naming the secret)."""

    status: int
    body: str
    headers: Mapping[str, str]

    def __str__(self) -> str:
        return f"{self.status}: {self.body}"


def parse_authorization_header(value: str | None) -> dict[str, str]:
    """The oauth_* parameters of an `OAuth k="v", ...` header, each URL-unquoted once."""
    if not value or not value.strip().startswith("OAuth"):
        return {}
    params: dict[str, str] = {}
    for piece in value.strip()[len("OAuth") :].split(","):
        # piston's splitter skips any fragment mentioning the realm.
        if "realm" in piece or "=" not in piece:
            continue
        key, _, raw = piece.strip().partition("=")
        params[key.strip()] = unquote(raw.strip().strip('"'))
    return params


def _single_values(source: Mapping[str, list[str]]) -> dict[str, str]:
    return {k: v[-1] for k, v in source.items() if k.startswith("oauth_") and v}


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


class OAuthVerifier:
    """Maps a signed request to its user; raises `AuthFailure` for a bad signature."""

    def __init__(
        self,
        users: Iterable[UserSpec],
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._by_consumer: dict[str, list[UserSpec]] = {}
        for user in users:
            consumer_key = user.api_key.split(":")[0]
            self._by_consumer.setdefault(consumer_key, []).append(user)
        self._wall_clock = wall_clock
        self._nonces: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def add_user(self, user: UserSpec) -> None:
        with self._lock:
            self._by_consumer.setdefault(user.api_key.split(":")[0], []).append(user)

    def authenticate(
        self,
        header: str | None,
        query: Mapping[str, list[str]],
        form: Mapping[str, list[str]],
        *,
        signed: SignedRequest | None = None,
    ) -> UserSpec | None:
        """The authenticated user, None when the request carries no complete credentials.
        `signed` describes the request for HMAC-SHA1 signatures."""
        sources = [parse_authorization_header(header), _single_values(query), _single_values(form)]
        complete = next((s for s in sources if all(s.get(p) for p in OAUTH_PARAMS)), None)
        if complete is None:
            if any("oauth_timestamp" in s and not _is_int(s["oauth_timestamp"]) for s in sources):
                raise AuthFailure(
                    400,
                    "'Bad Request: the following problems were found among the auth params: "
                    "oauth_timestamp has an unexpected type'",
                    {},
                )
            return None
        return self._verify(complete, signed)

    def _verify(self, params: Mapping[str, str], signed: SignedRequest | None) -> UserSpec:
        def refuse(message: str) -> AuthFailure:
            return AuthFailure(401, f"Authorization Error: {message}", _WWW_AUTHENTICATE)

        version = params.get("oauth_version")
        if version is not None and version != "1.0":
            raise refuse(f"'OAuth version {version} not supported.'")
        candidates = self._by_consumer.get(params["oauth_consumer_key"])
        if not candidates:
            raise refuse("Invalid API key.")
        token_key = params["oauth_token"]
        user = next((u for u in candidates if u.api_key.split(":")[1] == token_key), None)
        if user is None:
            raise refuse(f"'Invalid access token: {token_key}'")
        if not _is_int(params["oauth_timestamp"]):
            raise refuse("'Invalid timestamp.'")
        now = self._wall_clock()
        timestamp = int(params["oauth_timestamp"])
        if now - timestamp > TIMESTAMP_WINDOW:
            raise refuse(
                f"'Expired timestamp: given {timestamp} and now {int(now)} has a greater "
                f"difference than threshold {int(TIMESTAMP_WINDOW)}'"
            )
        nonce_key = (params["oauth_consumer_key"], token_key, params["oauth_nonce"])
        with self._lock:
            self._forget_old_nonces(now)
            if nonce_key in self._nonces:
                raise refuse(f"'Nonce already used: {params['oauth_nonce']}'")
            # Recorded before the signature check: a badly signed request burns its nonce.
            self._nonces[nonce_key] = now
        method = params["oauth_signature_method"]
        if method not in ("PLAINTEXT", "HMAC-SHA1"):
            raise refuse(
                f"'Signature method {method} not supported try one of the following: "
                "HMAC-SHA1, PLAINTEXT'"
            )
        secret = user.api_key.split(":")[2]
        if method == "HMAC-SHA1":
            expected = _hmac_sha1(params, signed, secret) if signed is not None else ""
        else:
            expected = "&" + secret
        if not expected or not hmac.compare_digest(
            params["oauth_signature"].encode(), expected.encode()
        ):
            raise refuse("'Invalid signature.'")
        return user

    def _forget_old_nonces(self, now: float) -> None:
        if len(self._nonces) < 4096:
            return
        horizon = now - 2 * TIMESTAMP_WINDOW
        for key in [k for k, seen in self._nonces.items() if seen < horizon]:
            del self._nonces[key]


def _hmac_sha1(params: Mapping[str, str], signed: SignedRequest, token_secret: str) -> str:
    """The HMAC-SHA1 signature (RFC 5849 section 3.4.2) the client should have sent."""
    oauth = [(k, v) for k, v in params.items() if k.startswith("oauth_") and k != "oauth_signature"]
    others = [(k, v) for k, v in (*signed.query, *signed.form) if not k.startswith("oauth_")]
    normalized = oauth_signature.normalize_parameters([*others, *oauth])
    base = oauth_signature.signature_base_string(
        signed.method.upper(), oauth_signature.base_string_uri(signed.url), normalized
    )
    key = "&" + quote(token_secret, safe="~")  # the consumer secret is empty
    digest = hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
