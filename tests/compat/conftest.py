"""Environments where cov is *installed* (``pip install .`` and ``pip install -e .``), for the
tests of ``import covalent`` outside ``cov dispatch``; and a directory shared with the SSH
test user, for the file-transfer tests.

Each is a fresh virtual environment without the test venv's cov: its other packages (click,
cloudpickle, nbconvert, ipykernel, setuptools, pytest ...) come from the test venv through a
directory of links that leaves out every cov file, so the install under test is the only cov
there and pip never sees (or touches) the test venv's own cov.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import pytest

from tests.conftest import REPO

# Test-venv entries that are cov's own (or would give the install a second cov).
_COV_ENTRIES = ("covalent", "covalent_cli", "runner", "webui", "_cov_import_hook", "cov-",
                "__editable__", "__pycache__")


@dataclass
class Env:
    """A virtual environment with cov installed one way."""

    root: Path
    mode: str  # "wheel" | "editable"

    @property
    def python(self) -> str:
        return str(self.root / "bin" / "python")

    @property
    def site_packages(self) -> Path:
        return next((self.root / "lib").glob("python3*/site-packages"))

    def run(self, *args: str, cwd: Path, env: Dict[str, str], timeout: float = 180,
            python: bool = True) -> "subprocess.CompletedProcess[str]":
        """Run ``python ARGS`` (or an installed script, ``python=False``) in this env."""
        clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        command = [self.python, *args] if python else [str(self.root / "bin" / args[0]),
                                                        *args[1:]]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              cwd=str(cwd), env={**clean, **env}, stdin=subprocess.DEVNULL)


def _deps_dir(target: Path) -> Path:
    """Links to every package of the test venv except cov's."""
    source = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for entry in source.iterdir():
        if entry.name.startswith(_COV_ENTRIES) or entry.suffix == ".pth":
            continue
        (target / entry.name).symlink_to(entry)
    return target


def _make_env(base: Path, mode: str, deps: Path) -> Env:
    root = base / f"venv-{mode}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   capture_output=True)
    env = Env(root, mode)
    (env.site_packages / "_test_deps.pth").write_text(f"{deps}\n")
    install = ["-e", str(REPO)] if mode == "editable" else [str(REPO)]
    # As users install: pip's isolated build with the setuptools pyproject.toml asks for.
    proc = subprocess.run([env.python, "-m", "pip", "install", "-q", "--no-deps", *install],
                          capture_output=True, text=True, timeout=300, cwd=str(base),
                          stdin=subprocess.DEVNULL,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    return env


@pytest.fixture(scope="session")
def installed_envs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Env]]:
    """``{"wheel": Env, "editable": Env}``, made once per session."""
    base = tmp_path_factory.mktemp("installed")
    deps = _deps_dir(base / "deps")
    yield {mode: _make_env(base, mode, deps) for mode in ("wheel", "editable")}


@pytest.fixture(params=["wheel", "editable"])
def installed(request: pytest.FixtureRequest, installed_envs: Dict[str, Env]) -> Env:
    """One env per install mode (a test using it runs twice)."""
    return installed_envs[request.param]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the test user can write to (the ssh side of a transfer). Not under pytest's
    own temporary tree: another pytest session of this user makes that 0700 again."""
    path = Path(tempfile.mkdtemp(prefix="cov-ft-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
