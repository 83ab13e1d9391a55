"""SSH for cov: one reused connection per host, and what a host needs to run a task.

Modules:

``runner.ssh.hostspec``
    ``HostSpec`` (where and how to connect, from an executor's parameters or
    ``user@host:port``), ``RemoteResult``, and the errors ``SSHError``, ``ConnectFailed``,
    ``AuthFailed``, ``HostKeyError``, ``ConnectionLost``, ``RemoteCommandFailed``.

``runner.ssh.hostkeys``
    ssh_config files and host-key checking as OpenSSH does them.

``runner.ssh.connection``
    ``SSHHost`` (one lazily opened, lock-guarded Fabric connection with reconnect and backoff:
    ``run``, ``channel``, ``sftp``, ``put_bytes``) and ``pool()`` (the process-wide ``SSHPool``:
    one ``SSHHost`` per distinct spec); re-exports the names above.

``runner.ssh.remote``
    ``PythonSetup`` (python command, prelude, conda env), ``probe`` (remote Python and
    cloudpickle versions, no writes), ``prepare`` (uploads ``worker.py``, the persistent
    worker and, when needed, cloudpickle; returns a ``RemoteEnv`` that builds the shell lines
    running them), and ``compare_versions`` (can tasks pickled here be loaded there?).

``runner.ssh.worker_server`` / ``runner.ssh.task_server``
    The persistent worker: one Python per host, on one channel, forking a child per task;
    and the runner's client of it (``TaskServer``), which hands each task's pid, live
    output and result files to the thread waiting for it.

``runner.ssh.protocol``
    The shell scripts that start a bundle with ``setsid``, wait for it and send its files back
    over one channel (``launch_script``, ``recover_script``, ``kill_line``, ``remove_line``), and
    ``ChannelReader`` for their output (and the persistent worker's).

``runner.ssh.transfer``
    File transfers over the connection's SFTP (``ct.fs_strategies.ExecutorConnection``).

Used by ``runner.backends.ssh`` and the Slurm backend's SSH mode.

Example::

    from runner.ssh import HostSpec, pool

    host = pool().host(HostSpec.parse("alice@login1:22", ssh_config="~/.ssh/config"))
    print(host.run("hostname", check=True).text)
"""
from __future__ import annotations

from runner.ssh.connection import (AuthFailed, ConnectFailed, ConnectionLost, HostKeyError,
                                   HostSpec, RemoteCommandFailed, RemoteResult, SSHError,
                                   SSHHost, SSHPool, pool)
from runner.ssh.remote import (PythonSetup, RemoteEnv, VersionReport, compare_versions,
                               prepare, probe)

__all__ = [
    "AuthFailed", "ConnectFailed", "ConnectionLost", "HostKeyError", "HostSpec",
    "RemoteCommandFailed", "RemoteResult", "SSHError", "SSHHost", "SSHPool", "pool",
    "PythonSetup", "RemoteEnv", "VersionReport", "compare_versions", "prepare", "probe",
]
