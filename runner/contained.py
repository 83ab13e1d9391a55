"""Opening a run's files without leaving its directory (a run directory may come from someone
else: every reader that shows a run opens its files here), and the errors of a run directory
that is damaged or leads outside itself.

The directory holding the file is opened first and its real path, read back from the open
descriptor, checked to be inside the run (so swapping a directory for a symlink after the check
gains nothing); the file is then opened relative to it with O_NOFOLLOW (a symlink is refused,
not followed) and O_NONBLOCK (a FIFO cannot hang the reader).
"""
from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO, List


class RunDirError(Exception):
    """A run directory that is missing or cannot be read (the message says why).

    Raised for every kind of damage found where data enters: a manifest that is not valid or
    has wrong-typed fields, an event line that is not an event, a cancel request or an outcome
    header of the wrong shape. Readers show such a run as UNREADABLE with this message; the
    runner stops serving it and goes on with the others."""


class OutsideRunError(RunDirError, PermissionError):
    """A path of a run that leads outside its directory (``..``, a symlink) or is not a regular
    file: refused, never opened (a run directory may come from someone else)."""


def open_contained(run_path: os.PathLike | str, dispatch_id: str,
                   path: os.PathLike | str) -> BinaryIO:
    """Open a file of the run at ``run_path`` for reading, contained: ``path`` (relative to the
    run directory, or absolute inside it) must stay inside the run directory, symlinks
    included, and be a regular file; else OutsideRunError (FileNotFoundError if absent)."""
    text = os.fspath(path)
    where = os.path.relpath(text, run_path) if os.path.isabs(text) else text
    parts = [p for p in where.split(os.sep) if p not in ("", ".")]
    if "\x00" in text or not parts or ".." in parts:
        raise OutsideRunError(f"{text} is not inside the run directory {run_path}")
    dfd = open_contained_dir(run_path, dispatch_id, parts[:-1])
    try:
        return os.fdopen(open_in(dfd, dispatch_id, parts), "rb")
    finally:
        os.close(dfd)


def open_contained_dir(run_path: os.PathLike | str, dispatch_id: str,
                       parts: List[str]) -> int:
    """A descriptor of the run's subdirectory ``parts``, checked (from the open descriptor)
    to be inside the run directory."""
    root = os.path.realpath(run_path)
    parent = os.path.join(root, *parts)
    dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        real = os.readlink(f"/proc/self/fd/{dfd}")
    except OSError:  # no /proc: the path resolved now
        real = os.path.realpath(parent)
    if real != root and not real.startswith(root + os.sep):
        os.close(dfd)
        raise OutsideRunError(f"{'/'.join(parts)} of run {dispatch_id} leads "
                              f"outside its directory; not read")
    return dfd


def open_in(dfd: int, dispatch_id: str, parts: List[str]) -> int:
    """The regular file ``parts[-1]`` in the checked directory ``dfd``, not following a
    symlink."""
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutsideRunError(f"{'/'.join(parts)} of run {dispatch_id} is a "
                                  f"symbolic link; not followed") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutsideRunError(f"{'/'.join(parts)} of run {dispatch_id} is not a "
                              f"regular file; not read")
    return fd
