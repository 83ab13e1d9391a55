"""The SSH backend (``SSHBackend``): tasks run on another host over one reused connection.

Modules:
    backend   ``SSHBackend``: the threads, starting an attempt on the host's persistent worker
              (or with a shell launcher per task), recovery after a lost connection, cancel
    attempt   one attempt's files on the host and what comes back of them (outcome, logs,
              live output), written into the run directory
"""
from runner.backends.ssh.backend import SSHBackend, effective_config

__all__ = ["SSHBackend", "effective_config"]
