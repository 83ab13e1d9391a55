"""The result cache's size, kept right while several runners add to it and evict from it.

One total for all the processes of a home: ``.result-cache/size`` (the bytes of every entry,
as text), read and rewritten in place only under the cache's lock (``.result-cache/lock``, flock, a
lease on network filesystems), which every add, eviction and clear holds. A process keeps
no count of its own between two adds, so one runner's additions and another's evictions are
both in the next number either reads.

It cannot drift for long: whenever it says the cache is over ``max_size`` the entries are
counted again from their index files (still under the lock) before any is evicted, and a
process's first add counts them too (a process that died between writing an entry and the
total left it short by that entry). Evicting goes down to ``LOW_WATER`` of ``max_size``, so
that a full cache is counted once per many adds, not at each one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from runner.layout import CACHE_LOCK, CACHE_SIZE, cache_dir
from runner.locks import Lock, make_lock

LOW_WATER = 0.9  # an eviction leaves the cache at this share of max_size
LOCK_TIMEOUT_S = 120.0
_WIDTH = 20  # the total's digits, right-aligned: a rewrite never leaves a longer one's tail


class CacheSize:
    """The shared total of one home's cache; ``entries`` lists the cache's indexes (each with
    ``key``, ``size``, ``used``), ``remove`` deletes one entry by key."""

    def __init__(self, home: Path, entries: Callable[[], Iterable[Dict[str, Any]]],
                 remove: Callable[[str], None]) -> None:
        self.home = home
        self._entries = entries
        self._remove = remove
        self._lock: Optional[Lock] = None
        self._counted = False  # this process counted the entries once
        self._ledger: Optional[int] = None  # the open total file

    def locked(self) -> Lock:
        """The cache's lock (re-entrant within this process), to hold over a change."""
        if self._lock is None:
            os.makedirs(cache_dir(self.home), exist_ok=True)
            self._lock = make_lock(str(cache_dir(self.home) / CACHE_LOCK), LOCK_TIMEOUT_S)
        return self._lock

    def total(self) -> int:
        """The bytes the cache holds, by the shared total (counted if there is none)."""
        with self.locked():
            found = self._read()
            if found is None:
                found = self._count()
                self._write(found)
            return found

    def added(self, size: int, max_size: int) -> List[Dict[str, Any]]:
        """An entry of ``size`` bytes was added (the caller holds ``locked()``); evicts if the
        cache is now over ``max_size``; returns the entries evicted."""
        found = self._read() if self._counted else None
        total = self._count() if found is None else found + size
        self._counted = True
        if total <= max_size:
            self._write(total)
            return []
        return self.evict_locked(int(max_size * LOW_WATER))

    def evict(self, limit: int) -> List[Dict[str, Any]]:
        """Remove least recently used entries until the cache holds at most ``limit`` bytes."""
        with self.locked():
            return self.evict_locked(limit)

    def evict_locked(self, limit: int) -> List[Dict[str, Any]]:
        """``evict``, with the lock held by the caller; the total is counted afresh first."""
        entries = sorted(self._iter(), key=lambda e: e["used"])
        total = sum(e["size"] for e in entries)
        removed = []
        for entry in entries:
            if total <= limit:
                break
            self._remove(entry["key"])
            total -= entry["size"]
            removed.append(entry)
        self._write(total)
        return removed

    def recount_locked(self) -> int:
        """Count the entries again and record it (after a clear); the caller holds the lock."""
        total = self._count()
        self._write(total)
        return total

    def _iter(self) -> Iterator[Dict[str, Any]]:
        return iter(self._entries())

    def _count(self) -> int:
        return sum(e["size"] for e in self._iter())

    def _path(self) -> str:
        return str(cache_dir(self.home) / CACHE_SIZE)

    def _fd(self) -> int:
        if self._ledger is None:
            self._ledger = os.open(self._path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._ledger

    def _read(self) -> Optional[int]:
        try:
            return max(0, int(os.pread(self._fd(), _WIDTH + 1, 0).strip()))
        except (OSError, ValueError):
            return None  # none yet (or torn by a crash): counted again

    def _write(self, total: int) -> None:
        # In place, not by a rename: it is read only under the lock, so no reader sees it
        # half-written, and one write of a fixed width costs a fraction of a rename per add
        # (a crash that tore it is read as no total, and counted again).
        try:
            os.pwrite(self._fd(), str(total).rjust(_WIDTH).encode(), 0)
        except OSError:
            self._forget()

    def _forget(self) -> None:
        try:
            os.unlink(self._path())
        except OSError:
            pass
        if self._ledger is not None:
            os.close(self._ledger)
            self._ledger = None


__all__ = ["CacheSize", "LOW_WATER"]
