"""cov shipping itself to a host without cov (``runner.self_ship``), against the real loopback
sshd as user ``covtest``.

The host's Python is the system's ``/usr/bin/python3`` with nothing of cov's on its path (no
``PYTHONPATH`` in the executor's prelude): what ``--on`` needs there, cov brings.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from runner.layout import SHIPPED_COV_PREFIX, SSH_LIB, TMP_PREFIX
from tests.cli.test_remote import (REMOTE_PYTHON, SCRIPT, ns_remote, remote,  # noqa: F401
                                   remote_path)
from tests.conftest import REPO


@pytest.fixture
def bare(remote: Dict[str, Path]) -> Iterator[Dict[str, Path]]:  # noqa: F811
    """Executor ``bare``: the same account, runs home and config as ``lab``, but a Python
    without cov, and a cache of its own for the shipped copy."""
    cache = remote["home"].parent / "cache"
    config = Path(os.environ["COV_CONFIG"])
    config.write_text(config.read_text() + "".join(f"  {line}\n" for line in [
        "bare:", "  type: ssh", "  hostname: covtest", f"  python_path: {REMOTE_PYTHON}",
        f"  remote_cache: {cache}", "  prelude:", f"    - export COV_HOME={remote['home']}",
        f"    - export COV_CONFIG={remote['config']}"]))
    assert subprocess.run(["runuser", "-u", "covtest", "--", "env", "-i", REMOTE_PYTHON, "-c",
                           "import runner"], capture_output=True, cwd="/").returncode != 0
    yield {**remote, "cache": cache}


def _shipped(cache: Path) -> List[Path]:
    lib = cache / SSH_LIB
    return sorted(p for p in lib.iterdir() if p.name.startswith(SHIPPED_COV_PREFIX)) \
        if lib.exists() else []


def _write_script(tmp_path: Path) -> Path:
    script = tmp_path / "wf.py"
    script.write_text(SCRIPT)
    return script


def test_a_host_without_cov_gets_it_shipped_once_per_version(
        bare: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:
    script = _write_script(tmp_path)
    done = run_cov("dispatch", "--on", "bare", str(script), "-a", "x=4", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["result"] == ["covtest", 8]
    (copy,) = _shipped(bare["cache"])
    assert copy.stat().st_uid == 1001 and copy.stat().st_mode & 0o777 == 0o700
    assert (copy / "runner" / "__init__.py").is_file() and (copy / "cloudpickle").is_dir()
    assert (copy / "webui" / "templates").is_dir()
    assert not list(copy.rglob("*.so"))  # compiled parts stay behind (PyYAML's C loader)
    assert not list((bare["cache"] / SSH_LIB).glob(f"{TMP_PREFIX}*"))
    status = run_cov("status", "--on", "bare", "latest", "--json")  # relayed through it too
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "COMPLETED"

    # A second dispatch reuses the copy: the same directory, not shipped again.
    inode = copy.stat().st_ino
    (copy / "left-by-the-test").write_text("")
    again = run_cov("dispatch", "--on", "bare", str(script), "--wait", "-q")
    assert again.returncode == 0, again.stderr
    assert _shipped(bare["cache"]) == [copy] and copy.stat().st_ino == inode
    assert (copy / "left-by-the-test").exists()

    # Another cov here (a changed file) ships anew, beside the first.
    changed = tmp_path / "changed"
    for package in ("covalent_cli", "runner", "webui"):
        shutil.copytree(REPO / package, changed / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "_cov_import_hook.py", changed)
    with open(changed / "runner" / "__init__.py", "a") as f:
        f.write("\n# another version\n")
    newer = run_cov("dispatch", "--on", "bare", str(script), "--wait", "--json",
                    cwd=changed, env={"PYTHONPATH": str(changed)})  # python -m: cwd first
    # (dispatched from a directory of root's 0700 tree: the tasks start in their run
    # directory there, not in this machine's working directory)
    assert newer.returncode == 0, newer.stdout
    assert json.loads(newer.stdout)["runs"][0]["result"] == ["covtest", 6]
    shipped = _shipped(bare["cache"])
    assert len(shipped) == 2 and copy in shipped
    (new_copy,) = [p for p in shipped if p != copy]
    assert (new_copy / "runner" / "__init__.py").read_text().endswith("# another version\n")
    assert _local_runs(cov_home) == []


def _local_runs(home: Path) -> list:
    return sorted(p.name for p in home.iterdir() if not p.name.startswith(".")) \
        if home.exists() else []


def test_a_dropped_ship_leaves_nothing_and_the_next_one_arrives_whole(
        bare: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:
    """The host's unpacker reads a stream cut short, as when the connection drops mid-way
    (cut inside a file, and cut at a file's end before the completion marker): no copy
    appears, and nothing is left under a temporary name."""
    from covalent_cli.cli.remote_on import remote_cov
    from runner.self_ship import UNPACK, bundle_path, local_bundle

    bare_cov = remote_cov("bare")
    path = bundle_path(bare_cov.remote_cache)
    line = bare_cov.setup.command(["-c", UNPACK, path])
    whole = local_bundle().tar()
    last_file_end = whole.rindex(local_bundle().files[-1][1]) + len(local_bundle().files[-1][1])
    for cut in (len(whole) // 2, -(-last_file_end // 512) * 512):
        result = bare_cov.host.run(line, input=whole[:cut], timeout=None)
        assert not result.ok
        assert _shipped(bare["cache"]) == []
        assert not list((bare["cache"] / SSH_LIB).glob(f"{TMP_PREFIX}*"))
    bare_cov.host.close()

    script = _write_script(tmp_path)
    done = run_cov("dispatch", "--on", "bare", str(script), "--wait", "-q")
    assert done.returncode == 0, done.stderr
    assert len(_shipped(bare["cache"])) == 1


def test_a_shipped_cov_refuses_host_executors_that_need_fabric(
        bare: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:
    """fabric is compiled (not shipped): a host config with an SSH executor is refused in one
    line naming what to install, before anything is copied."""
    bare["config"].write_text(bare["config"].read_text() +
                              "executors:\n  far:\n    type: ssh\n    hostname: elsewhere\n")
    done = run_cov("dispatch", "--on", "bare", str(_write_script(tmp_path)))
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "far" in lines[0] and "pip install --user fabric" in lines[0]
    assert not (bare["home"].exists() and _local_runs(bare["home"]))


@pytest.fixture
def python312() -> Iterator[str]:
    """Python 3.12 where covtest can run it: pyenv's (under root's 0700 home) bind-mounted
    read-only into a world-readable directory."""
    source = Path("/root/.pyenv/versions/3.12.1")
    if not (source / "bin" / "python3.12").exists():
        pytest.skip("no Python 3.12 on this machine")
    mount = Path(os.environ.get("COV_INFRA_TMPDIR", "/tmp")) / f"cov-py312-{os.getpid()}"
    mount.mkdir(mode=0o755)
    try:
        subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(mount)], check=True)
        try:
            # (it finds libpython through an absolute rpath under /root)
            yield f"env LD_LIBRARY_PATH={mount / 'lib'} {mount / 'bin' / 'python3.12'}"
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    finally:
        mount.rmdir()


def test_a_host_python_of_another_minor_version_is_refused_in_one_line(
        bare: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path,
        python312: str) -> None:
    config = Path(os.environ["COV_CONFIG"])
    config.write_text(config.read_text().replace(
        f"python_path: {REMOTE_PYTHON}\n    remote_cache",
        f"python_path: {python312}\n    remote_cache"))
    done = run_cov("dispatch", "--on", "bare", str(_write_script(tmp_path)))
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "Python 3.12" in lines[0] and "3.11" in lines[0] and "Traceback" not in done.stderr
    assert _shipped(bare["cache"]) == []  # refused before anything was copied


def test_shipped_through_proxyjump_to_a_namespace_host(
        ns_remote: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:  # noqa: F811
    """Executor ``bare-ns``: the namespace host behind a ProxyJump, its Python without cov."""
    cache = ns_remote["home"].parent / "cache-ns"
    config = Path(os.environ["COV_CONFIG"])
    config.write_text(config.read_text() + "".join(f"  {line}\n" for line in [
        "bare-ns:", "  type: ssh", "  hostname: ns-jump", f"  python_path: {REMOTE_PYTHON}",
        f"  remote_cache: {cache}", "  prelude:", f"    - export COV_HOME={ns_remote['home']}",
        f"    - export COV_CONFIG={ns_remote['config']}"]))
    script = tmp_path / "where.py"
    script.write_text("import socket\nimport covalent as ct\n\n@ct.electron\ndef where():\n"
                      "    return socket.gethostname()\n\n@ct.lattice\ndef wf():\n"
                      "    return where()\n")
    done = run_cov("dispatch", "--on", "bare-ns", str(script), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["result"] == str(ns_remote["hostname"])
    assert len(_shipped(cache)) == 1
