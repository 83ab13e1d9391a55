"""Helpers and fixtures for tests that run tasks on the real executors: named executors in
the test's config, workflow scripts dispatched and waited for with the ``cov`` CLI, the runs
home for the session's Slurm cluster, and that cluster reached through its SSH "login node"
(``SlurmExecutor(address=...)``).

Registered as a plugin in ``tests/conftest.py``. Nothing here imports the project's packages.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest

from tests.infra.fixtures import SlurmCluster, SSHHost

__all__ = ["SlurmLogin", "add_to_config", "dispatch_script", "run_result", "slurm_home",
           "slurm_login", "wait_status"]


def add_to_config(text: str) -> None:
    """Append YAML ``text`` (dedented), e.g. an ``executors:`` section, to this test's config
    file: ``$COV_CONFIG``, which the ``cov_home`` fixture makes."""
    config = Path(os.environ["COV_CONFIG"])
    config.write_text(config.read_text() + textwrap.dedent(text))


PRINTING_SWEEP = Path(__file__).resolve().parents[2] / "workflows" / "printing_sweep.py"


def printing_sweep_on(executor: str) -> str:
    """The source of ``workflows/printing_sweep.py`` (``many(n)``: n tasks that each print a
    line, and their sum) with its printing tasks on ``executor`` (Python source of one)."""
    source = PRINTING_SWEEP.read_text()
    plain = "@ct.electron\ndef echo("
    assert plain in source, f"{PRINTING_SWEEP} no longer has {plain!r}"
    return source.replace(plain, f"@ct.electron(executor={executor})\ndef echo(", 1)


def dispatch_script(run_cov: Callable, folder: Path, source: str, *args: str) -> str:
    """``cov dispatch -q`` a new workflow script in ``folder``: ``source`` (dedented) after
    ``import covalent as ct`` and ``import hashlib, os, time``. ``args`` go to ``cov dispatch``.
    Returns the run id."""
    script = folder / f"wf_{time.monotonic_ns()}.py"
    script.write_text("import covalent as ct\nimport hashlib, os, time\n" + textwrap.dedent(source))
    result = run_cov("dispatch", str(script), "-q", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def wait_status(run_cov: Callable, run_id: str, timeout: float = 60) -> Dict[str, Any]:
    """``cov wait`` for the run (``timeout`` seconds at most), then its ``cov status --json``."""
    run_cov("wait", run_id, "--timeout", str(timeout), "-q", timeout=timeout + 30)
    result = run_cov("status", run_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_result(run_cov: Callable, run_id: str) -> Any:
    """The run's result, from ``cov result --json``."""
    result = run_cov("result", run_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["result"]


@pytest.fixture
def slurm_home(cov_home: Path, slurm_cluster: SlurmCluster) -> Path:
    """``cov_home`` plus a named executor ``cluster`` (type slurm on the session's cluster,
    fast polling)."""
    add_to_config("""\
        executors:
          cluster:
            type: slurm
            poll_freq: 0.3
            missing_grace: 1
            options:
              partition: debug
        """)
    return cov_home


@dataclass(frozen=True)
class SlurmLogin:
    """The session's Slurm cluster reached through ``host`` (the loopback sshd, as the SSH
    test user): sbatch/squeue on that host find the cluster through ``env_file``."""

    host: SSHHost
    cluster: SlurmCluster
    env_file: Path
    """``export SLURM_CONF=...`` in the SSH user's home, owned by that user: what a login node's
    shell profile would set (the executor's ``bashrc_path``)."""

    def executor_args(self, remote_workdir: str) -> str:
        """``SlurmExecutor`` keyword arguments that reach the cluster through ``host``, as
        source text for a workflow script: ``address``, ``ssh_config``, ``bashrc_path`` and
        ``remote_workdir``."""
        return (f"address={self.host.name!r}, ssh_config={self.host.ssh_config!r}, "
                f"bashrc_path='~/{self.env_file.name}', remote_workdir={remote_workdir!r}")


@pytest.fixture(scope="session")
def slurm_login(slurm_cluster: SlurmCluster, sshd_host: SSHHost) -> Iterator[SlurmLogin]:
    """The login environment for Slurm-through-SSH tests, written once per session.

    The file is named after this session's infrastructure directory: test sessions running
    at the same time each have their own cluster, and must not point each other's jobs at
    the wrong one. Removed at the end of the session."""
    session = slurm_cluster.dir.parent.name  # /tmp/cov-infra-XXXXXXXX, one per session
    env_file = Path(f"/home/{sshd_host.username}/.cov-test-slurm-env-{session}")
    env_file.write_text(f"export SLURM_CONF={slurm_cluster.conf}\n")
    subprocess.run(["chown", f"{sshd_host.username}:", str(env_file)], check=True)
    try:
        yield SlurmLogin(sshd_host, slurm_cluster, env_file)
    finally:
        env_file.unlink(missing_ok=True)
