"""Atomic file writes, the modes of what cov creates, and filesystem-type detection.

Every file of a run directory is written to a temporary name in the same directory and renamed
into place, so a reader sees the old file or the new one, never half of one. ``fsync`` (which
protects against a machine crash, not a killed process) is optional per call: it costs
milliseconds, so hot paths batch it (see docs/run-directory.md, "Durability").

What cov creates is its owner's only (``FILE_MODE``, ``DIR_MODE``): run directories hold task
inputs, results and logs, and a login node has hundreds of accounts. The mode is given to the
``open``/``mkdir`` that creates the file, so it costs nothing; a umask can only narrow it.
"""
from __future__ import annotations

import os
import secrets
import stat
from typing import Iterable, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

FILE_MODE = 0o600  # files cov creates (runner/worker.py, which imports nothing, repeats it)
DIR_MODE = 0o700  # directories cov creates: the runs home, run directories, results/, logs/

# Filesystems on which inotify does not see other hosts' writes and flock may be a no-op.
NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "beegfs",
     "fuse.glusterfs", "glusterfs", "ceph", "fuse.ceph", "afs", "panfs", "9p", "fuse.s3fs"}
)


def atomic_write(path: PathLike, data: Union[bytes, Iterable[bytes]], fsync: bool = False,
                 mode: int = FILE_MODE) -> None:
    """Write ``data`` (bytes, or pieces of it made as they are written: a large file need
    not be held whole) to ``path`` through a temporary name and a rename; the file gets
    ``mode`` (owner-only by default)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        for piece in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        fsync_dir(os.path.dirname(path) or ".")


def append_whole(fd: int, data: bytes, start: int) -> None:
    """Write all of ``data`` at the end of ``fd`` (an append, now at ``start`` bytes) or
    nothing: what a failed write (a full disk) left is cut off again, so an event log never
    keeps half an event (the caller holds the run lock)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.ftruncate(fd, start)
        raise


def write_private(path: "os.PathLike[str]", data: bytes) -> None:
    """Write a file only its owner can read (0600, in a 0700 directory), atomically: the
    modes are the secrets' own, whatever ``FILE_MODE`` and ``DIR_MODE`` become."""
    parent = os.path.dirname(os.fspath(path))
    try:
        os.mkdir(parent, 0o700)  # not its parents: a run directory removed stays removed
    except FileExistsError:
        pass
    os.chmod(parent, 0o700)
    atomic_write(path, data, mode=0o600)


def home_warning(home: PathLike) -> Optional[str]:
    """A warning if other accounts can write into the runs home ``home`` (they could plant run
    directories there, or remove yours); None if not, or if it does not exist yet."""
    try:
        mode = os.stat(home).st_mode
    except OSError:
        return None
    if not mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    who = "every account" if mode & stat.S_IWOTH else "its group"
    return (f"Warning: the runs home {os.fspath(home)} is writable by {who} "
            f"(mode {stat.S_IMODE(mode):04o}): others can add or remove runs there; "
            f"fix it with `chmod go-w {os.fspath(home)}`")


def fsync_dir(path: PathLike) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def filesystem_type(path: PathLike) -> str:
    """The type of the filesystem holding ``path`` (e.g. ``ext4``, ``nfs4``), from mountinfo."""
    target = os.path.realpath(os.fspath(path))
    while not os.path.exists(target):
        target = os.path.dirname(target)
    best, best_type = "", "unknown"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                mount_point = fields[4].replace("\\040", " ")
                fs_type = right.split()[0]
                inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best, best_type = mount_point, fs_type
    except OSError:
        pass
    return best_type


def is_network_filesystem(path: PathLike) -> bool:
    """True where inotify cannot see other hosts' writes and flock cannot be trusted."""
    fs_type = filesystem_type(path)
    return fs_type in NETWORK_FS_TYPES or fs_type.startswith("fuse.sshfs")
