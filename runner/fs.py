"""Atomic file writes and filesystem-type detection.

Every file of a run directory is written to a temporary name in the same directory and renamed
into place, so a reader sees the old file or the new one, never half of one. ``fsync`` (which
protects against a machine crash, not a killed process) is optional per call: it costs
milliseconds, so hot paths batch it (see docs/run-directory.md, "Durability").
"""
from __future__ import annotations

import os
import secrets
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]

# Filesystems on which inotify does not see other hosts' writes and flock may be a no-op.
NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "beegfs",
     "fuse.glusterfs", "glusterfs", "ceph", "fuse.ceph", "afs", "panfs", "9p", "fuse.s3fs"}
)


def atomic_write(path: PathLike, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
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
