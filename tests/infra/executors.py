"""Fixtures for tests that run tasks on the session's Slurm cluster through its SSH "login
node" (``SlurmExecutor(address=...)``): the login environment the executor sources, and the
executor's connection arguments.

Registered as a plugin in ``tests/conftest.py``. Nothing here imports the project's packages.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.infra.fixtures import SlurmCluster, SSHHost

__all__ = ["SlurmLogin", "slurm_login"]


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
