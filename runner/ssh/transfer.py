"""File transfers over a host's open SSH connection (SFTP): ``ct.fs_strategies.ExecutorConnection``.

The SSH backend (and Slurm through SSH) copy a task's runner-side transfers here, in its own
threads: before the task, files of this machine go to the host (``direction: download``, the
remote side being this machine); after it, the host's files come back (``upload``). Paths follow
rsync's trailing-slash rule as the worker's local copy does
(``runner.worker_transfers.copy_path``); a file is written under a temporary name and renamed
into place on both sides. A relative host path is relative to the task's directory there, a
``~/`` one to the login directory.
"""
from __future__ import annotations

import os
import stat
import threading
from typing import Any, Dict, List, Optional

import paramiko

from runner.ssh.connection import SSHError, SSHHost

Transfer = Dict[str, Any]


class TransferFailed(Exception):
    """One transfer failed; the message names the paths, the side and the reason."""


def run_transfers(host: SSHHost, transfers: List[Transfer], order: str, base: str = "") -> None:
    """Carry out the transfers of ``order`` ("before"/"after") with one SFTP session. A
    relative host path is taken from ``base`` (the task's directory there)."""
    todo = [t for t in transfers if t.get("order", "before") == order]
    if not todo:
        return
    try:
        with host.sftp() as sftp:
            for t in todo:
                _one(sftp, host, t, base)
    except TransferFailed:
        raise
    except (SSHError, paramiko.SSHException, OSError, EOFError) as exc:
        raise TransferFailed(_message(todo[0], host, f"cannot open SFTP: {exc}")) from None


def _one(sftp: paramiko.SFTPClient, host: SSHHost, t: Transfer, base: str) -> None:
    try:
        if t["direction"] == "download":  # this machine -> the task's host
            _put(sftp, t["from"], _remote(t["to"], base))
        else:  # the task's host -> this machine
            _get(sftp, _remote(t["from"], base), t["to"])
    except (OSError, paramiko.SSHException, EOFError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
            str(exc) or type(exc).__name__
        where = getattr(exc, "filename", None)
        where = f" ({where})" if where and where not in (t["from"], t["to"]) else ""
        raise TransferFailed(_message(t, host, reason + where)) from None


def _message(t: Transfer, host: SSHHost, reason: str) -> str:
    return (f"file transfer {t['from']} -> {t['to']} ({t.get('order')} the task, over the "
            f"connection to {host.label}) failed: {reason}")


def _remote(path: str, base: str) -> str:
    """A host path for SFTP, whose own relative paths start in the login directory."""
    if path.startswith("~/"):
        return path[2:]
    return path if os.path.isabs(path) or not base else os.path.join(base, path)


def _tmp(path: str) -> str:
    return f"{path}.tmp-cov-{os.getpid()}-{threading.get_ident()}"


def _target(src: str, dst: str, src_is_dir: bool, dst_is_dir: bool) -> str:
    """rsync's rule: ``dir/`` copies contents into dst; a file or ``dir`` goes into an existing
    or ``/``-ended dst folder under its own name."""
    if dst.endswith("/") or (dst_is_dir and not src.endswith("/")):
        if not (src_is_dir and src.endswith("/")):
            return os.path.join(dst, os.path.basename(src.rstrip("/")))
    return dst.rstrip("/") or dst


def _remote_isdir(sftp: paramiko.SFTPClient, path: str) -> Optional[bool]:
    try:
        return stat.S_ISDIR(sftp.stat(path).st_mode or 0)
    except IOError:
        return None


def _remote_makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    if not path or path in ("/", "."):
        return
    if _remote_isdir(sftp, path):
        return
    _remote_makedirs(sftp, os.path.dirname(path.rstrip("/")))
    try:
        sftp.mkdir(path)
    except IOError:
        if not _remote_isdir(sftp, path):
            raise


def _put(sftp: paramiko.SFTPClient, local: str, remote: str) -> None:
    if not os.path.exists(local):
        raise FileNotFoundError(2, "no such file or directory on this machine", local)
    is_dir = os.path.isdir(local)
    dst = _target(local, remote, is_dir, bool(_remote_isdir(sftp, remote.rstrip("/") or "/")))
    if not is_dir:
        _remote_makedirs(sftp, os.path.dirname(dst))
        tmp = _tmp(dst)
        sftp.put(local, tmp)
        sftp.posix_rename(tmp, dst)
        return
    for root, _dirs, names in os.walk(local):
        rel = os.path.relpath(root, local)
        here = dst if rel == "." else os.path.join(dst, rel)
        _remote_makedirs(sftp, here)
        for name in names:
            tmp = _tmp(os.path.join(here, name))
            sftp.put(os.path.join(root, name), tmp)
            sftp.posix_rename(tmp, os.path.join(here, name))


def _get(sftp: paramiko.SFTPClient, remote: str, local: str) -> None:
    kind = _remote_isdir(sftp, remote.rstrip("/") or "/")
    if kind is None:
        raise FileNotFoundError(2, "no such file or directory on the task's host", remote)
    dst = _target(remote, local, kind, os.path.isdir(local))
    if not kind:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        tmp = _tmp(dst)
        try:
            sftp.get(remote, tmp)
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    _get_tree(sftp, remote.rstrip("/"), dst)


def _get_tree(sftp: paramiko.SFTPClient, remote: str, local: str) -> None:
    os.makedirs(local, exist_ok=True)
    for entry in sftp.listdir_attr(remote):
        src, dst = f"{remote}/{entry.filename}", os.path.join(local, entry.filename)
        if stat.S_ISDIR(entry.st_mode or 0):
            _get_tree(sftp, src, dst)
        else:
            tmp = _tmp(dst)
            sftp.get(src, tmp)
            os.replace(tmp, dst)
