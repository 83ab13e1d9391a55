"""An flock(2) lock on a file: the local-filesystem lock of ``runner.locks``.

The same behaviour as ``filelock.FileLock`` (which it replaces there), in the few lines it takes:
the lock file is opened (created if need be, never unlinked), ``flock(LOCK_EX | LOCK_NB)`` is
tried until it succeeds or the timeout passes, and the kernel frees the lock when its holder
dies. Why not filelock itself: importing it costs every client and runner interpreter ~15 ms
(~45 ms on a loaded machine), and each acquire runs its fork and thread bookkeeping in Python:
the runner takes a run's lock at every step of a run.

Acquires nest (a counter, as filelock's): only the outermost release unlocks. The descriptor
is close-on-exec, and a process forked while holding a lock (a pool worker) closes its copy of
the descriptor at once, so that it never keeps the lock alive after its parent released it or
died; it does not unlock it, which would release the parent's lock.
"""
from __future__ import annotations

import fcntl
import os
import time
import weakref
from typing import Any, Optional

FILE_MODE = 0o600  # as runner.fs.FILE_MODE: what cov creates is its owner's only


class LockTimeout(TimeoutError):
    """The lock was not had within the timeout (another process holds it)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"the lock {path} could not be acquired")
        self.lock_file = path


_HELD: "weakref.WeakSet[FlockLock]" = weakref.WeakSet()


class FlockLock:
    """An exclusive flock on ``path``; ``timeout`` is the default wait of ``acquire``."""

    def __init__(self, path: str, timeout: float = -1.0) -> None:
        self.lock_file = path
        self.timeout = timeout
        self._fd: Optional[int] = None
        self._count = 0

    @property
    def is_locked(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: Optional[float] = None, poll_interval: float = 0.05) -> "FlockLock":
        """Lock, waiting up to ``timeout`` seconds (default: the lock's; < 0: for ever);
        ``LockTimeout`` if another process held it all that time."""
        if self._fd is not None:
            self._count += 1
            return self
        wait = self.timeout if timeout is None else timeout
        deadline = None if wait < 0 else time.monotonic() + wait
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise LockTimeout(self.lock_file) from None
                    time.sleep(poll_interval if deadline is None else
                               max(0.0, min(poll_interval, deadline - time.monotonic())))
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._count = fd, 1
        _HELD.add(self)
        return self

    def release(self, force: bool = False) -> None:
        """Undo one ``acquire`` (``force``: all of them); the last one unlocks."""
        if self._fd is None:
            return
        self._count = 0 if force else self._count - 1
        if self._count > 0:
            return
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "FlockLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _forget_in_child() -> None:
    """In a forked child: drop the descriptors of the parent's held locks, without unlocking."""
    for lock in list(_HELD):
        if lock._fd is not None:
            try:
                os.close(lock._fd)
            except OSError:
                pass
            lock._fd, lock._count = None, 0
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)
