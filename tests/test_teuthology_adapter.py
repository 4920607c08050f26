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

_EXIT_CHILD = """
    import json, sys
    MODE_SETUP
    from teuthology.config import config
    config.load(CONFIG)
    from teuthology_maas.teuthology import adapter
    fqdn = "smithi001.lab.test"
    # What a finished reimage leaves behind: a node this process deployed for teuthology.
    adapter._tracker.started(fqdn)
    adapter._tracker.finished(fqdn, deployed=True)
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


@pytest.mark.parametrize("mode", sorted(_MODES))
def test_nodes_are_released_at_exit_without_starting_threads(fault_lab, tmp_path, mode):
    lab = fault_lab
    lab.sim.update_machine("smithi001", status="deployed", owner="teuthology")
    paddles = LockServer([{"name": "smithi001.lab.test", "machine_type": "smithi"}])
    with paddles.serve() as served:
        config = {
            "lab_domain": "lab.test",
            "lock_server": served.url,
            "maas": {
                "api_url": lab.server.url,
                "api_key": lab.key_for("teuthology"),
                "machine_types": "smithi",
                "erase": "none",
                "poll_interval": 0.05,
                "poll_min_interval": 0.01,
            },
        }
        code = _EXIT_CHILD.replace("MODE_SETUP", _MODES[mode]).replace("CONFIG", repr(config))
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


def test_the_unlocking_user_is_read_from_unlock_one_and_degrades_safely(tmp_path):
    result = run_python(tmp_path, """
        import json, sys
        from teuthology.config import config
        from teuthology_maas.teuthology import adapter
        from teuthology_maas.errors import OwnershipError

        def in_unlock_one(params, body):
            namespace = {"__name__": "teuthology.lock.ops", "adapter": adapter}
            exec(f"def unlock_one({params}):\\n    {body}\\n", namespace)
            return namespace["unlock_one"]

        out = {"plain": adapter._unlocking_user()}
        out["user"] = in_unlock_one("name, user", "return adapter._unlocking_user()")("n", "bob")
        # A teuthology whose unlock_one has no `user`: fall back to MAAS's check.
        out["no_user"] = in_unlock_one("name", "return adapter._unlocking_user()")("n")
        # No frame support at all: the same fall-back, never an exception.
        real = sys._getframe
        def no_frames(depth=0):
            raise ValueError("no frames here")
        sys._getframe = no_frames
        try:
            out["no_frames"] = adapter._unlocking_user()
        finally:
            sys._getframe = real
        # Paddles unreadable while a user is unlocking: refuse rather than guess.
        config.load({"lock_server": "http://127.0.0.1:9/", "lab_domain": "lab.test"})
        check = in_unlock_one("name, user", "adapter._check_paddles_holder(name)")
        try:
            check("smithi001.lab.test", "bob")
            out["unreadable"] = None
        except OwnershipError as exc:
            out["unreadable"] = str(exc)
        # Not called from unlock_one (e.g. node-cleanup, our exit hook): no paddles check.
        adapter._check_paddles_holder("smithi001.lab.test")
        print(json.dumps(out))
    """, capture_stderr=True)
    assert result["plain"] is None
    assert result["user"] == "bob"
    assert result["no_user"] is None and result["no_frames"] is None
    assert "relying on MAAS's ownership check" in result["stderr"]
    assert "cannot read smithi001.lab.test's lock from paddles" in result["unreadable"]
