"""File-system hints for the runner, from watchdog.

Events are hints, never the truth: the runner re-reads the run directory when one arrives and
rescans everything periodically anyway. Only a few flat directories are watched, never
recursively: the runs home (new runs appear there by rename) and each active run's own
directory (``cancel.json``, ``events.jsonl``) and ``results/`` (outcomes written by other hosts).
On network filesystems inotify does not see other hosts' writes, so the polling observer is
used there, when ``--poll`` asks for it, or when inotify runs out of watches or instances.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Callable, Dict, Optional

from watchdog.events import (DirCreatedEvent, DirMovedEvent, FileCreatedEvent, FileMovedEvent,
                             FileSystemEvent, FileSystemEventHandler)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from runner.fs import filesystem_type, is_network_filesystem


# Only names appearing: new runs (renamed into the home), cancel requests and outcome files
# (renamed into place). Appends to events.jsonl and the lock file's open/close are left out of
# the inotify mask: they come with every task, and handling them in watchdog's thread takes the
# GIL from the runner's loop (milliseconds per task). Other runners' appends are seen by the
# rescan and under the lock at each claim.
EVENT_FILTER = [FileCreatedEvent, FileMovedEvent, DirCreatedEvent, DirMovedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, notify: Callable[[str], None]) -> None:
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        path = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
        self.notify(path)


class Watcher:
    """Watches directories non-recursively; calls ``notify(path)`` from its thread."""

    def __init__(self, notify: Callable[[str], None], home: str, force_poll: bool = False,
                 poll_interval: float = 1.0) -> None:
        self.notify = notify
        self.poll_interval = poll_interval
        self.polling = force_poll or is_network_filesystem(home)
        self.reason = ("--poll" if force_poll else
                       f"{filesystem_type(home)} is a network filesystem" if self.polling else "")
        self._observer = self._make_observer()
        self._watches: Dict[str, object] = {}
        self._lock = threading.Lock()
        self._observer.start()

    def _make_observer(self):
        if self.polling:
            return PollingObserver(timeout=self.poll_interval)
        return Observer()

    def watch(self, path: str) -> None:
        with self._lock:
            if path in self._watches:
                return
            try:
                self._watches[path] = self._observer.schedule(_Handler(self.notify), path,
                                                              recursive=False,
                                                              event_filter=EVENT_FILTER)
            except OSError as exc:
                if self.polling:
                    return  # the directory vanished; the rescan will notice
                self._fall_back(exc)
                self._watches[path] = self._observer.schedule(_Handler(self.notify), path,
                                                              recursive=False,
                                                              event_filter=EVENT_FILTER)

    def _fall_back(self, exc: OSError) -> None:
        """inotify limits (ENOSPC: watches, EMFILE: instances): switch to polling."""
        print(f"cov runner: inotify unavailable ({exc.strerror or exc}); polling every "
              f"{self.poll_interval:g} s instead", file=sys.stderr)
        paths = list(self._watches)
        try:
            self._observer.stop()
        except Exception:  # noqa: BLE001
            pass
        self.polling, self.reason = True, f"inotify: {exc.strerror or exc}"
        self._observer = self._make_observer()
        self._observer.start()
        self._watches = {}
        for path in paths:
            self._watches[path] = self._observer.schedule(_Handler(self.notify), path,
                                                          recursive=False,
                                                          event_filter=EVENT_FILTER)

    def unwatch(self, path: str) -> None:
        with self._lock:
            watch = self._watches.pop(path, None)
            if watch is not None:
                try:
                    self._observer.unschedule(watch)
                except (KeyError, OSError, ValueError):
                    pass

    def stop(self) -> None:
        try:
            self._observer.stop()
            self._observer.join(timeout=2)
        except Exception:  # noqa: BLE001
            pass

    @property
    def mode(self) -> str:
        return f"polling ({self.reason})" if self.polling else "inotify"

    def optional_path(self, path: Optional[str]) -> None:
        if path and os.path.isdir(path):
            self.watch(path)
