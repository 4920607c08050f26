"""The activation hook and the adapter's config-only surface, inside real teuthology processes.

Every check runs in a subprocess of the venv's Python: importing teuthology monkey-patches the
process with gevent, which must not happen to pytest's own process. Each subprocess does many
checks and prints one JSON document, to keep the number of (slow-starting) processes small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PTH = "teuthology_maas_activation.pth"

# Counts every outgoing connection attempt of the subprocess: get_types()/enabled() must make
# none, whatever the config says.
_NO_NETWORK_GUARD = """
import json, socket
connects = []
_real_connect = socket.socket.connect
def _record(self, address):
    connects.append(repr(address))
    return _real_connect(self, address)
socket.socket.connect = _record
"""


def run_python(tmp_path: Path, code: str, *, config: dict | None = None, prelude: str = "",
               capture_stderr: bool = False, **env: str) -> dict:
    config_path = tmp_path / "teuthology.yaml"
    config_path.write_text(json.dumps(config or {}))
    child_env = {k: v for k, v in os.environ.items()
                 if not k.startswith(("PYTHON", "TEUTHOLOGY"))}
    child_env.update(HOME=str(tmp_path), TEUTHOLOGY_CONFIG=str(config_path), **env)
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=child_env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if capture_stderr:
        result["stderr"] = done.stderr
    return result


GOOD = {"api_url": "http://127.0.0.1:9/MAAS/", "api_key": "ck:tk:secret",
        "machine_types": "smithi, mira ,"}


def test_startup_installs_only_the_finder(tmp_path):
    result = run_python(tmp_path, """
        import json, sys
        print(json.dumps({
            "finders": [type(f).__name__ for f in sys.meta_path],
            "imported": sorted(m for m in sys.modules
                               if m.startswith(("teuthology", "gevent", "requests"))),
        }))
    """)
    assert result["finders"][0] == "MaasActivationFinder"
    # nothing heavy at start-up: not teuthology, not gevent, not the adapter
    assert result["imported"] == [
        "teuthology_maas", "teuthology_maas.teuthology", "teuthology_maas.teuthology.activation"
    ]


def test_installed_pth_is_the_shipped_one():
    import site

    shipped = (REPO / PTH).read_text()
    installed = [Path(d) / PTH for d in site.getsitepackages() if (Path(d) / PTH).exists()]
    assert installed, f"{PTH} is not in site-packages: is the package installed?"
    assert installed[0].read_text() == shipped


def test_stock_teuthology_module_is_patched_and_reads_config_at_call_time(tmp_path):
    result = run_python(tmp_path, """
        from teuthology.config import config
        import teuthology.provision as provision
        import teuthology.provision.maas as maas
        upstream = maas.__teuthology_maas__["originals"]
        out = {}
        config.load({"lab_domain": "lab.test", "maas": dict(GOOD)})
        out["types"] = maas.get_types()
        out["reimage_types"] = provision.get_reimage_types()
        out["enabled"] = maas.enabled()
        config.load({"lab_domain": "lab.test", "maas": dict(GOOD, api_key="ck:tk")})
        out["bad_key"] = maas.get_types()
        out["bad_key_enabled"] = [maas.enabled(), upstream["enabled"]()]
        config.load({"maas": dict(GOOD, machine_types=None)})
        out["no_types"] = [maas.get_types(), maas.enabled(warn=True)]
        config.load({"maas": "not a mapping"})
        out["garbage"] = maas.get_types()
        config.load({"maas": dict(GOOD, machine_types=5, timeout="soon")})
        out["bad_values"] = maas.get_types()
        config.load({})
        out["absent"] = maas.get_types()
        config.load({"lab_domain": "lab.test", "maas": dict(GOOD)})
        node = maas.MAAS("ubuntu@smithi001.lab.test", "centos", "9.stream")
        short = maas.MAAS("smithi002")
        out["node"] = [type(node).__module__, node.name, node.shortname, node.os_type,
                       node.os_version, short.name, short.shortname]
        out["connects"] = connects
        print(json.dumps(out))
    """.replace("GOOD", repr(GOOD)), prelude=_NO_NETWORK_GUARD)
    assert result["types"] == ["smithi", "mira"]
    assert result["reimage_types"] == ["smithi", "mira"]
    assert result["enabled"] is True
    # upstream's enabled() accepts a two-part key when machine_types is set; we do not
    assert result["bad_key"] == [] and result["bad_key_enabled"] == [False, True]
    assert result["no_types"] == [[], False]
    assert result["garbage"] == [] and result["bad_values"] == [] and result["absent"] == []
    assert result["node"] == ["teuthology_maas.teuthology.adapter", "smithi001.lab.test",
                              "smithi001", "centos", "9.stream", "smithi002.lab.test", "smithi002"]
    assert result["connects"] == []


def test_env_switch_leaves_stock_teuthology_alone(tmp_path):
    result = run_python(tmp_path, """
        import json, sys
        import teuthology.provision.maas as maas
        print(json.dumps({
            "finders": [type(f).__name__ for f in sys.meta_path],
            "hooked": hasattr(maas, "__teuthology_maas__"),
            "maas_class": maas.MAAS.__module__,
            "adapter_imported": "teuthology_maas.teuthology.adapter" in sys.modules,
        }))
    """, config={"maas": GOOD}, TEUTHOLOGY_MAAS_ACTIVATE="0")
    assert "MaasActivationFinder" not in result["finders"]
    assert result == {**result, "hooked": False, "maas_class": "teuthology.provision.maas",
                      "adapter_imported": False}


def test_config_switch_hands_calls_to_upstream_at_call_time(tmp_path):
    result = run_python(tmp_path, """
        import json, sys
        from teuthology.config import config
        import teuthology.provision.maas as maas
        out = {}
        two_part_key = dict(GOOD, api_key="ck:tk")
        config.load({"maas": dict(two_part_key, activate=False)})
        out["off"] = maas.get_types()
        out["adapter_imported_while_off"] = "teuthology_maas.teuthology.adapter" in sys.modules
        config.load({"maas": dict(two_part_key, activate="no")})
        out["off_string"] = maas.get_types()
        config.load({"maas": dict(two_part_key, activate=True)})
        out["on"] = maas.get_types()
        config.load({"maas": dict(two_part_key, activate=None)})
        out["null"] = maas.get_types()
        config.load({"maas": dict(two_part_key, activate=0)})
        out["zero"] = maas.get_types()
        print(json.dumps(out))
    """.replace("GOOD", repr(GOOD)))
    assert result["off"] == ["smithi", " mira "]  # upstream's answer (and its lack of strip)
    assert result["off_string"] == ["smithi", " mira "]
    assert result["adapter_imported_while_off"] is False
    assert result["on"] == []  # ours refuses the two-part key
    assert result["null"] == []  # `activate:` left empty means on
    assert result["zero"] == ["smithi", " mira "]


def test_an_adapter_that_cannot_be_imported_falls_back_to_upstream_loudly(tmp_path):
    done_json = run_python(tmp_path, """
        import json, sys
        sys.modules["teuthology_maas.teuthology.adapter"] = None  # makes its import fail
        from teuthology.config import config
        import teuthology.provision.maas as maas
        config.load({"maas": dict(GOOD, api_key="ck:tk")})
        print(json.dumps({"types": [maas.get_types(), maas.get_types()]}))
    """.replace("GOOD", repr(GOOD)), capture_stderr=True)
    assert done_json["types"] == [["smithi", " mira "]] * 2  # upstream's answer, no crash
    assert done_json["stderr"].count("teuthology_maas.teuthology.adapter cannot be imported") == 1


def test_reload_and_double_install_keep_exactly_one_patch(tmp_path):
    result = run_python(tmp_path, """
        import importlib, json, sys
        import teuthology_maas.teuthology.activation as activation
        import teuthology.provision.maas as maas
        activation.install()
        first = maas.get_types
        importlib.reload(maas)
        print(json.dumps({
            "finders": [type(f).__name__ for f in sys.meta_path].count("MaasActivationFinder"),
            "patched_after_reload": getattr(maas.get_types, "__teuthology_maas__", False),
            "wraps_upstream": maas.get_types.__wrapped__.__module__,
            "same_after_reload": maas.get_types is first,
        }))
    """, config={"maas": GOOD})
    assert result == {"finders": 1, "patched_after_reload": True,
                      "wraps_upstream": "teuthology.provision.maas", "same_after_reload": False}


def test_a_broken_install_never_breaks_interpreter_startup(tmp_path):
    broken = tmp_path / "broken" / "teuthology_maas"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('half-installed package')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(broken.parent)
    done = subprocess.run([sys.executable, "-c", "print('alive')"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "alive\n", "")


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no"])
def test_env_switch_spellings(value, monkeypatch):
    from teuthology_maas.teuthology import activation as _activation

    monkeypatch.setenv(_activation.ENV_SWITCH, value)
    assert _activation.env_allows() is False
    monkeypatch.setenv(_activation.ENV_SWITCH, "1")
    assert _activation.env_allows() is True
