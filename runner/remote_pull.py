"""``cov pull HOST RUN``: a host's run directory copied here over SFTP, ended or not.

Incremental: a file whose size and mtime match the local copy is skipped, and the event
journal (append-only) is extended by its new tail only. Every file is written under a
temporary name and renamed; a run pulled for the first time is assembled under a ``.tmp-``
name and renamed into the home.

Consistent while the host's runner writes: the journal's size is read *before* the other
files are listed, and only that much of it (up to its last whole line) is copied, after
them. A runner writes a task's result before the event that says it ended, so every end
event copied has its result file here; a result that arrived without its event is harmless
(the task just looks unfinished until the next pull).

A pulled run carries ``pulled-from.json`` (``runner.snapshot``), written before the copy
becomes visible: no runner here serves it (the host's runner owns it).
"""
from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Iterator, Tuple

import paramiko

from runner.fs import DIR_MODE
from runner.layout import EVENTS, TMP_PREFIX
from runner.remote_run import RemoteCov, RemoteRunError
from runner.snapshot import mark_pulled

_TAIL_CHECK = 256  # bytes of the local journal's end compared with the host's before appending


def pull(remote: RemoteCov, remote_home: str, dispatch_id: str, local_home: Path,
         status: str = "") -> Tuple[Path, int]:
    """Copy the host's run into ``local_home`` (only what changed); returns the local run
    directory and how many files were copied (or extended). ``status``: the run's status
    there, recorded in its ``pulled-from.json``."""
    source = f"{remote_home.rstrip('/')}/{dispatch_id}"
    final = local_home / dispatch_id
    local_home.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    first = not final.exists()
    dest = local_home / f"{TMP_PREFIX}pull-{dispatch_id}.{uuid.uuid4().hex[:8]}" if first \
        else final
    copied = 0
    try:
        with remote.host.sftp() as sftp:
            try:
                journal_size = sftp.stat(f"{source}/{EVENTS}").st_size or 0
            except FileNotFoundError:
                raise RemoteRunError(f"no run {dispatch_id} in {remote_home} on {remote.name}; "
                                     f"list them: cov runs --on {remote.name}",
                                     remote.name) from None
            dest.mkdir(mode=DIR_MODE, exist_ok=True)
            mark_pulled(dest, remote.name, remote_home, status)  # before it is visible
            for rel, attr in sorted(_walk(sftp, source, "")):
                if rel != EVENTS and _copy_if_changed(sftp, f"{source}/{rel}", dest / rel, attr):
                    copied += 1
            if _copy_journal(sftp, f"{source}/{EVENTS}", dest / EVENTS, journal_size):
                copied += 1
    except (paramiko.SSHException, OSError, EOFError) as exc:
        if first:
            shutil.rmtree(dest, ignore_errors=True)
        raise RemoteRunError(f"pulling {dispatch_id} from {remote.name} failed: {exc}; run "
                             f"cov pull again (it copies only what is missing)",
                             remote.name) from None
    if first:
        try:
            os.rename(dest, final)
        except OSError:  # another pull got there first: its copy is as good
            shutil.rmtree(dest, ignore_errors=True)
    return final, copied


def _walk(sftp: paramiko.SFTPClient, root: str, rel: str
          ) -> Iterator[Tuple[str, paramiko.SFTPAttributes]]:
    for attr in sftp.listdir_attr(f"{root}/{rel}" if rel else root):
        name = f"{rel}/{attr.filename}" if rel else attr.filename
        mode = attr.st_mode or 0
        if stat.S_ISDIR(mode):
            yield from _walk(sftp, root, name)
        elif stat.S_ISREG(mode) and ".tmp" not in attr.filename:
            yield name, attr


def _copy_if_changed(sftp: paramiko.SFTPClient, remote: str, local: Path,
                     attr: paramiko.SFTPAttributes) -> bool:
    try:
        have = local.stat()
        if have.st_size == attr.st_size and int(have.st_mtime) == int(attr.st_mtime or 0):
            return False
    except FileNotFoundError:
        pass
    local.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = _tmp_name(local)
    try:
        sftp.get(remote, str(tmp))
        os.chmod(tmp, stat.S_IMODE(attr.st_mode or 0o600))
        os.utime(tmp, (attr.st_atime or 0, attr.st_mtime or 0))
        os.replace(tmp, local)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def _copy_journal(sftp: paramiko.SFTPClient, remote: str, local: Path, size: int) -> bool:
    """The host's journal up to ``size`` bytes, cut after its last whole line; only the new
    tail travels when the local copy is a prefix of it. Whether anything changed."""
    with sftp.open(remote, "rb") as f:
        have = _local_size(local)
        keep = b""
        if 0 < have <= size:
            with open(local, "rb") as mine:
                mine.seek(max(0, have - _TAIL_CHECK))
                mine_end = mine.read()
            f.seek(have - len(mine_end))
            if f.read(len(mine_end)) == mine_end:
                keep = local.read_bytes()
        f.seek(len(keep))
        new = f.read(size - len(keep)) if size > len(keep) else b""
    new = new[:new.rfind(b"\n") + 1]  # a line being written stays for the next pull
    if keep and not new:
        return False
    tmp = _tmp_name(local)
    try:
        with open(tmp, "wb") as out:
            out.write(keep + new)
        os.chmod(tmp, 0o600)
        os.replace(tmp, local)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def _local_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _tmp_name(local: Path) -> Path:
    return local.with_name(f"{local.name}.tmp-pull-{os.getpid()}")


__all__ = ["pull"]

