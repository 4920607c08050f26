"""`MaasClient`: one method per MAAS 2.0 API call the project makes.

All calls share one `requests.Session` (connection pooling sized for many concurrent nodes)
signed with OAuth1 PLAINTEXT, as MAAS's own clients do: empty consumer secret, so the
signature is `&` + the token secret. Encoding, retries and errors live in `wire`, `retry`
and `transport`; this module maps Python arguments onto MAAS's parameter names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from oauthlib.oauth1 import SIGNATURE_PLAINTEXT, SIGNATURE_TYPE_AUTH_HEADER
from requests_oauthlib import OAuth1

from teuthology_maas import metrics
from teuthology_maas.api_url import normalize_api_urls
from teuthology_maas.config import ApiKey, MaasConfig
from teuthology_maas.config_regions import DEFAULT_REGION
from teuthology_maas.errors import MaasNotFound
from teuthology_maas.maas import shapes
from teuthology_maas.maas.answer import DEFAULT_MAX_RESPONSE, OBJECT_LIMIT
from teuthology_maas.maas.machine_setup import MachineSetupCalls
from teuthology_maas.maas.retry import RetryPolicy
from teuthology_maas.maas.transport import (
    DEFAULT_DEADLINE,
    ActionCap,
    Transport,
    build_session,
)
from teuthology_maas.maas.wire import csv, encode_user_data, path_segment
from teuthology_maas.models import BootResource, Event, Machine, NodeStatus

__all__ = ["DEFAULT_POOL_SIZE", "MaasClient", "RetryPolicy"]

DEFAULT_POOL_SIZE = 64
# query_power_state is a live BMC query through a rack controller: MAAS allows ~60 s.
POWER_QUERY_TIMEOUT = 90.0

StrOrList = str | Sequence[str] | None
T = TypeVar("T")


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str | NodeStatus):
        return [value]
    return list(value)


class MaasClient(MachineSetupCalls):
    """A MAAS region's API, for one API key. Thread- and greenlet-safe.

    `api_url` may be a list of the region URLs of one MAAS (HA): requests fail over between
    them (see `transport.RegionUrls`); `base_url`, which names the MAAS, is the first."""

    def __init__(
        self,
        api_url: str | Sequence[str],
        api_key: ApiKey | str,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        deadline: float = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE,
        pool_size: int = DEFAULT_POOL_SIZE,
        max_concurrent_actions: int = 16,
        action_cap: ActionCap | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_urls = normalize_api_urls(api_url)
        self.base_url = self.base_urls[0]
        self.api_key = ApiKey.parse(api_key)
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if deadline <= 0 or max_response_bytes <= 0:
            raise ValueError("deadline and max_response_bytes must be > 0")
        self.timeout = float(timeout)
        self.deadline = float(deadline)
        self.max_response_bytes = int(max_response_bytes)
        self.max_concurrent_actions = max_concurrent_actions
        self.username: str | None = None
        auth = OAuth1(
            client_key=self.api_key.consumer_key,
            client_secret="",
            resource_owner_key=self.api_key.token_key,
            resource_owner_secret=self.api_key.token_secret,
            signature_method=SIGNATURE_PLAINTEXT,
            signature_type=SIGNATURE_TYPE_AUTH_HEADER,
        )
        self.session = build_session(max(1, pool_size), verify, auth)
        self._transport = Transport(
            self.base_urls,
            self.session,
            timeout=self.timeout,
            deadline=self.deadline,
            max_response_bytes=self.max_response_bytes,
            policy=retry or RetryPolicy(),
            max_concurrent_actions=max_concurrent_actions,
            cap=action_cap,
            sleep=sleep,
            clock=clock,
        )

    @classmethod
    def from_config(cls, cfg: MaasConfig, **overrides: Any) -> MaasClient:
        kwargs: dict[str, Any] = {
            "verify": cfg.verify,
            "timeout": cfg.http_timeout,
            "deadline": cfg.http_deadline,
            "max_response_bytes": cfg.max_response_size,
            "max_concurrent_actions": cfg.max_concurrent_actions,
        }
        kwargs.update(overrides)
        client = cls(cfg.api_urls or cfg.api_url, cfg.api_key, **kwargs)
        # a region of `maas: regions:` labels its metrics with its name (every HA URL of it)
        metrics.name_region(client.base_urls, None if cfg.region == DEFAULT_REGION else cfg.region)
        return client

    def __repr__(self) -> str:
        return f"MaasClient({self.base_url!r}, consumer_key={self.api_key.consumer_key!r})"

    def __enter__(self) -> MaasClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._transport.policy

    @property
    def current_url(self) -> str:
        """The region URL requests go to now (the first, until it fails: see `base_urls`)."""
        return self._transport.regions.current()

    def retry_clock(self) -> float:
        """The clock the retry budget is measured on (monotonic seconds)."""
        return self._transport._clock()

    def retry_sleep(self, seconds: float) -> None:
        """Wait between attempts, as the client itself does (callers that re-send a POST
        after re-reading the machine wait the same way, on the same budget)."""
        self._transport._sleep(seconds)

    @property
    def action_cap(self) -> ActionCap:
        """Held around every state-changing call: at most `max_concurrent_actions` at once
        (shared by everything that uses this client; an Endpoint may pass a shared one)."""
        return self._transport.cap

    # ---- account and region --------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """The API key's user (`username`, `is_superuser` ...); also sets `self.username`."""
        user = self._get("users/", op="whoami", parse=shapes.whoami, max_bytes=OBJECT_LIMIT)
        self.username = user["username"]
        return user

    def version(self) -> dict[str, Any]:
        """`{"version", "subversion", "capabilities"}`. MAAS serves it anonymously, so it is
        asked without credentials: it also answers when the API key is wrong."""
        result: dict[str, Any] = self._transport.call(
            "GET", "version/", signed=False, parse=shapes.version, max_bytes=OBJECT_LIMIT
        )
        return result

    def get_config(self, name: str) -> str | int | float | bool | None:
        """One MAAS configuration value (a JSON scalar)."""
        return self._get(
            "maas/",
            op="get_config",
            params={"name": name},
            parse=shapes.config_value,
            max_bytes=OBJECT_LIMIT,
        )

    # ---- machines: reading ---------------------------------------------------------------

    def list_machines(
        self,
        *,
        id: StrOrList = None,  # MAAS's own parameter name
        hostname: StrOrList = None,
        agent_name: StrOrList = None,
        owner: StrOrList = None,
        pool: StrOrList = None,
        zone: StrOrList = None,
        tags: StrOrList = None,
        status: str | NodeStatus | Sequence[str | NodeStatus] | None = None,
    ) -> list[Machine]:
        """GET machines/ with filters; each filter may be a list (any-of; tags: all-of)."""
        params = [
            ("id", _as_list(id)),
            ("hostname", _as_list(hostname)),
            ("agent_name", _as_list(agent_name)),
            ("owner", _as_list(owner)),
            ("pool", _as_list(pool)),
            ("zone", _as_list(zone)),
            ("tags", _as_list(tags)),
            ("status", _as_list(status)),
        ]
        return self._get("machines/", params=params, parse=shapes.machines)

    def get_machine(self, system_id: str) -> Machine:
        return self._machine_call("GET", system_id)

    # ---- machines: lifecycle -------------------------------------------------------------

    def allocate(
        self,
        *,
        name: str | None = None,
        system_id: str | None = None,
        tags: StrOrList = None,
        not_tags: StrOrList = None,
        pool: str | None = None,
        zone: str | None = None,
        arch: StrOrList = None,
        cpu_count: int | float | None = None,
        mem: int | float | None = None,
        agent_name: str | None = None,
        comment: str | None = None,
    ) -> Machine:
        """POST machines/?op=allocate. Nothing matching raises NoMachineAvailable (409)."""
        params = [
            ("name", name),
            ("system_id", system_id),
            ("tags", _as_list(tags)),
            ("not_tags", _as_list(not_tags)),
            ("pool", pool),
            ("zone", zone),
            ("arch", _as_list(arch)),
            ("cpu_count", cpu_count),
            ("mem", mem),
            ("agent_name", agent_name),
            ("comment", comment),
        ]
        machine: Machine = self._transport.call(
            "POST",
            "machines/",
            op="allocate",
            params=params,
            system_id=system_id,
            parse=shapes.machine,
            max_bytes=OBJECT_LIMIT,
        )
        return machine

    def deploy(
        self,
        system_id: str,
        *,
        distro_series: str,
        osystem: str | None = None,
        hwe_kernel: str | None = None,
        user_data: str | bytes | None = None,
        agent_name: str | None = None,
        comment: str | None = None,
        ephemeral_deploy: bool | None = None,
    ) -> Machine:
        """POST machines/<id>/?op=deploy. `user_data` is the raw cloud-init content; it is
        base64-encoded here. MAAS derives the OS from `distro_series` (`ubuntu/jammy`);
        `osystem` is sent for older regions and readability of the request log.
        `ephemeral_deploy=True` deploys to memory (MAAS 3.5+); None leaves the field out."""
        params = [
            ("distro_series", distro_series),
            ("osystem", osystem),
            ("hwe_kernel", hwe_kernel),
            ("user_data", encode_user_data(user_data) if user_data is not None else None),
            ("agent_name", agent_name),
            ("comment", comment),
            ("ephemeral_deploy", ephemeral_deploy),
        ]
        return self._machine_call("POST", system_id, op="deploy", params=params)

    def release(
        self,
        system_id: str,
        *,
        erase: bool = False,
        secure_erase: bool = False,
        quick_erase: bool = False,
        force: bool = False,
        comment: str | None = None,
        scripts: Sequence[str] = (),
        script_params: Mapping[str, str] | None = None,
    ) -> Machine:
        """POST machines/<id>/?op=release. Flags travel as `true`/`false` (MAAS >= 3.5 reads
        `0` as true). `scripts` are release scripts (sent comma-separated); `script_params`
        are their parameters, one form field each."""
        params: list[tuple[str, Any]] = [
            ("erase", bool(erase)),
            ("secure_erase", bool(secure_erase)),
            ("quick_erase", bool(quick_erase)),
            ("force", bool(force)),
            ("comment", comment),
            ("scripts", csv(scripts)),
        ]
        params.extend((str(k), v) for k, v in (script_params or {}).items())
        return self._machine_call("POST", system_id, op="release", params=params)

    def abort(self, system_id: str, *, comment: str | None = None) -> Machine:
        return self._simple_op(system_id, "abort", comment)

    def lock(self, system_id: str, *, comment: str | None = None) -> Machine:
        return self._simple_op(system_id, "lock", comment)

    def unlock(self, system_id: str, *, comment: str | None = None) -> Machine:
        return self._simple_op(system_id, "unlock", comment)

    def mark_broken(self, system_id: str, *, comment: str | None = None) -> Machine:
        return self._simple_op(system_id, "mark_broken", comment)

    def mark_fixed(self, system_id: str, *, comment: str | None = None) -> Machine:
        return self._simple_op(system_id, "mark_fixed", comment)

    def power_on(self, system_id: str, *, comment: str | None = None) -> Machine | None:
        return self._machine_json(
            "POST", system_id, shapes.machine_or_none, op="power_on", params=[("comment", comment)]
        )

    def power_off(
        self, system_id: str, *, stop_mode: str = "hard", comment: str | None = None
    ) -> Machine | None:
        """None when the machine's power type cannot power off (MAAS answers `null`)."""
        return self._machine_json(
            "POST",
            system_id,
            shapes.machine_or_none,
            op="power_off",
            params=[("stop_mode", stop_mode), ("comment", comment)],
        )

    def query_power_state(self, system_id: str) -> str:
        """`on`, `off`, `unknown` or `error`: a live BMC query (slow; up to a minute)."""
        return self._machine_json(
            "GET",
            system_id,
            shapes.power_state,
            op="query_power_state",
            timeout=max(self.timeout, POWER_QUERY_TIMEOUT),
        )

    def set_owner_data(self, system_id: str, data: Mapping[str, str]) -> Machine:
        """Set (or, with an empty value, delete) owner data keys; other keys are untouched."""
        params = [(str(key), "" if value is None else str(value)) for key, value in data.items()]
        return self._machine_call("POST", system_id, op="set_owner_data", params=params)

    # ---- images, events, results ---------------------------------------------------------

    def boot_resources(self, *, type: str | None = None) -> list[BootResource]:
        return self._get("boot-resources/", params=[("type", type)], parse=shapes.boot_resources)

    def events(
        self,
        *,
        id: StrOrList = None,  # MAAS's name: a node's system_id
        hostname: StrOrList = None,
        level: str | None = None,
        limit: int | None = None,
        after: int | None = None,
        before: int | None = None,
    ) -> list[Event]:
        """GET events/?op=query; MAAS returns them newest first."""
        params = [
            ("id", _as_list(id)),
            ("hostname", _as_list(hostname)),
            ("level", level.upper() if level else None),
            ("limit", limit),
            ("after", after),
            ("before", before),
        ]
        return self._get("events/", op="query", params=params, parse=shapes.events)

    def installation_output(self, system_id: str) -> str | None:
        """The text of the machine's current installation log (curtin's /tmp/install.log, or
        every result's output concatenated), None when MAAS has none."""
        path = f"nodes/{path_segment(system_id)}/results/current-installation/"
        try:
            outputs = self._get(
                path,
                params=[("include_output", "1")],
                system_id=system_id,
                parse=shapes.script_outputs,
            )
        except MaasNotFound:
            return None
        if not outputs:
            return None
        for name, text in outputs:
            if name == "/tmp/install.log":
                return text
        return "\n".join(f"==> {name} <==\n{text}" for name, text in outputs)

    # ---- plumbing -----------------------------------------------------------------------

    def _get(
        self,
        path: str,
        *,
        parse: Callable[[Any], T],
        op: str | None = None,
        params: Any = None,
        system_id: str | None = None,
        max_bytes: int | None = None,
    ) -> T:
        result: T = self._transport.call(
            "GET",
            path,
            op=op,
            params=params,
            system_id=system_id,
            parse=parse,
            max_bytes=max_bytes,
        )
        return result

    def _machine_json(
        self,
        method: str,
        system_id: str,
        parse: Callable[[Any], T],
        *,
        op: str | None = None,
        params: Any = None,
        timeout: float | None = None,
    ) -> T:
        """A call on one machine; its answer is one object."""
        path = f"machines/{path_segment(system_id)}/"
        result: T = self._transport.call(
            method,
            path,
            op=op,
            params=params,
            system_id=system_id,
            timeout=timeout,
            parse=parse,
            max_bytes=OBJECT_LIMIT,
        )
        return result

    def _machine_call(
        self, method: str, system_id: str, *, op: str | None = None, params: Any = None
    ) -> Machine:
        return self._machine_json(method, system_id, shapes.machine, op=op, params=params)

    def _simple_op(self, system_id: str, op: str, comment: str | None) -> Machine:
        return self._machine_call("POST", system_id, op=op, params=[("comment", comment)])
