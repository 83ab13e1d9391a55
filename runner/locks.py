"""File locks for claims and state changes.

On a local filesystem an flock (``runner.flock.FlockLock``) is exact and freed by the kernel
when its holder dies. On network filesystems flock may be a no-op or only exclude processes on one host,
so a soft lock is used (``COV_LOCKS=soft`` forces it): ``filelock.SoftFileLease``, an O_EXCL
marker file holding host and pid, which a thread of the holder renews every third of the lease
while it holds the lock, however long it is stalled in a slow write. A contender takes a marker
over only when the holder is gone: on this host, its pid no longer exists (a stopped holder keeps
its lock, as with flock); on another host, the lease went unrenewed (``SOFT_LOCK_LEASE_S``,
``$COV_LOCK_LEASE``; every host must agree) *and* the holder's runner heartbeat is stale.
Lock files are never unlinked by us (unlinking a flock file lets two holders lock different
inodes).

The runner never waits long for a lock: ``try_acquire`` gives up after a few milliseconds and
the run is tried again on a later step, so one run whose lock is held by a stopped process
(Ctrl-Z, D state, ``flock FILE sleep``) does not stop the others. ``holder`` says who holds it.
"""
from __future__ import annotations

import os
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from runner.flock import FlockLock, LockTimeout
from runner.fs import is_network_filesystem
from runner.liveness import HOST, STALE_AFTER_S, heartbeat_path, pid_alive

# Renewed every third of this by its live holder; a marker unrenewed this long was left by a
# holder that died (or is frozen) on another host.
SOFT_LOCK_LEASE_S = float(os.environ.get("COV_LOCK_LEASE") or 30.0)
# How long the runner's loop waits for a run's lock before moving on to other runs.
LOOP_LOCK_WAIT_S = 0.05

if TYPE_CHECKING:
    import filelock

    Lock = Union[FlockLock, filelock.SoftFileLease]
else:
    Lock = Any


@lru_cache(maxsize=1)
def _lease_class() -> Any:
    """filelock's ``SoftFileLease``, never broken while its holder shows a sign of life
    (filelock is imported only where a soft lock is used: network filesystems)."""
    import filelock

    class _Lease(filelock.SoftFileLease):
        def _try_break_stale_lock(self) -> None:  # filelock calls it on finding a marker
            if not _holder_gone(self.lock_file):
                return
            super()._try_break_stale_lock()

    return _Lease


def _timeouts() -> tuple:
    """What an acquire that timed out raises: ours, and filelock's once it is imported."""
    import sys

    module = sys.modules.get("filelock")
    return (LockTimeout,) if module is None else (LockTimeout, module.Timeout)


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
        return _lease_class()(path, timeout=timeout, lease_duration=SOFT_LOCK_LEASE_S,
                              thread_local=False)
    return FlockLock(path, timeout=timeout)


def try_acquire(lock: Lock, wait: float = LOOP_LOCK_WAIT_S) -> bool:
    """Acquire ``lock`` within ``wait`` seconds; False (not held) if someone else holds it."""
    try:
        lock.acquire(timeout=wait, poll_interval=min(0.005, wait or 0.005))
    except _timeouts():
        return False
    return True


def acquire_patiently(lock: Lock, path: str, wait: float,
                      on_busy: Optional[Callable[[str], None]] = None) -> None:
    """Acquire ``lock``, telling ``on_busy`` who holds it if that takes more than a moment;
    ``LockBusy`` after ``wait`` seconds (never a bare timeout of the lock)."""
    if try_acquire(lock, min(0.2, wait)):
        return
    who = holder(path)
    if on_busy is not None:
        on_busy(who)
    if not try_acquire(lock, max(0.0, wait - 0.2)):
        raise LockBusy(path, holder(path) if who == "another process" else who, wait)


def holder(path: str) -> str:
    """Who holds the lock at ``path``, for messages: ``pid N on HOST``, or a vaguer answer."""
    pid, host = _marker_owner(path)
    if pid is not None:  # a soft lock's marker
        return f"pid {pid} on {host or 'an unknown host'}"
    pid = _flock_holder(path)
    if pid is not None:
        return f"pid {pid} on {HOST}"
    return "another process"


def _marker_owner(path: str) -> "tuple[Optional[int], str]":
    """(pid, host) from a soft lock's marker (``pid=N`` and ``host=H`` lines)."""
    try:
        with open(path, "rb") as f:
            text = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return None, ""
    fields = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    try:
        return int(fields.get("pid", "")), fields.get("host", "")
    except ValueError:
        return None, ""


def _holder_gone(path: str) -> bool:
    """False while the marker's holder shows a sign of life: its pid on this host, or a fresh
    runner heartbeat (``<home>/.runners/``, home being two levels up from a run's lock and
    from ``.runners/spawn.lock``) on another. True lets filelock apply its own rules."""
    pid, host = _marker_owner(path)
    if pid is None:
        return True
    if host == HOST:
        return not pid_alive(pid)
    home = Path(path).parent.parent
    try:
        age = time.time() - os.stat(heartbeat_path(home, host, pid)).st_mtime
    except OSError:
        return True
    return age >= STALE_AFTER_S


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
