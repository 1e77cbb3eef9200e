"""The wheel ships the whole package and the dashboard, and the installed copy serves the page.

The wheel is built offline (``pip wheel --no-build-isolation --no-index``) from a copy of
the working tree, so the build leaves nothing in the checkout. The slow test installs it
into a fresh virtual environment that sees this environment's dependencies (torch,
Streamlit, ...) through a ``.pth`` file but not this checkout, then starts the installed
``inspector dashboard`` from another folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

APP_PACKAGE = "inspector_dashboard"
_SKIP_NAMES = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".device", ".pytest_cache",
                                     ".mypy_cache", ".ruff_cache", "*.safetensors")
#: Output folders, skipped only at the top of the tree (``inspector/runs`` is a package).
_SKIP_TOP = {"build", "dist", "artifacts", "runs", "captures", "out"}


def _SKIP_COPY(folder: str, names: list[str]) -> set[str]:
    skipped = set(_SKIP_NAMES(folder, names))
    if Path(folder).resolve() == ROOT:
        skipped |= _SKIP_TOP & set(names)
    return skipped


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_SKIP_COPY)
    out = tmp / "out"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (whl,) = out.glob("inspector-*.whl")
    return whl


def _source_files(folder: str) -> set[str]:
    return {p.relative_to(ROOT / folder).as_posix() for p in (ROOT / folder).rglob("*.py")
            if "__pycache__" not in p.parts}


@pytest.mark.slow
def test_wheel_holds_every_module_and_the_dashboard(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = {f"inspector/{f}" for f in _source_files("inspector")} - names
    assert not missing, f"modules missing from the wheel (add their package to pyproject.toml): {sorted(missing)}"
    dashboard = {f"{APP_PACKAGE}/{f}" for f in _source_files("dashboard")} | {f"{APP_PACKAGE}/.streamlit/config.toml"}
    assert f"{APP_PACKAGE}/app.py" in dashboard
    assert not dashboard - names, sorted(dashboard - names)
    assert not any(n.startswith("dashboard/") for n in names), "a top-level `dashboard` package would collide"
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"inspector", APP_PACKAGE}, tops
    (entry,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "inspector = inspector.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()


_APPTEST = """
import sys
from streamlit import config
from streamlit.testing.v1 import AppTest
import inspector, inspector.cli.dashboard as cli
PKG = sys.argv[1]
config.set_option("server.address", "127.0.0.1")  # AppTest runs no server
app = cli.app_path()
at = AppTest.from_file(str(app), default_timeout=120).run()
assert not at.exception, [e.value for e in at.exception]
assert "Loaded: builtin" in at.sidebar.caption[-1].value
mods = {m: getattr(sys.modules[m], "__file__", "") for m in sys.modules if m.split(".")[0] in ("dashboard", PKG)}
assert mods and all(m.startswith(PKG) for m in mods), sorted(mods)
print(inspector.__file__, app, *sorted(mods.values()), sep="\\n")
"""


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="POSIX paths and signals")
def test_installed_wheel_serves_the_dashboard_from_anywhere(wheel, tmp_path):
    from serving import free_port, listening_hosts, start, stop, wait_http

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # This environment's dependencies, appended after the fresh site-packages: its editable
    # install of this checkout is not activated (.pth files there are not processed).
    (site / "shared_dependencies.pth").write_text(os.path.realpath(sysconfig.get_paths()["purelib"]) + "\n")
    done = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_", "PYTHON"))}
    env.update(HF_HUB_OFFLINE="1", INSPECTOR_DASHBOARD_MODEL="builtin")

    page = subprocess.run([str(py), "-c", _APPTEST, APP_PACKAGE], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=300)
    assert page.returncode == 0, page.stdout + page.stderr
    files = page.stdout.split()
    assert files and all(f.startswith(str(site)) for f in files), files  # the installed copy, not this checkout

    port = free_port()
    proc = start([str(venv / "bin" / "inspector"), "dashboard", "--model", "builtin", "--port", str(port)],
                 elsewhere, env, tmp_path / "launcher.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", proc)
        wait_http(f"http://127.0.0.1:{port}/", proc)
        assert str(site / APP_PACKAGE / "app.py") in Path(f"/proc/{proc.pid}/cmdline").read_text().replace("\0", " ")
        hosts = listening_hosts(port)
        assert hosts is None or hosts == {"127.0.0.1"}
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        stop(proc)

    # `streamlit run` on the installed app from elsewhere, without flags: the config next to app.py applies.
    port = free_port()
    proc = start([str(py), "-m", "streamlit", "run", str(site / APP_PACKAGE / "app.py"), "--server.port", str(port),
                  "--server.headless", "true"], elsewhere, env, tmp_path / "streamlit.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", proc)
        hosts = listening_hosts(port)
        assert hosts is None or hosts == {"127.0.0.1"}
    finally:
        stop(proc)


@pytest.mark.slow
def test_an_editable_install_prints_no_warning(tmp_path):
    """``pip install -e .`` (what scripts/setup.sh runs) builds a plain ``.pth`` editable wheel: no setuptools import
    hook, so none of its "same name as your package" banner."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_SKIP_COPY, symlinks=True)
    out = tmp_path / "out"
    out.mkdir()
    code = "import setuptools.build_meta as b, sys; print(b.build_editable(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-W", "default", "-c", code, str(out)], cwd=src, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "same name as your package" not in done.stdout + done.stderr
    assert "Warning" not in done.stderr, done.stderr
    (whl,) = out.glob("inspector-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert [n for n in names if n.endswith(".pth")] and not [n for n in names if "finder" in n], names
