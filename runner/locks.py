"""File locks for claims and state changes.

On a local filesystem a ``filelock.FileLock`` (flock) is exact and freed by the kernel when its
holder dies. On network filesystems flock may be a no-op or only exclude processes on one host,
so a ``SoftFileLock`` (an O_EXCL marker file holding host and pid) with a ``lifetime`` is used:
a marker older than the lifetime is taken to belong to a dead holder, on any host. Lock files
are never unlinked by us (unlinking a flock file lets two holders lock different inodes).
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Union

import filelock

from runner.fs import is_network_filesystem

# A holder keeps a run lock for milliseconds; a marker this old was left by a crash.
SOFT_LOCK_LIFETIME_S = 30.0

Lock = Union[filelock.FileLock, filelock.SoftFileLock]


@lru_cache(maxsize=64)
def _network(directory: str) -> bool:
    return os.environ.get("COV_LOCKS") == "soft" or is_network_filesystem(directory)


def make_lock(path: str, timeout: float = 60.0) -> Lock:
    """A lock on ``path``: flock locally, a lock file with a lifetime on network filesystems."""
    if _network(os.path.dirname(path)):
        return filelock.SoftFileLock(path, timeout=timeout, lifetime=SOFT_LOCK_LIFETIME_S,
                                     thread_local=False)
    return filelock.FileLock(path, timeout=timeout, thread_local=False)
