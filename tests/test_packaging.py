"""The package as a user gets it: `python -m build` makes a wheel and an sdist that pass
`twine check` (the README renders as the package page) and install into a clean virtual
environment, where the command runs."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from aioecho import __version__

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, timeout: float = 240) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


@pytest.mark.timeout(600)
def test_wheel_and_sdist_build_check_and_install(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
    wheel, sdist = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheel) == 1 and len(sdist) == 1
    with zipfile.ZipFile(wheel[0]) as archive:  # the metadata says MIT: the text goes along
        licenses = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses and b"MIT License" in archive.read(licenses[0])
    checked = run(sys.executable, "-m", "twine", "check", "--strict", *wheel, *sdist)
    assert checked.count("PASSED") == 2
    for package in (wheel[0], sdist[0]):
        env = tmp_path / f"venv-{package.suffix.strip('.')}"
        venv.create(env, with_pip=True)
        run(env / "bin" / "python", "-m", "pip", "install", "-q", package)
        assert run(env / "bin" / "aioecho", "--version") == f"aioecho {__version__}\n"
        assert "_shtab_aioecho" in run(env / "bin" / "aioecho", "completion", "bash")
        marker = (
            "import aioecho, pathlib; print(pathlib.Path(aioecho.__file__).with_name('py.typed'))"
        )
        assert Path(run(env / "bin" / "python", "-c", marker).strip()).exists()


@pytest.mark.timeout(600)
def test_pipx_installs_the_command_alone(tmp_path: Path) -> None:
    env = {
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pipx", "install", str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert run(tmp_path / "bin" / "aioecho", "--version") == f"aioecho {__version__}\n"
