"""scripts/run and scripts/test (README "Quick start"): the .venv they make for themselves.

No package is installed here: each case runs `scripts/_venv.sh` in a copy holding only it and
pyproject.toml, with the package index switched off (PIP_NO_INDEX), so the install itself
fails fast; what is checked is the .venv it leaves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _copy(folder: Path) -> Path:
    (folder / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "_venv.sh", folder / "scripts" / "_venv.sh")
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    return folder


def _venv_sh(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(folder),
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHON": sys.executable,
        **env,
    }
    return subprocess.run(
        ["bash", "-c", "source scripts/_venv.sh"],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _has_pip(folder: Path) -> bool:
    found = subprocess.run(
        [str(folder / ".venv" / "bin" / "python"), "-m", "pip", "--version"],
        capture_output=True,
        timeout=60,
    )
    return found.returncode == 0


def test_a_venv_left_without_pip_is_made_again(tmp_path: Path) -> None:
    """Debian and Ubuntu ship Python without ensurepip (the python3-venv package): there
    `python3 -m venv .venv` stops after creating .venv/bin/python and says to install the
    package and recreate the environment. Run again after that, scripts/run saw a .venv and
    went straight to `.venv/bin/python -m pip` ("No module named pip") on every later try,
    until .venv was deleted by hand. (`venv --without-pip` leaves the same .venv.)"""
    folder = _copy(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(folder / ".venv")],
        check=True,
        timeout=120,
    )
    assert not _has_pip(folder)
    result = _venv_sh(folder)
    assert "No module named pip" not in result.stderr, result.stderr
    assert "making it again" in result.stderr, result.stderr
    assert _has_pip(folder), result.stderr


def test_a_python_older_than_the_project_needs_is_said_at_once(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    result = _venv_sh(folder, PYTHON="false")
    assert result.returncode == 1
    assert result.stderr.strip() == "scripts: PYTHON=false is not a Python 3.11 or newer"
    assert not (folder / ".venv").exists()
