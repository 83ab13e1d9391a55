"""SSH for cov: one reused connection per host, and what a host needs to run a task.

Three modules:

``runner.ssh.connection``
    ``HostSpec`` (where and how to connect, from an executor's parameters or ``user@host:port``),
    ``SSHHost`` (one lazily opened, lock-guarded Fabric connection with reconnect and backoff:
    ``run``, ``channel``, ``put_bytes``), ``pool()`` (the process-wide
    ``SSHPool``: one ``SSHHost`` per distinct spec), and the errors ``SSHError``,
    ``ConnectFailed``, ``AuthFailed``, ``HostKeyError``, ``ConnectionLost``,
    ``RemoteCommandFailed``.

``runner.ssh.remote``
    ``PythonSetup`` (python command, prelude, conda env), ``probe`` (remote Python and
    cloudpickle versions, no writes), ``prepare`` (uploads ``worker.py`` and, when needed,
    cloudpickle; returns a ``RemoteEnv`` that builds the shell line running a task), and
    ``compare_versions`` (can tasks pickled here be loaded there?).

``runner.ssh.protocol``
    The shell scripts that start a bundle with ``setsid``, wait for it and send its files back
    over one channel (``launch_script``, ``recover_script``, ``kill_line``, ``remove_line``), and
    ``ChannelReader`` for their output. Used by ``runner.backends.ssh``.

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
