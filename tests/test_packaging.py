"""A plain `pip install teuthology-maas` (what a teuthology worker gets) carries no test doubles'
dependencies: the wheel is built from this tree and installed into a fresh virtualenv WITHOUT
the `simulator` extra. The library and the teuthology adapter work there; Werkzeug is absent;
the simulator and demo commands say how to get the extra, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXTRA_HINT = "pip install 'teuthology-maas[simulator]'"
# What a teuthology worker's virtualenv holds besides our wheel: teuthology and its
# dependencies. Taken from this test run's own environment, minus Werkzeug and minus
# teuthology-maas itself (the wheel under test must be the one imported).
_NOT_IN_A_WORKER = ("werkzeug", "teuthology_maas", "_editable_impl_teuthology_maas")


def _run(argv: list[object], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=300, check=False,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plain-install")
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                  root / "dist", ROOT])
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (root / "dist").glob("teuthology_maas-*.whl")
    made = _run([sys.executable, "-m", "venv", root / "venv"])
    assert made.returncode == 0, made.stderr[-3000:]
    python = root / "venv" / "bin" / "python"
    installed = _run([python, "-m", "pip", "install", "-q", wheel])
    assert installed.returncode == 0, installed.stderr[-3000:]
    return {"root": root, "wheel": wheel, "python": python, "bin": python.parent}


def test_the_wheel_needs_werkzeug_only_for_the_simulator_extra(plain: dict[str, Path]) -> None:
    with zipfile.ZipFile(plain["wheel"]) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = wheel.read(name).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    werkzeug = [line for line in requires if "werkzeug" in line.lower()]
    # only ever behind an extra: `simulator` (and `dev`, which includes it)
    assert any("extra == 'simulator'" in line for line in werkzeug), werkzeug
    assert all("; extra == " in line for line in werkzeug), werkzeug
    assert "Provides-Extra: simulator" in metadata


def test_a_plain_install_imports_the_library_and_has_no_werkzeug(plain: dict[str, Path]) -> None:
    code = (
        "import importlib.util, sys\n"
        "import teuthology_maas\n"
        "from teuthology_maas import Endpoint, MaasClient, MaasConfig, MaasProvisioner\n"
        "from teuthology_maas.endpoint import endpoint_for\n"
        "import teuthology_maas.cli, teuthology_maas.testing.lockserver\n"
        "assert teuthology_maas.__file__.startswith(sys.prefix), teuthology_maas.__file__\n"
        "assert importlib.util.find_spec('werkzeug') is None\n"
        "cfg = MaasConfig.from_mapping({'api_url': 'http://127.0.0.1:1/MAAS/',\n"
        "                               'api_key': 'a:b:c', 'ssh_keys': []})\n"
        "assert MaasProvisioner('smithi001', config=cfg).endpoint is endpoint_for(cfg)\n"
        "try:\n"
        "    import teuthology_maas.simulator\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = _run([plain["python"], "-c", code], cwd=plain["root"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("MissingExtra ") and EXTRA_HINT in done.stdout, done.stdout


def test_the_adapter_imports_in_a_worker_without_werkzeug(plain: dict[str, Path]) -> None:
    """teuthology is made visible from this environment (installing it afresh takes minutes);
    Werkzeug and the teuthology-maas under development are left out."""
    ours = Path(next(p for p in sys.path if p.endswith("site-packages")))
    overlay = plain["root"] / "worker-site"
    overlay.mkdir(exist_ok=True)
    for entry in ours.iterdir():
        lowered = entry.name.lower()
        if entry.suffix == ".pth" or lowered.startswith(_NOT_IN_A_WORKER):
            continue
        link = overlay / entry.name
        if not link.exists():
            link.symlink_to(entry)
    (site,) = (plain["python"].parent.parent / "lib").glob("python*/site-packages")
    (site / "zz_worker_site.pth").write_text(f"{overlay}\n", encoding="utf-8")
    code = (
        "import importlib.util, sys\n"
        "import teuthology_maas.teuthology.adapter as adapter\n"
        "assert adapter.__file__.startswith(sys.prefix), adapter.__file__\n"
        "assert importlib.util.find_spec('werkzeug') is None\n"
        "assert 'werkzeug' not in sys.modules\n"
        "print(adapter.get_types(), adapter.enabled())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TEUTHOLOGY_CONFIG")}
    env["HOME"] = str(plain["root"])  # no ~/.teuthology.yaml: MAAS not configured
    done = _run([plain["python"], "-c", code], cwd=plain["root"], env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[] False"


@pytest.mark.parametrize("command", ["simulator", "demo"])
def test_simulator_and_demo_say_how_to_get_the_extra(plain: dict[str, Path], command: str) -> None:
    done = _run([plain["bin"] / "teuthology-maas", command], cwd=plain["root"])
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert EXTRA_HINT in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("teuthology-maas: MissingExtra: ")
