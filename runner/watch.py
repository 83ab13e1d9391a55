"""File-system hints for the runner: inotify (``runner.inotify``) on Linux, else watchdog.

Events are hints, never the truth: the runner re-reads the run directory when one arrives and
rescans everything periodically anyway. Only a few flat directories are watched, never
recursively: the runs home (new runs appear there by rename) and each active run's own
directory (``cancel.json``, ``events.jsonl``) and ``results/`` (outcomes written by other hosts).
On network filesystems inotify does not see other hosts' writes, so watchdog's polling
observer is used there, when ``--poll`` asks for it, or when inotify runs out of watches or
instances; watchdog's native observer where there is no inotify. watchdog is imported only
then: its inotify observer's imports were ~20 ms of a cold runner's start.
"""
from __future__ import annotations

import errno
import os
import sys
import threading
from typing import Any, Callable, Dict, Optional

from runner import inotify
from runner.fs import filesystem_type, is_network_filesystem


def _watchdog_handler(notify: Callable[[str], None]) -> Any:
    """A watchdog event handler passing on the path of each event watchdog is asked for."""
    from watchdog.events import FileSystemEventHandler

    class _Handler(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            path = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
            notify(path)

    return _Handler()


class _WatchdogObserver:
    """watchdog's polling or native observer behind ``InotifyObserver``'s four calls."""

    def __init__(self, notify: Callable[[str], None], polling: bool, interval: float) -> None:
        from watchdog.events import (DirCreatedEvent, DirMovedEvent, FileCreatedEvent,
                                     FileMovedEvent)

        if polling:
            from watchdog.observers.polling import PollingObserver

            self._observer: Any = PollingObserver(timeout=interval)
        else:
            from watchdog.observers import Observer

            self._observer = Observer()
        self._handler = _watchdog_handler(notify)
        # Only names appearing (as runner.inotify.APPEARING): new runs (renamed into the
        # home), cancel requests and outcome files (renamed into place). Appends to
        # events.jsonl and the lock file's open/close are left out of the inotify mask: they
        # come with every task, and handling them in watchdog's thread takes the GIL from the
        # runner's loop (milliseconds per task). Other runners' appends are seen by the
        # rescan and under the lock at each claim.
        self._filter = [FileCreatedEvent, FileMovedEvent, DirCreatedEvent, DirMovedEvent]

    def start(self) -> None:
        self._observer.start()

    def schedule(self, path: str) -> Any:
        return self._observer.schedule(self._handler, path, recursive=False,
                                       event_filter=self._filter)

    def unschedule(self, watch: Any) -> None:
        self._observer.unschedule(watch)

    def stop(self) -> None:
        self._observer.stop()

    def join(self, timeout: Optional[float] = None) -> None:
        self._observer.join(timeout=timeout)


class Watcher:
    """Watches directories non-recursively; calls ``notify(path)`` from its thread."""

    def __init__(self, notify: Callable[[str], None], home: str, force_poll: bool = False,
                 poll_interval: float = 1.0) -> None:
        self.notify = notify
        self.poll_interval = poll_interval
        self.polling = force_poll or is_network_filesystem(home)
        self.reason = ("--poll" if force_poll else
                       f"{filesystem_type(home)} is a network filesystem" if self.polling else "")
        try:
            self._observer = self._make_observer()
        except OSError as exc:  # EMFILE: no inotify instance left
            self._observer = self._polling_instead(exc)
        self._watches: Dict[str, object] = {}
        self._lock = threading.Lock()
        self._observer.start()

    def _make_observer(self) -> Any:
        if not self.polling and inotify.available():
            return inotify.InotifyObserver(self.notify)
        return _WatchdogObserver(self.notify, self.polling, self.poll_interval)

    def _polling_instead(self, exc: OSError) -> Any:
        print(f"cov runner: inotify unavailable ({exc.strerror or exc}); polling every "
              f"{self.poll_interval:g} s instead", file=sys.stderr)
        self.polling, self.reason = True, f"inotify: {exc.strerror or exc}"
        return self._make_observer()

    def watch(self, path: str) -> None:
        with self._lock:
            if path in self._watches:
                return
            try:
                self._watches[path] = self._observer.schedule(path)
            except OSError as exc:
                if self.polling or exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    return  # the directory vanished; the rescan will notice
                self._fall_back(exc)
                self._watches[path] = self._observer.schedule(path)

    def _fall_back(self, exc: OSError) -> None:
        """inotify limits (ENOSPC: watches, EMFILE: instances): switch to polling."""
        paths = list(self._watches)
        try:
            self._observer.stop()
        except Exception:  # noqa: BLE001
            pass
        self._observer = self._polling_instead(exc)
        self._observer.start()
        self._watches = {}
        for path in paths:
            self._watches[path] = self._observer.schedule(path)

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
