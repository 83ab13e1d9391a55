"""Linux inotify, through ctypes: the runner's watch on a few flat directories.

watchdog's inotify observer cost a cold runner ~20 ms of imports (its events, observers, the
move-event grouper, queue, logging's use) before it could serve, on the critical path of a
small dispatch; the runner needs only "a name appeared in this directory". This is that:
``inotify_init1``/``inotify_add_watch``/``inotify_rm_watch`` from the C library, events read
from the descriptor with ``os.read`` and decoded with ``struct``, and one daemon thread that
turns them into ``notify(path)`` calls, as watchdog's observer thread did. watchdog stays for
polling (network filesystems, ``--poll``) and for systems without inotify.
"""
from __future__ import annotations

import os
import select
import struct
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000
# Names appearing (created, or renamed into the directory): what the runner takes as hints.
# Appends and opens are left out: they come with every task (see runner.watch).
APPEARING = IN_CREATE | IN_MOVED_TO
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)

_libc: Any = None


def available() -> bool:
    """This system has inotify (Linux)."""
    try:
        _c_library()
        return True
    except (OSError, AttributeError):
        return False


def _c_library() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for name in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
            getattr(libc, name)  # AttributeError where there is none
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        _libc = libc
    return _libc


def _error(path: str = "") -> OSError:
    import ctypes

    number = ctypes.get_errno()
    return OSError(number, os.strerror(number), *((path,) if path else ()))


class InotifyObserver:
    """Watches directories (not recursively) for names appearing; calls ``notify(path)`` from
    its thread. ``OSError`` from the constructor (``EMFILE``: no instance left) and from
    ``schedule`` (``ENOSPC``: no watch left) is the caller's cue to poll instead."""

    def __init__(self, notify: Callable[[str], None]) -> None:
        self.notify = notify
        libc = _c_library()
        fd = libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK)
        if fd < 0:
            raise _error()
        self.fd = fd
        self._paths: Dict[int, str] = {}  # watch descriptor -> the directory it watches
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="cov-inotify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def schedule(self, path: str) -> int:
        """Watch directory ``path``; its watch descriptor (``unschedule`` takes it)."""
        wd = _c_library().inotify_add_watch(self.fd, os.fsencode(path), APPEARING | IN_ONLYDIR)
        if wd < 0:
            raise _error(path)
        self._paths[wd] = path
        return int(wd)

    def unschedule(self, wd: int) -> None:
        if self._paths.pop(wd, None) is not None:
            _c_library().inotify_rm_watch(self.fd, wd)  # (gone with its directory: no matter)

    def stop(self) -> None:
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass

    def join(self, timeout: Optional[float] = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        try:
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if self._stop_r in ready:
                    return
                for path in self._appeared():
                    self.notify(path)
        finally:
            for fd in (self.fd, self._stop_r, self._stop_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _appeared(self) -> List[str]:
        """The paths of the events queued now (a watched directory itself after an overflow:
        the runner's rescan of it catches up)."""
        paths: List[str] = []
        for wd, mask, name in self._read():
            if mask & IN_Q_OVERFLOW:
                paths.extend(self._paths.values())
            elif mask & IN_IGNORED:  # its directory was removed
                self._paths.pop(wd, None)
            elif wd in self._paths:
                base = self._paths[wd]
                paths.append(os.path.join(base, os.fsdecode(name)) if name else base)
        return paths

    def _read(self) -> List[Tuple[int, int, bytes]]:
        events: List[Tuple[int, int, bytes]] = []
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return events
            except OSError:
                return events
            if not data:
                return events
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                name = data[offset:offset + size].rstrip(b"\0")
                offset += size
                events.append((wd, mask, name))
