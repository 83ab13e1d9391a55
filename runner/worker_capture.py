"""A pool worker's live-output capture: fds 1 and 2 are pipes that a pump thread splices into
capture files in the current run's ``logs/``, renamed to ``<node>.out``/``.err`` after each task
(hard-linked under that name while a long task still runs).

Used by the local pool (``runner.worker_pool``), which may run in another interpreter than
the runner's, and by a Slurm pilot block's workers on their node (``runner.pilot_pool``): it
imports only the stdlib and the worker's stdlib-only modules.
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import sys
import termios
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

if __package__:
    from runner import layout
    from runner.outcome_pack import PackWriter, read_at
    from runner.worker_common import FILE_MODE, flush_std
    from runner.worker_pack import log_fits
else:  # shipped beside the worker to a Slurm pilot block's node (``worker.SHIPPED_BESIDE``)
    import layout  # type: ignore[no-redef,import-not-found]
    from outcome_pack import PackWriter, read_at  # type: ignore[no-redef,import-not-found]
    from worker_common import FILE_MODE, flush_std  # type: ignore[no-redef,import-not-found]
    from worker_pack import log_fits  # type: ignore[no-redef,import-not-found]


def _pipe_to_file(src: int, dst: int, size: int) -> int:
    """Move up to ``size`` bytes from the pipe ``src`` to the file ``dst``: splice(2) where
    Python has it (3.10+), which leaves in the pipe what a full disk refuses; on 3.9 read and
    write, where such bytes are lost instead."""
    if sys.version_info >= (3, 10):
        return os.splice(src, dst, size)
    data = memoryview(os.read(src, size))
    done = 0
    while done < len(data):
        done += os.write(dst, data[done:])
    return done


class Capture:
    """A pool worker's fds 1 and 2: pipes that a pump thread splices into capture files in the
    current run's ``logs/``.

    After a task, a capture file that received output is renamed to ``<node>.out``/``.err`` (the
    same filesystem, so no copy) and a fresh one takes its place; an empty one is reused, so a
    task that prints nothing costs a few system calls, not files. Through the pipe, a full disk
    never fails a task's ``print``: what the disk refuses stays in the pipe (the task's writes
    wait once it is full) until space is back, and the task's end waits for it, as its result
    does. The runner holds the pipes' read ends too: what a worker that died had not yet moved
    to its file is still there for the runner to keep.

    Live output: once a task that printed has run ``LIVE_AFTER`` seconds, the pump gives its
    capture file a second name, ``<node>.out``/``.err`` (a hard link: no copy, and the rename
    at the end then only drops the capture name), so readers (``cov logs -f``, the UI) see
    the output grow while it runs. Short tasks, the pool's common case, never pay for it.
    """

    LIVE_AFTER = 0.2  # seconds a task runs before its output is linked to its own name

    def __init__(self, pipes: Optional[List[Tuple[int, int]]] = None) -> None:
        self.logs: Optional[str] = None
        self.paths: Tuple[str, str] = ("", "")
        self.files = [-1, -1]  # the capture files (the pump writes them)
        self.written = [0, 0]  # bytes in each since it was opened
        self.stalled = [False, False]  # the disk refused the last splice
        self.pipes: List[Tuple[int, int]] = list(pipes or ())  # (read end, write end)
        self.ids: List[Tuple[int, int]] = []  # (st_dev, st_ino) of the write ends
        self.lock = threading.Lock()
        # The running task: (node, time.monotonic() at its start), set without the lock (one
        # assignment per task); None between tasks.
        self.current: Optional[Tuple[int, float]] = None
        self.linked = [False, False]  # the capture file also has the task's own name
        self.link_failed = False  # linking failed for this task (a full disk): do not retry

    def _start(self) -> None:
        if not self.pipes:
            self.pipes = [os.pipe(), os.pipe()]
        self.unread = select.poll()  # one call says whether either pipe holds data
        for stream, (read_end, write_end) in enumerate(self.pipes):
            st = os.fstat(write_end)
            self.ids.append((st.st_dev, st.st_ino))
            os.dup2(write_end, stream + 1)
            self.unread.register(read_end, select.POLLIN)
        threading.Thread(target=self._pump, name="cov-capture", daemon=True).start()

    def point_at(self, logs: str) -> None:
        if logs == self.logs:
            return
        if not self.ids:
            self._start()
        with self.lock:
            self._drop()
            self.logs = logs
            self.paths = tuple(os.path.join(logs, layout.capture_file(os.getpid(), s))  # type: ignore[assignment]
                               for s in ("out", "err"))
            self._open(0)
            self._open(1)

    def _open(self, stream: int) -> None:
        """(Re)create a capture file; the caller holds the lock."""
        if self.files[stream] >= 0:
            os.close(self.files[stream])
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC  # read: packing it
        self.files[stream] = os.open(self.paths[stream], flags, FILE_MODE)
        self.written[stream] = 0

    def begin(self, node: int) -> None:
        """The task for ``node`` starts now (what it prints is its output)."""
        self.current = (node, time.monotonic())

    def _pump(self) -> None:
        poller = select.poll()
        streams = {read_end: stream for stream, (read_end, _) in enumerate(self.pipes)}
        for read_end in streams:
            poller.register(read_end, select.POLLIN)
        wake: Optional[float] = None  # when to link the running task's output (monotonic)
        while True:
            # while the disk is full the data stays in the pipe (ready forever): poll slowly
            if any(self.stalled):
                time.sleep(0.2)
                events = [(r, 0) for r, s in streams.items() if self.stalled[s]] + \
                    [e for e in poller.poll(0) if not self.stalled[streams[e[0]]]]
            else:  # no timeout unless output waits to be linked: an idle pool sleeps
                timeout = None if wake is None else max(0, int((wake - time.monotonic()) * 1000) + 1)
                events = poller.poll(timeout)
            with self.lock:
                for fd, _ in events:
                    self._move(streams[fd], fd)
                wake = self._link_live()

    def _link_live(self) -> Optional[float]:
        """Link the running task's capture files that received output to ``<node>.out/.err``
        once it has run ``LIVE_AFTER`` seconds; returns when to look again (None: no need).
        The caller holds the lock."""
        current = self.current
        if current is None or self.link_failed or not self.logs:
            return None
        pending = [s for s in (0, 1) if self.written[s] and not self.linked[s]]
        if not pending:
            return None
        due = current[1] + self.LIVE_AFTER
        if time.monotonic() < due:
            return due
        for stream in pending:
            target = os.path.join(self.logs, layout.log_file(current[0], layout.STREAMS[stream]))
            try:
                try:
                    os.link(self.paths[stream], target)
                except FileExistsError:  # an earlier attempt's: this attempt's replaces it
                    os.unlink(target)
                    os.link(self.paths[stream], target)
            except OSError:
                self.link_failed = True  # its output shows at its end, as it would have
                return None
            self.linked[stream] = True
        return None

    def _move(self, stream: int, read_end: int) -> None:
        """Splice what is in the pipe into the capture file (the caller holds the lock)."""
        self.stalled[stream] = False
        if self.files[stream] < 0:  # between runs: it belongs to no task
            if _unread(read_end):
                os.read(read_end, 1 << 20)
            return
        while _unread(read_end):
            try:
                self.written[stream] += _pipe_to_file(read_end, self.files[stream], 1 << 20)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self.stalled[stream] = True  # kept in the pipe, tried again in a moment
                else:  # nowhere to put it
                    os.read(read_end, 1 << 20)
                return

    def _settle(self) -> None:
        """Point fds 1 and 2 back at the pipes if the task closed or redirected them, and wait
        until everything it wrote is in the capture files (while the disk is full: until then)."""
        flush_std()
        for stream, (_, write_end) in enumerate(self.pipes):
            try:
                st = os.fstat(stream + 1)
                same = (st.st_dev, st.st_ino) == self.ids[stream]
            except OSError:  # the task closed it
                same = False
            if not same:
                os.dup2(write_end, stream + 1)
        delay, deadline = 0.0005, 0.0
        while True:
            with self.lock:
                ready = self.unread.poll(0)
                if not ready and not any(self.stalled):
                    return
                for fd, _ in ready:
                    self._move(0 if fd == self.pipes[0][0] else 1, fd)
                if not any(self.stalled):  # a process the task left may print on: not forever
                    deadline = deadline or time.monotonic() + 2.0
                    if time.monotonic() > deadline:
                        return
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def finish(self, node: int, pack: Optional[PackWriter] = None, pack_live: bool = False
               ) -> Optional[Dict[str, Any]]:
        """Give the output of the task that just ended to ``<node>.out``/``.err``, or, with
        ``pack`` (format 2.0) and a short output, append it to that logs pack (no file made,
        the capture file is emptied for the next task): ``{"out"|"err": location}`` of what
        was packed (None if nothing). ``pack_live``: a short output that went live is packed
        too, its ``<node>.out|err`` name left for whoever records the task's end to remove
        once readers find the pack (``self.live_packed`` names those streams)."""
        self._settle()
        packed: Dict[str, Any] = {}
        self.live_packed: List[str] = []
        with self.lock:
            self.current = None
            for stream, suffix in ((0, "out"), (1, "err")):
                if self.linked[stream] and pack is not None and pack_live and \
                        log_fits(self.written[stream]):
                    packed[suffix] = pack.append_when_space(
                        read_at(self.files[stream], 0, self.written[stream]))
                    self.live_packed.append(suffix)
                    os.unlink(self.paths[stream])
                    self._open(stream)
                elif self.linked[stream]:  # already its name too (rename would do nothing)
                    os.unlink(self.paths[stream])
                    self._open(stream)
                elif pack is not None and log_fits(self.written[stream]):
                    fd = self.files[stream]
                    packed[suffix] = pack.append_when_space(
                        read_at(fd, 0, self.written[stream]))
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    self.written[stream] = 0
                elif self.written[stream]:
                    os.replace(self.paths[stream],
                               os.path.join(self.logs or "", layout.log_file(node, suffix)))
                    self._open(stream)
            self.linked, self.link_failed = [False, False], False
        return packed or None

    def discard(self) -> None:
        """Forget what the task that just ended printed (its attempt does not count)."""
        self._settle()
        with self.lock:
            current, self.current = self.current, None
            self._unlink_live(current)
            self._open(0)
            self._open(1)

    def _unlink_live(self, current: Optional[Tuple[int, float]]) -> None:
        """Remove the live names of an attempt that does not count (the caller holds the lock)."""
        for stream, suffix in enumerate(layout.STREAMS):
            if self.linked[stream] and current is not None and self.logs:
                target = os.path.join(self.logs, layout.log_file(current[0], suffix))
                try:  # only if still ours: the attempt that took over may have linked its own
                    if os.path.samestat(os.stat(target), os.fstat(self.files[stream])):
                        os.unlink(target)
                except OSError:
                    pass
        self.linked, self.link_failed = [False, False], False

    def release(self, logs: str) -> None:
        """Remove the capture files if they are in ``logs`` (its run ended)."""
        if self.logs == logs:
            self.close()

    def close(self) -> None:
        with self.lock:
            self.current = None
            self.linked, self.link_failed = [False, False], False
            self._drop()
            self.logs, self.paths = None, ("", "")

    def _drop(self) -> None:
        for stream, path in enumerate(self.paths):
            if self.files[stream] >= 0:
                os.close(self.files[stream])
                self.files[stream] = -1
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _unread(fd: int) -> int:
    """Bytes waiting in a pipe."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


# -- a worker that died under its task (the local pool's runner, a pilot block's pool) ----------
def rescue_pipes(root: str, pid: int, read_ends: Sequence[int]) -> None:
    """What worker ``pid``'s task wrote that its pump had not yet moved is still in the pipes
    (whose read ends the caller holds): append it to the worker's capture files in run
    ``root``, where ``keep_capture`` finds it."""
    for read_end, stream in zip(read_ends, layout.STREAMS):
        os.set_blocking(read_end, False)
        chunks = []
        try:
            while True:
                chunk = os.read(read_end, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        except (BlockingIOError, InterruptedError):
            pass
        if chunks:
            path = os.path.join(layout.logs_dir(root), layout.capture_file(pid, stream))
            try:
                with open(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE),
                          "wb") as f:
                    f.write(b"".join(chunks))
            except OSError:
                pass


def keep_capture(root: str, pid: int, node: int, keep: bool = True) -> None:
    """Worker ``pid`` died under ``node``'s task: what the task printed becomes its log files,
    or (``keep`` False: an attempt that does not count) is removed, with the live name the
    worker had linked it under."""
    for stream in layout.STREAMS:
        capture = os.path.join(layout.logs_dir(root), layout.capture_file(pid, stream))
        target = layout.log_path(root, node, stream)
        try:
            live = _same_file(capture, target)  # the worker had linked it (live output)
            if keep and os.path.getsize(capture) and not live:
                os.replace(capture, target)
            else:
                if live and not keep:
                    os.unlink(target)
                os.unlink(capture)
        except OSError:
            pass


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
