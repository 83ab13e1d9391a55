"""File transfer strategies (``ct.fs_strategies``): how a ``ct.fs.FileTransfer`` copies.

A strategy here is a small declaration; the copying happens at run time, where docs/executors.md
("File transfers") says: ``Shutil`` and ``Rsync`` in the task's own process on the task's host
(as Covalent runs them, as call_before/call_after hooks), ``ExecutorConnection`` in the runner,
over the connection the task's executor already has. Each becomes a plain dict (``to_plain``)
that the worker, which has nothing but the standard library and cloudpickle, carries out.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional


class FileTransferStrategy:
    """Base of the strategies (Covalent's ``FileTransferStrategy``)."""

    kind = "base"
    remote_ok = True  # whether one side of a transfer may be remote

    def to_plain(self) -> Dict[str, Any]:
        return {"kind": self.kind}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if v)
        return f"{type(self).__name__}({params})"


class Shutil(FileTransferStrategy):
    """Copy on the task's host with ``shutil`` (files, and folders as a tree). Local paths
    only, as in Covalent."""

    kind = "shutil"
    remote_ok = False


class Rsync(FileTransferStrategy):
    """``rsync -a``, run on the task's host: between two local paths, or with a remote side
    over ssh to ``user@host`` (with ``private_key_path``).

    cov additions: ``port``, ``ssh_config`` (an OpenSSH client config file, ``ssh -F``); ssh
    always runs with ``BatchMode=yes``, so a missing key fails instead of waiting for a
    password.
    """

    kind = "rsync"

    def __init__(self, user: Optional[str] = "", host: Optional[str] = "",
                 private_key_path: Optional[str] = None, *, port: Optional[int] = None,
                 ssh_config: Optional[str] = None) -> None:
        self.user = user or ""
        self.host = host or ""
        self.private_key_path = private_key_path
        self.port = port
        self.ssh_config = ssh_config
        if private_key_path and not os.path.exists(os.path.expanduser(private_key_path)):
            raise FileNotFoundError(f"Provided private key ({private_key_path}) does not exist. "
                                    "Could not instantiate Rsync File Transfer Strategy.")

    def to_plain(self) -> Dict[str, Any]:
        return {"kind": self.kind, "user": self.user, "host": self.host,
                "key": os.path.expanduser(self.private_key_path) if self.private_key_path else "",
                "port": int(self.port) if self.port else 0, "ssh_config": self.ssh_config or ""}


class ExecutorConnection(FileTransferStrategy):
    """cov's own: copy between the machine cov runs on and the task's host, the way the task's
    executor reaches that host (SSH executor: SFTP over its open connection; local executor and
    Slurm on the login node: a local copy). The *remote* side of a transfer is the machine cov
    runs on: ``TransferFromRemote(here, there)`` copies a file of this machine to the task's
    host before the task, ``TransferToRemote(here, there)`` copies the task's file back after
    it."""

    kind = "executor"


class _Unsupported(FileTransferStrategy):
    """A Covalent strategy cov does not implement: using it says so at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            f"ct.fs_strategies.{type(self).__name__} is not supported by cov; use Rsync or "
            "Shutil, or ExecutorConnection to copy over the executor's own connection")


class HTTP(_Unsupported):
    """Not supported by cov."""


class S3(_Unsupported):
    """Not supported by cov."""


class Blob(_Unsupported):
    """Not supported by cov."""


class GCloud(_Unsupported):
    """Not supported by cov."""


__all__ = ["FileTransferStrategy", "Shutil", "Rsync", "ExecutorConnection", "HTTP", "S3",
           "Blob", "GCloud"]
