"""File locks for claims and state changes.

On a local filesystem a ``filelock.FileLock`` (flock) is exact and freed by the kernel when its
holder dies. On network filesystems flock may be a no-op or only exclude processes on one host,
so a ``filelock.SoftFileLease`` is used (``COV_LOCKS=soft`` forces it): an O_EXCL marker file
holding host and pid, which a thread of the holder renews every third of the lease while it
holds the lock. A contender takes a marker over only when its holder is dead (same host: its pid
is gone) or when the marker went unrenewed for a whole lease (``SOFT_LOCK_LEASE_S``), which a
live holder never lets happen however long it keeps the lock, stalled in a slow write or not.
Lock files are never unlinked by us (unlinking a flock file lets two holders lock different
inodes).

The runner never waits long for a lock: ``try_acquire`` gives up after a few milliseconds and
the run is tried again on a later step, so one run whose lock is held by a stopped process
(Ctrl-Z, D state, ``flock FILE sleep``) does not stop the others. ``holder`` says who holds it.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Callable, Optional, Union

import filelock

from runner.fs import is_network_filesystem

# Renewed every third of this by its live holder; a marker unrenewed this long was left by a
# holder that died (or is frozen) on another host.
SOFT_LOCK_LEASE_S = 30.0
# How long the runner's loop waits for a run's lock before moving on to other runs.
LOOP_LOCK_WAIT_S = 0.05

Lock = Union[filelock.FileLock, filelock.SoftFileLease]


class LockBusy(Exception):
    """A lock another process kept held for longer than we would wait."""

    def __init__(self, path: str, who: str, waited: float) -> None:
        super().__init__(f"{path} is still locked by {who} after {waited:g} s")
        self.path = path
        self.holder = who
        self.waited = waited


@lru_cache(maxsize=64)
def _network(directory: str) -> bool:
    return os.environ.get("COV_LOCKS") == "soft" or is_network_filesystem(directory)


def make_lock(path: str, timeout: float = 60.0) -> Lock:
    """A lock on ``path``: flock locally, a renewed lease on network filesystems."""
    if _network(os.path.dirname(path)):
        return filelock.SoftFileLease(path, timeout=timeout, lease_duration=SOFT_LOCK_LEASE_S,
                                      thread_local=False)
    return filelock.FileLock(path, timeout=timeout, thread_local=False)


def try_acquire(lock: Lock, wait: float = LOOP_LOCK_WAIT_S) -> bool:
    """Acquire ``lock`` within ``wait`` seconds; False (not held) if someone else holds it."""
    try:
        lock.acquire(timeout=wait, poll_interval=min(0.005, wait or 0.005))
    except filelock.Timeout:
        return False
    return True


def acquire_patiently(lock: Lock, path: str, wait: float,
                      on_busy: Optional[Callable[[str], None]] = None) -> None:
    """Acquire ``lock``, telling ``on_busy`` who holds it if that takes more than a moment;
    ``LockBusy`` after ``wait`` seconds (never a bare ``filelock.Timeout``)."""
    if try_acquire(lock, min(0.2, wait)):
        return
    who = holder(path)
    if on_busy is not None:
        on_busy(who)
    if not try_acquire(lock, max(0.0, wait - 0.2)):
        raise LockBusy(path, holder(path) if who == "another process" else who, wait)


def holder(path: str) -> str:
    """Who holds the lock at ``path``, for messages: ``pid N on HOST``, or a vaguer answer."""
    try:
        with open(path, "rb") as f:
            text = f.read(4096).decode("utf-8", "replace")
    except OSError:
        text = ""
    fields = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    if fields.get("pid"):  # a soft lock's marker
        return f"pid {fields['pid']} on {fields.get('host') or 'an unknown host'}"
    pid = _flock_holder(path)
    if pid is not None:
        import socket

        return f"pid {pid} on {socket.gethostname()}"
    return "another process"


def _flock_holder(path: str) -> Optional[int]:
    """The pid holding a flock on ``path``, from ``/proc/locks`` (Linux; None elsewhere)."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2154501 0 EOF" (blocked waiters have "->")
        if len(parts) < 6 or parts[1] != "FLOCK" or "->" in parts:
            continue
        major, minor, inode = (parts[5].split(":") + ["", "", ""])[:3]
        try:
            if int(inode) == st.st_ino and int(major, 16) == os.major(st.st_dev) and \
                    int(minor, 16) == os.minor(st.st_dev):
                return int(parts[4])
        except ValueError:
            continue
    return None
