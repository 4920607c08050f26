"""teuthology_maas.teuthology's config mapping, in a real teuthology process (a subprocess:
importing teuthology would put pytest's own process under gevent)."""

from __future__ import annotations

import pytest

from tests.test_teuthology_activation import _NO_NETWORK_GUARD, GOOD, run_python
from teuthology_maas.testing.lockserver import LockServer


def test_config_mapping_and_fail_fast_without_network(tmp_path):
    for name in ("keys/id_a", "ssh/config", "explicit/key", "explicit/ssh_config"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x\n")
    result = run_python(tmp_path, """
        import json, os
        from teuthology.config import config
        from teuthology_maas.teuthology import adapter
        out = {}
        base = {"lab_domain": "lab.test", "ssh_key": ["~/keys/id_a", "~/keys/id_b"],
                "ssh_config_path": "~/ssh/config"}
        explicit = {"ssh_private_key": "~/explicit/key", "ssh_config": "~/explicit/ssh_config"}
        config.load(dict(base, maas=dict(GOOD)))
        cfg = adapter.load_config()
        out["fallbacks"] = [cfg.ssh_private_key, cfg.ssh_config, cfg.lab_domain,
                            list(cfg.machine_types)]
        config.load(dict(base, maas=dict(GOOD, **explicit)))
        cfg = adapter.load_config()
        out["explicit"] = [cfg.ssh_private_key, cfg.ssh_config]
        config.load(dict(base, ssh_key="~/missing", maas=dict(GOOD)))
        out["missing_key"] = adapter.load_config().ssh_private_key
        config.load({"lab_domain": "lab.test"})
        try:
            adapter.MAAS("smithi001").create()
        except Exception as exc:
            out["no_section"] = [type(exc).__name__, str(exc)]
        config.load({"lab_domain": "lab.test", "maas": dict(GOOD, api_key="ck:tk:topsecret:extra")})
        try:
            adapter.MAAS("smithi001").release()
        except Exception as exc:
            out["bad_key"] = [type(exc).__name__, getattr(exc, "key", None),
                              "topsecret" in str(exc)]
        out["home"] = os.path.expanduser("~")
        out["repr"] = repr(adapter.MAAS("smithi009"))
        out["connects"] = connects
        print(json.dumps(out))
    """.replace("GOOD", repr(GOOD)), prelude=_NO_NETWORK_GUARD)
    home = result["home"]
    assert result["fallbacks"] == [f"{home}/keys/id_a", f"{home}/ssh/config", "lab.test",
                                   ["smithi", "mira"]]
    assert result["explicit"] == [f"{home}/explicit/key", f"{home}/explicit/ssh_config"]
    assert result["missing_key"] is None  # a missing teuthology ssh_key is not borrowed
    name, message = result["no_section"]
    assert name == "ConfigError" and "maas:" in message
    assert result["bad_key"][:2] == ["ConfigError", "api_key"]
    assert result["bad_key"][2] is False  # the key's secret part never appears in the error
    assert result["repr"] == "MAAS('smithi009.lab.test', os_type='ubuntu', os_version='22.04')"
    assert result["connects"] == []  # an unusable config fails before any connection


# -- clean-up at exit ------------------------------------------------------------------------

TOKEN = "a1" * 16
OTHER = "b2" * 16

_EXIT_CHILD = """
    import json, sys
    MODE_SETUP
    from teuthology.config import config
    config.load(CONFIG)
    from teuthology_maas.teuthology import adapter
    fqdn = "smithi001.lab.test"
    # What a finished reimage leaves behind: a node this process deployed for teuthology.
    adapter._deployed.add(fqdn, TOKEN)
    print(json.dumps({"threads_patched": __import__("gevent.monkey").monkey.is_module_patched(
        "threading")}))
    # Exiting now: paddles shows the node unlocked, so the exit hook must release it.
"""

_MODES = {
    # teuthology's own patching with native threads (it leaves threads unpatched for its API
    # server): an exit hook cannot start a thread at all on Python 3.12.
    "native-threads": "sys.argv.append('teuthology_api')",
    # gevent with its DNS patched too: its resolver runs getaddrinfo in a native thread pool.
    "gevent-resolver": "from gevent import monkey; monkey.patch_all()",
}


def _exit_config(lab, lock_server: str) -> dict:
    return {
        "lab_domain": "lab.test",
        "lock_server": lock_server,
        "maas": {
            "api_url": lab.server.url,
            "api_key": lab.key_for("teuthology"),
            "machine_types": "smithi",
            "erase": "none",
            "poll_interval": 0.05,
            "poll_min_interval": 0.01,
        },
    }


def _deployed_with(lab, token: str) -> None:
    lab.sim.update_machine(
        "smithi001", status="deployed", owner="teuthology",
        workload_annotations={"teuthology_maas_token": token},
    )  # fmt: skip


@pytest.mark.parametrize("mode", sorted(_MODES))
def test_nodes_are_released_at_exit_without_starting_threads(fault_lab, tmp_path, mode):
    lab = fault_lab
    _deployed_with(lab, TOKEN)
    paddles = LockServer([{"name": "smithi001.lab.test", "machine_type": "smithi"}])
    with paddles.serve() as served:
        code = (_EXIT_CHILD.replace("MODE_SETUP", _MODES[mode])
                .replace("CONFIG", repr(_exit_config(lab, served.url)))
                .replace("TOKEN", repr(TOKEN)))  # fmt: skip
        result = run_python(tmp_path, code, capture_stderr=True)

    stderr = result["stderr"]
    assert result["threads_patched"] is (mode == "gevent-resolver")
    assert "can't create new thread" not in stderr, stderr
    assert "release at exit failed" not in stderr and "clean-up at exit failed" not in stderr, (
        stderr
    )
    assert "releasing it in MAAS" in stderr, stderr
    released = [r for r in lab.sim.request_log if r.op == "release"]
    assert len(released) == 1 and released[0].status == 200
    lab.wait_for(lambda: lab.status("smithi001") == "Ready")


def test_the_exit_hook_leaves_a_node_another_deployment_has_taken_over(fault_lab, tmp_path):
    """This process deployed the node, but another process has redeployed it since (its token
    is on the machine now): the exit hook must not release that one."""
    lab = fault_lab
    _deployed_with(lab, OTHER)
    paddles = LockServer([{"name": "smithi001.lab.test", "machine_type": "smithi"}])
    with paddles.serve() as served:
        code = (_EXIT_CHILD.replace("MODE_SETUP", _MODES["gevent-resolver"])
                .replace("CONFIG", repr(_exit_config(lab, served.url)))
                .replace("TOKEN", repr(TOKEN)))  # fmt: skip
        result = run_python(tmp_path, code, capture_stderr=True)
    assert "release at exit failed" in result["stderr"], result["stderr"]
    assert "taken over by another deployment" in result["stderr"], result["stderr"]
    assert [r.op for r in lab.sim.request_log if r.method == "POST"] == []
    assert lab.status("smithi001") == "Deployed"


# -- who is unlocking ------------------------------------------------------------------------

_UNLOCK_CHILD = """
    import json, logging, sys
    logging.basicConfig(level=logging.WARNING)
    from teuthology_maas.teuthology import unlocking

    def in_unlock_one(params, body):
        namespace = {"__name__": "teuthology.lock.ops", "unlocking": unlocking}
        exec(f"def unlock_one({params}):\\n    {body}\\n", namespace)
        return namespace["unlock_one"]

    def shown(request):
        return None if request is None else [request.user, request.description]

    fqdn = "smithi001.lab.test"
    out = {"plain": shown(unlocking.unlock_request(fqdn))}
    ask = "return unlocking.unlock_request(name)"
    out["user"] = shown(in_unlock_one("name, user, description=None", ask)(fqdn, "bob"))
    out["both"] = shown(in_unlock_one("name, user, description=None", ask)(fqdn, "bob", "/a/r/7"))
    other = "return unlocking.unlock_request('smithi002.lab.test')"
    out["other_node"] = shown(in_unlock_one("name, user, description=None", other)(fqdn, "bob"))
    # A teuthology whose unlock_one has no `user`: cannot tell, and says so.
    out["no_user"] = shown(in_unlock_one("name", ask)(fqdn))
    real = sys._getframe
    def no_frames(depth=0):
        raise ValueError("no frames here")
    sys._getframe = no_frames
    try:
        out["no_frames"] = shown(unlocking.unlock_request(fqdn))
    finally:
        sys._getframe = real
    VERSION_SETUP
    out["other_version"] = shown(in_unlock_one("name, user, description=None", ask)(fqdn, "al"))
    out["other_version_plain"] = shown(unlocking.unlock_request(fqdn))
    print(json.dumps(out))
"""


def test_the_unlocking_user_and_description_come_from_unlock_one_and_degrades_safely(tmp_path):
    code = _UNLOCK_CHILD.replace(
        "VERSION_SETUP", "unlocking._teuthology_version = lambda: '2.0.0'"
    )
    result = run_python(tmp_path, code, capture_stderr=True)
    assert result["plain"] is None  # not called from an unlock: nothing to read
    assert result["user"] == ["bob", None]
    assert result["both"] == ["bob", "/a/r/7"]
    assert result["other_node"] is None  # an unlock of another node is not this release's
    assert result["no_user"] is None and result["no_frames"] is None
    stderr = result["stderr"]
    assert "cannot tell who is unlocking smithi001.lab.test" in stderr
    assert "this Python cannot show call frames" in stderr
    # An unchecked teuthology version: read anyway where the frame is there, and say so.
    assert result["other_version"] == ["al", None]
    assert result["other_version_plain"] is None
    assert "teuthology 2.0.0 is not a version whose unlock_one() this library was checked" in (
        stderr
    )
    assert "teuthology 2.0.0 is not a version whose unlock path" in stderr


@pytest.mark.parametrize(
    ("lock", "unlock", "refused"),
    [
        (("alice@ctl", "/a/run/1"), ("alice@ctl", "/a/run/1"), None),
        (("alice@ctl", "/a/run/1"), ("alice@ctl", None), None),
        (("alice@ctl", "/a/run/1"), ("eve@elsewhere", None), "locked_by values must match"),
        (("alice@ctl", "/a/run/1"), ("alice@ctl", "/a/run/2"), "description values must match"),
        (None, ("alice@ctl", None), "already-unlocked"),
    ],
    ids=["holder", "holder-without-description", "another-user", "another-job", "unlocked"],
)
def test_release_checks_what_paddles_will_check_before_touching_maas(
    tmp_path, lock, unlock, refused
):
    """Paddles refuses an unlock by anyone but the holder and, when the unlock sends one, with
    another description: release() must then leave MAAS alone (teuthology releases first)."""
    node = {"name": "smithi001.lab.test", "machine_type": "smithi"}
    if lock is not None:
        node.update(locked=True, locked_by=lock[0], description=lock[1])
    paddles = LockServer([node])
    with paddles.serve() as served:
        result = run_python(tmp_path, f"""
            import json
            from teuthology.config import config
            config.load({{"lock_server": {served.url!r}, "lab_domain": "lab.test",
                          "maas": {GOOD!r}}})
            from teuthology_maas.teuthology import adapter
            from teuthology_maas.errors import OwnershipError
            namespace = {{"__name__": "teuthology.lock.ops", "adapter": adapter}}
            exec("def unlock_one(name, user, description=None):\\n"
                 "    record = adapter._lock_record(name, adapter.load_config(), required=True)\\n"
                 "    adapter._check_unlock(name, record)\\n", namespace)
            try:
                namespace["unlock_one"]("smithi001.lab.test", {unlock[0]!r}, {unlock[1]!r})
                print(json.dumps({{"refused": None}}))
            except OwnershipError as exc:
                print(json.dumps({{"refused": str(exc)}}))
        """)
    if refused is None:
        assert result["refused"] is None
    else:
        assert refused in result["refused"] and "paddles will refuse this unlock" in (
            result["refused"]
        )


def test_release_refuses_when_paddles_cannot_be_read(tmp_path):
    result = run_python(tmp_path, f"""
        import json
        from teuthology.config import config
        config.load({{"lock_server": "http://127.0.0.1:9/", "lab_domain": "lab.test",
                      "maas": {GOOD!r}}})
        from teuthology_maas.teuthology import adapter
        from teuthology_maas.errors import OwnershipError
        try:
            adapter._lock_record("smithi001.lab.test", adapter.load_config(), required=True)
            print(json.dumps({{"refused": None}}))
        except OwnershipError as exc:
            print(json.dumps({{"refused": str(exc)}}))
    """)
    assert "cannot read smithi001.lab.test's lock from paddles" in result["refused"]
