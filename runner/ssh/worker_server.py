"""The host's side of the SSH backend's persistent worker: one Python per host and executor,
started once over the reused connection, that runs each task in a forked child.

Started as ``python -u worker_server.py HEARTBEAT TICK`` (shipped beside ``worker.py``, with
``worker.shipped_files``) on an exec channel that it keeps for its whole life. A task then
costs a ``fork`` of this warm interpreter (cloudpickle and the worker already imported)
instead of a login shell plus a Python start-up, which was most of an SSH task's time.

Requests come on stdin, ``@cov run JSON_SIZE BUNDLE_SIZE`` then that JSON and the bundle's
bytes. The JSON says where everything goes (the server knows no file name of its own):
``id``, ``dir`` (the attempt's directory), ``workdir``, ``bundle`` (where to write the bundle,
or ``""`` when it is there already), ``args`` (``worker.execute_bundle``'s four paths),
``pid_file``, ``launch_log``, ``send_back`` (``[name, path]`` sent back at the end), ``live``
(``[stream, path]`` streamed while the task runs) and ``remove`` (finished attempts'
directories to delete, when the server has nothing else to do).

What it prints on stdout (``runner.ssh.task_server`` reads it), each a line, some followed by
bytes: ``@cov ready PID`` once; ``.`` every HEARTBEAT seconds (a silent channel is a lost
one); ``@cov pid ID PID`` once a task's child runs (its pid also goes to ``pid_file``, as the
shell launcher writes it, so that recovery after a lost connection is the same);
``@cov chunk ID STREAM OFFSET SIZE`` and SIZE bytes when a live file grew (looked at every
TICK seconds); ``@cov done ID RC COUNT`` and, COUNT times, ``NAME SIZE`` and SIZE bytes.
RC is the shell's: the exit code, or 128 + the signal that killed the child.

The children are the tasks' session leaders (``setsid``: ``kill -- -PID`` reaches a task's own
processes) and do not die with the server: when the connection drops, stdin ends and the
server exits, while the tasks go on writing their files, which the runner fetches later by
their pid files as it does for the shell launcher's tasks. The server is single-threaded (a
``select`` over stdin and a SIGCHLD wake-up pipe), so that forking it is safe.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

if __package__:  # imported by the runner (tests, mypy): the same code
    from runner import worker
else:  # on the host: ``worker.py`` and what it imports were shipped beside this file
    _HERE = os.path.dirname(os.path.realpath(__file__))
    sys.path.insert(0, _HERE)
    import worker  # type: ignore[import-not-found,no-redef]
    # A task's imports are its own: a module of the user's may be called ``worker`` too.
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != _HERE]
    sys.modules.pop("worker", None)

FILE_MODE = 0o600


class _Spare:
    """A child forked ahead of time, waiting for its task's request on a pipe, so that a
    task starts as soon as it is asked for (a woken process is scheduled at once; a fresh
    fork waits for its first time slice, ~5 ms on a busy machine)."""

    def __init__(self, pid: int, request_w: int, ended_r: int) -> None:
        self.pid, self.request_w, self.ended_r = pid, request_w, ended_r


class _Running:
    """A task's child process, and how far its live files have been sent."""

    def __init__(self, request: Dict[str, Any], pid: int, ended_r: int) -> None:
        self.request = request
        self.pid = pid
        self.ended_r = ended_r  # the child writes its exit code here just before it exits
        self.finished = False
        self.offsets: Dict[str, int] = {}


class Server:
    """The request loop; ``out`` is the channel's stdout (fd), ``inp`` its stdin."""

    def __init__(self, heartbeat: float, tick: float, inp: int = 0, out: int = 1) -> None:
        self.heartbeat = max(0.2, heartbeat)
        self.tick = max(0.05, tick)
        self.inp, self.out = inp, out
        self.running: Dict[int, _Running] = {}
        self.spare: Optional[_Spare] = None
        self.trash: List[str] = []  # finished attempts' directories, removed when idle
        self.buffer = bytearray()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    # -- output -----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.out, view):]

    # -- the loop ---------------------------------------------------------------------------------
    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the select
        signal.set_wakeup_fd(self.wake_w)
        self.send(f"@cov ready {os.getpid()}\n".encode())
        beat = tick = time.monotonic()
        while True:
            now = time.monotonic()
            live = any(r.request.get("live") for r in self.running.values())
            wait = min(beat + self.heartbeat, tick + self.tick if live else float("inf")) - now
            ended = {r.ended_r: r for r in self.running.values()
                     if r.ended_r >= 0 and not r.finished}
            chores = self.spare is None or bool(self.trash)
            try:  # with chores to do: only a look, since they are done when idle
                ready, _, _ = select.select([self.inp, self.wake_r, *ended], [], [],
                                            0.0 if chores else max(0.0, wait))
            except InterruptedError:
                ready = []
            if not ready and chores:
                # Now, not right after a task started: a fork takes a few ms (and removing
                # old files some more), in which the server would not see a task end or the
                # next request come.
                if self.spare is None:
                    self.fork_spare()
                else:
                    remove([self.trash.pop()])
                continue
            for fd in ready:
                if fd in ended:
                    self.ended(ended[fd])
            if self.wake_r in ready:
                try:
                    while os.read(self.wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            self.reap()
            if self.inp in ready:
                data = os.read(self.inp, 1 << 20)
                if not data:  # the runner closed the channel (or the connection dropped)
                    remove(self.trash)
                    return
                self.buffer += data
                while self.take_request():
                    pass
            now = time.monotonic()
            if live and now >= tick + self.tick:
                tick = now
                for task in list(self.running.values()):
                    self.stream_live(task)
            if now >= beat + self.heartbeat:
                beat = now
                self.send(b".\n")

    def take_request(self) -> bool:
        """Start the request at the head of the buffer if it is all there."""
        end = self.buffer.find(b"\n")
        if end < 0:
            return False
        words = self.buffer[:end].decode("utf-8", "replace").split()
        if len(words) != 4 or words[:2] != ["@cov", "run"]:
            del self.buffer[:end + 1]  # not ours: skipped
            return True
        json_size, bundle_size = int(words[2]), int(words[3])
        if len(self.buffer) < end + 1 + json_size + bundle_size:
            return False
        start = end + 1
        request = json.loads(bytes(self.buffer[start:start + json_size]))
        bundle = bytes(self.buffer[start + json_size:start + json_size + bundle_size])
        del self.buffer[:start + json_size + bundle_size]
        self.start(request, bundle)
        return True

    # -- a task -----------------------------------------------------------------------------------
    def start(self, request: Dict[str, Any], bundle: bytes) -> None:
        try:
            os.makedirs(request["dir"], exist_ok=True)
            os.makedirs(request["workdir"], exist_ok=True)
            if request.get("bundle"):
                fd = os.open(request["bundle"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
                with os.fdopen(fd, "wb") as f:
                    f.write(bundle)
        except OSError as exc:  # as the shell launcher's `mkdir ... && cd ... || exit 90`
            self.finish(request, 90, f"cov: cannot prepare {request['dir']}: {exc}\n".encode())
            return
        spare = self.spare or self.fork_spare()
        self.spare = None
        data = json.dumps({k: request[k] for k in ("workdir", "launch_log", "args")}).encode()
        try:
            os.write(spare.request_w, data)  # far below a pipe's buffer: never blocks
        except OSError:
            pass  # it died meanwhile: reaped as a task that ended without an outcome
        os.close(spare.request_w)  # its EOF: the request is whole
        try:
            with open(request["pid_file"], "w") as f:
                f.write(f"{spare.pid}\n")
        except OSError:
            pass  # recovery then restarts the task: no worse than a lost pid
        self.running[spare.pid] = _Running(request, spare.pid, spare.ended_r)
        self.send(f"@cov pid {request['id']} {spare.pid}\n".encode())
        self.trash.extend(request.get("remove") or ())

    def fork_spare(self) -> _Spare:
        request_r, request_w = os.pipe()
        ended_r, ended_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(request_w)
            os.close(ended_r)
            self.child(request_r, ended_w)  # never returns
        os.close(request_r)
        os.close(ended_w)
        self.spare = _Spare(pid, request_w, ended_r)
        return self.spare

    def child(self, request_r: int, ended_w: int) -> None:
        """In the forked child: wait for the request, then become the task (own session and
        process group, files as the shell launcher's). Ends when the server does."""
        code = 1
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)  # stdin is the channel's: never the task's
            os.dup2(null, 0)
            os.close(null)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # nothing of the server's stays open here but fds 1 and 2 until the request
            others = [self.wake_r, self.wake_w]
            for task in self.running.values():
                others.append(task.ended_r)
            for fd in others:
                try:
                    os.close(fd)
                except OSError:
                    pass
            chunks = []
            while True:
                chunk = os.read(request_r, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(request_r)
            if not chunks:  # the server ended first
                os._exit(0)
            request = json.loads(b"".join(chunks))
            log = os.open(request["launch_log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            os.chdir(request["workdir"])
            code = worker.execute_bundle(*request["args"])
        except BaseException:  # noqa: BLE001 - the launcher's log says why
            try:
                os.write(2, traceback.format_exc().encode("utf-8", "replace"))
            except OSError:
                pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:  # noqa: BLE001
                pass
            try:  # the outcome is written: the server may send it before this exits
                os.write(ended_w, f"{code}\n".encode())
            except OSError:
                pass
            os._exit(code)

    def ended(self, task: _Running) -> None:
        """The child said its exit code (it exits next): the task's files are complete."""
        try:
            said = os.read(task.ended_r, 64)
        except OSError:
            said = b""
        task.finished = True
        os.close(task.ended_r)
        if said.strip().isdigit():
            self.finish(task.request, int(said))
        else:  # it died before saying: the exit status says how (reap)
            task.finished = False
            task.ended_r = -1

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare.pid:
                os.close(self.spare.request_w)  # a spare that died: another next time
                os.close(self.spare.ended_r)
                self.spare = None
                continue
            task = self.running.pop(pid, None)
            if task is None:
                continue
            if task.finished:
                continue
            if task.ended_r >= 0:
                os.close(task.ended_r)
            rc = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else \
                os.WEXITSTATUS(status)
            self.finish(task.request, rc)

    def finish(self, request: Dict[str, Any], rc: int, launch_text: bytes = b"") -> None:
        """``@cov done`` with the result files that exist."""
        files: List[Tuple[str, bytes]] = []
        for name, path in request.get("send_back") or ():
            if path == request.get("launch_log") and launch_text:
                files.append((name, launch_text))
                continue
            data = _read(path)
            if data is not None:
                files.append((name, data))
        parts = [f"@cov done {request['id']} {rc} {len(files)}\n".encode()]
        for name, data in files:
            parts += [f"{name} {len(data)}\n".encode(), data]
        self.send(b"".join(parts))

    def stream_live(self, task: _Running) -> None:
        if task.finished:
            return
        for stream, path in task.request.get("live") or ():
            offset = task.offsets.get(stream, 0)
            try:
                size = os.stat(path).st_size
            except OSError:
                continue
            if size <= offset:
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(size - offset)
            task.offsets[stream] = offset + len(data)
            self.send(f"@cov chunk {task.request['id']} {stream} {offset} {len(data)}\n"
                      .encode() + data)


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def remove(dirs: Any) -> None:
    """Finished attempts' directories, and their parents once empty."""
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)
    for parent in sorted({str(d).rstrip("/").rsplit("/", 1)[0] for d in dirs}):
        try:
            os.rmdir(parent)
        except OSError:
            pass


def main(argv: List[str]) -> int:
    """``worker_server.py HEARTBEAT TICK``."""
    Server(float(argv[1]), float(argv[2])).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
