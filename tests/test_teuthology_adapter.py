"""teuthology_maas.teuthology's config mapping, in a real teuthology process (a subprocess:
importing teuthology would put pytest's own process under gevent)."""

from __future__ import annotations

from tests.test_teuthology_activation import _NO_NETWORK_GUARD, GOOD, run_python


def test_config_mapping_and_fail_fast_without_network(tmp_path):
    for name in ("keys/id_a", "ssh/config", "explicit/key", "explicit/ssh_config"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x\n")
    result = run_python(tmp_path, """
        import json, os
        from teuthology.config import config
        from teuthology_maas import teuthology as adapter
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
