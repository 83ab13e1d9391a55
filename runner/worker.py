"""Run one task: load its function and inputs, run deps and hooks, write its outcome.

This module imports only the stdlib, cloudpickle and cov's stdlib-only modules in
``SHIPPED_WITH``, because it also runs on hosts that have only a Python with cloudpickle (SSH
hosts, Slurm nodes): it is copied there with them (``shipped_files``) and started as
``python worker.py BUNDLE OUTCOME STDOUT STDERR``. On the local backend the same code serves a
persistent pool process (``serve``), which reads functions and inputs straight from the run
directory and keeps decoded functions cached, so a task costs microseconds, not a process.

It writes the task's outcome file (``runner.outcome``: a JSON header line, then the pickled
value) and never raises across the boundary: every failure becomes an outcome.
"""
from __future__ import annotations

import errno
import fcntl
import os
import pickle
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

import cloudpickle

# The modules of cov's this one imports: stdlib-only, and shipped with it (``shipped_files``).
SHIPPED_WITH = ("layout", "outcome")

if __package__:  # runner.worker: the local pool, or imported by the runner
    from runner import layout
    from runner.outcome import (OutcomeHeader, read_outcome_header, read_outcome_payload,
                                value_preview, write_outcome, write_outcome_when_space)
else:  # ``python worker.py ...`` on a host without cov: they were shipped beside it
    _HERE = os.path.dirname(os.path.realpath(__file__))
    sys.path.insert(0, _HERE)
    import layout  # type: ignore[no-redef,import-not-found]
    from outcome import (OutcomeHeader, read_outcome_header,  # type: ignore[no-redef,import-not-found]
                         read_outcome_payload, value_preview, write_outcome,
                         write_outcome_when_space)
    # The task's imports are its own: neither this directory nor these names are on its path
    # (a module of the user's may be called ``layout`` too).
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != _HERE]
    for _name in SHIPPED_WITH:
        sys.modules.pop(_name, None)


def shipped_files() -> Dict[str, bytes]:
    """What a host without cov needs to run ``python worker.py BUNDLE OUTCOME STDOUT STDERR``:
    ``{file name: bytes}`` of this file and the modules it imports, to be put side by side;
    ``worker.py`` comes last, so that a copier that writes them in order and checks for it
    finds the others there too."""
    here = os.path.dirname(os.path.abspath(__file__))
    files: Dict[str, bytes] = {}
    for name in (*SHIPPED_WITH, "worker"):
        with open(os.path.join(here, f"{name}.py"), "rb") as f:
            files[f"{name}.py"] = f.read()
    return files

HOST = socket.gethostname()

# The task this process is running: {"run", "dispatch_id", "node", "attempt"} (ct.get_context).
CURRENT_TASK: Dict[str, Any] = {}

FILE_MODE = 0o600  # outcomes and logs are the owner's only (runner/fs.py FILE_MODE)


class ChildRun:
    """Returned by a sublattice task: its value is the child run's, once that run ends."""

    def __init__(self, dispatch_id: str) -> None:
        self.dispatch_id = dispatch_id


class TaskFailed(Exception):
    """A failure that is not the task's own exception (a dep failed, a value cannot be pickled)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- running a task -----------------------------------------------------------------------------
def _call_hook(call: Dict[str, Any], stdout_fd: int, stderr_fd: int) -> Any:
    """One call_before/call_after entry: a call, or a DepsBash/DepsPip given there (Covalent
    runs those in the list's order too)."""
    if "fn" not in call:
        for command in call.get("bash", ()):
            _run_shell(command, stdout_fd, stderr_fd)
        if call.get("pip"):
            _pip_install(call["pip"], stdout_fd, stderr_fd)
        return None
    return call["fn"](*call.get("args", ()), **call.get("kwargs", {}))


def run_task(electron: Dict[str, Any], args: List[Any], kwargs: Dict[str, Any],
             stdout_fd: int, stderr_fd: int, backend_transfers: bool = False
             ) -> Tuple[OutcomeHeader, bytes]:
    """Run deps, hooks and the function in Covalent's order; return (header, payload).
    ``backend_transfers``: the backend does the ExecutorConnection file transfers itself."""
    start = time.time()
    header: OutcomeHeader = {"ok": False, "start": start, "host": HOST, "pid": os.getpid()}
    payload = b""
    try:
        hooks = electron.get("hooks") or {}
        for command in hooks.get("bash", ()):
            _run_shell(command, stdout_fd, stderr_fd)
        pip = hooks.get("pip")
        if pip and (pip.get("packages") or pip.get("requirements")):
            _pip_install(pip, stdout_fd, stderr_fd)
        transfers = hooks.get("files") or ()
        if transfers:  # Covalent's order: before the call_before hooks, after the deps
            paths = file_transfers(transfers, "before", backend_transfers)
            if hooks.get("files_arg", True):  # a lepton's are not passed (Covalent's way)
                kwargs["files"] = paths
        injected: Dict[str, List[Any]] = {}
        for call in hooks.get("call_before", ()):
            value = _call_hook(call, stdout_fd, stderr_fd)
            if call.get("retval_keyword"):
                injected.setdefault(call["retval_keyword"], []).append(value)
        for key, values in injected.items():
            kwargs[key] = values[0] if len(values) == 1 else values
        runner = electron.get("run_with")
        if runner is not None:  # a Covalent-style executor object with run(fn, args, kwargs, meta)
            value = runner(electron["fn"], args, kwargs, electron.get("meta", {}))
        else:
            value = electron["fn"](*args, **kwargs)
        if transfers:
            file_transfers(transfers, "after", backend_transfers)
        for call in hooks.get("call_after", ()):
            _call_hook(call, stdout_fd, stderr_fd)
        if isinstance(value, ChildRun):
            header.update({"ok": True, "child": value.dispatch_id})
        else:
            try:
                payload = cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - any pickling failure is the task's
                raise TaskFailed(
                    f"the result of {electron.get('name', 'the task')} cannot be pickled: "
                    f"{type(exc).__name__}: {exc}", "unpicklable_result") from None
            header.update({"ok": True, "preview": value_preview(value)})
    except TaskFailed as exc:
        header.update({"error": str(exc), "reason": exc.reason})
        _write_fd(stderr_fd, f"{exc}\n")
    except BaseException as exc:  # noqa: BLE001 - the worker never raises across the boundary
        if isinstance(exc, KeyboardInterrupt):
            raise
        text = "".join(traceback.format_exception(type(exc), exc, _user_traceback(exc)))
        header.update({"error": text, "reason": "exception"})
        _write_fd(stderr_fd, text)
    header["end"] = time.time()
    return header, payload


def _user_traceback(exc: BaseException):
    """Drop this module's frames so the traceback starts in the user's code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb or exc.__traceback__


def _run_shell(command: str, stdout_fd: int, stderr_fd: int) -> None:
    rc = subprocess.call(command, shell=True, stdout=stdout_fd, stderr=stderr_fd,
                         executable="/bin/bash")
    if rc != 0:
        raise TaskFailed(f"DepsBash command failed with exit code {rc}: {command}", "deps")


def _pip_install(pip: Dict[str, Any], stdout_fd: int, stderr_fd: int) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", *pip.get("packages", ())]
    reqs_file = None
    if pip.get("requirements"):
        reqs_file = f"/tmp/cov-reqs-{os.getpid()}-{secrets.token_hex(3)}.txt"
        with open(reqs_file, "w") as f:
            f.write(pip["requirements"])
        cmd += ["-r", reqs_file]
    try:
        rc = subprocess.call(cmd, stdout=stdout_fd, stderr=stderr_fd)
    finally:
        if reqs_file:
            os.unlink(reqs_file)
    if rc != 0:
        raise TaskFailed(f"DepsPip install failed with exit code {rc}: {' '.join(cmd[4:])}", "deps")


# -- file transfers (covalent_cli.fs; docs/executors.md "File transfers") ---------------------
def file_transfers(transfers: Any, order: str, backend_transfers: bool) -> List[Tuple[str, str]]:
    """Carry out the transfers of ``order`` ("before"/"after"); return every transfer's
    (from, to) paths, the task's ``files`` argument. A failure raises ``TaskFailed`` naming
    the paths and the reason."""
    for t in transfers:
        kind = t["strategy"]["kind"]
        try:
            if order == "before":  # a File() without a path: an empty temporary file (Covalent's)
                for path in t.get("touch", ()):
                    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                    open(path, "a").close()
            if t.get("order", "before") != order or (kind == "executor" and backend_transfers):
                continue  # not now, or the backend copies it over its connection
            if kind == "rsync":
                _rsync(t)
            else:  # shutil, and the executor's connection when the task runs beside cov
                copy_path(t["from"], t["to"])
        except TaskFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a copy is the transfer's
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            where = getattr(exc, "filename", None)
            where = f" ({where})" if where and where not in (t["from"], t["to"]) else ""
            raise TaskFailed(transfer_error(t, f"{reason}{where}"), "file_transfer") from None
    return [(t["from"], t["to"]) for t in transfers]


def transfer_error(transfer: Dict[str, Any], reason: str) -> str:
    """The message of a failed transfer: which copy, when, where, why."""
    return (f"file transfer {transfer['from']} -> {transfer['to']} ({transfer.get('order')} the "
            f"task, {transfer['strategy']['kind']}) failed on {HOST}: {reason}")


def copy_path(src: str, dst: str) -> None:
    """Copy a file or folder with rsync's meaning of a trailing ``/``: ``dir/`` copies the
    folder's contents, ``dir`` the folder itself into ``dst/`` (or as ``dst``)."""
    import shutil

    src_dir = os.path.isdir(src)
    if not os.path.exists(src):
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", src)
    if dst.endswith("/") or (os.path.isdir(dst) and not src.endswith("/")):
        if not (src_dir and src.endswith("/")):
            dst = os.path.join(dst, os.path.basename(src.rstrip("/")))
    if src_dir:
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        shutil.copyfile(src, dst)


def _rsync(transfer: Dict[str, Any]) -> None:
    """``rsync -a`` here, over ssh when one side is remote (BatchMode: never a prompt)."""
    import shlex

    strategy = transfer["strategy"]
    src, dst = transfer["from"], transfer["to"]
    argv = ["rsync", "-a"]
    if transfer["direction"] != "cp":
        ssh = ["ssh", "-o", "BatchMode=yes"]
        if strategy.get("ssh_config"):
            ssh += ["-F", strategy["ssh_config"]]
        if strategy.get("key"):
            ssh += ["-i", strategy["key"]]
        if strategy.get("port"):
            ssh += ["-p", str(strategy["port"])]
        argv += ["-e", " ".join(shlex.quote(a) for a in ssh)]
        host = f"{strategy['user']}@{strategy['host']}" if strategy.get("user") \
            else strategy["host"]
        if transfer["direction"] == "download":
            src = f"{host}:{src}"
        else:
            dst = f"{host}:{dst}"
    if transfer["direction"] != "upload":  # a local destination's folder, as copy_path does
        os.makedirs(os.path.dirname(dst.rstrip("/")) or ".", exist_ok=True)
    try:
        proc = subprocess.run(argv + [src, dst], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise TaskFailed(transfer_error(transfer, "rsync is not installed here"),
                         "file_transfer") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()[-1500:]
        raise TaskFailed(transfer_error(transfer, f"rsync exited with code {proc.returncode}: "
                                                  f"{detail}"), "file_transfer")


def _write_fd(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    except OSError:
        pass


class _Redirect:
    """Send fds 1 and 2 (and sys.stdout/err) to files while a task runs."""

    def __init__(self, stdout_path: str, stderr_path: str, shared: bool = False) -> None:
        self.paths = (stdout_path, stderr_path)
        self.shared = shared  # several ranks write them: append, never truncate or remove

    def __enter__(self) -> Tuple[int, int]:
        _flush_std()
        self.saved = (os.dup(1), os.dup(2))
        mode = os.O_APPEND if self.shared else os.O_TRUNC
        self.fds = tuple(os.open(p, os.O_WRONLY | os.O_CREAT | mode, FILE_MODE)
                         for p in self.paths)
        os.dup2(self.fds[0], 1)
        os.dup2(self.fds[1], 2)
        return self.fds  # type: ignore[return-value]

    def __exit__(self, *exc: Any) -> None:
        _flush_std()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in (*self.saved,):
            os.close(fd)
        for fd, path in zip(self.fds, self.paths):
            empty = os.fstat(fd).st_size == 0 and not self.shared
            os.close(fd)
            if empty:  # keep the run directory to the files that say something
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass


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


class _Capture:
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
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
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
        _flush_std()
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

    def finish(self, node: int) -> None:
        """Give the output of the task that just ended to ``<node>.out``/``.err``."""
        self._settle()
        with self.lock:
            self.current = None
            for stream, suffix in ((0, "out"), (1, "err")):
                if self.linked[stream]:  # already its name too (rename would do nothing)
                    os.unlink(self.paths[stream])
                    self._open(stream)
                elif self.written[stream]:
                    os.replace(self.paths[stream],
                               os.path.join(self.logs or "", layout.log_file(node, suffix)))
                    self._open(stream)
            self.linked, self.link_failed = [False, False], False

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


# -- the local pool's side ----------------------------------------------------------------------
class _RunFiles:
    """Cached read access to one run: tasks.pkl, decoded functions, and recent outputs.

    Outputs are immutable once their outcome file exists, so the pickled outputs this worker
    wrote or read are kept (small ones, up to ``OUTPUT_CACHE_BYTES``): a fan-in whose parents
    ran here, or many children of one parent, then read no file at all.
    """

    OUTPUT_CACHE_BYTES = 32 * 1024 * 1024
    OUTPUT_CACHE_ITEM = 1024 * 1024

    def __init__(self, run: str) -> None:
        self.run = run
        self.fd = os.open(layout.pack_path(run), os.O_RDONLY)
        self.functions: Dict[Tuple[int, int], Dict[str, Any]] = {}
        self.outputs: "OrderedDict[int, bytes]" = OrderedDict()
        self.output_bytes = 0

    def output(self, node: int) -> Optional[bytes]:
        payload = self.outputs.get(node)
        if payload is None:
            payload = read_outcome_payload(layout.outcome_path(self.run, node))
            if payload is not None:
                self.remember(node, payload)
        return payload

    def remember(self, node: int, payload: bytes) -> None:
        if len(payload) > self.OUTPUT_CACHE_ITEM or node in self.outputs:
            return
        self.outputs[node] = payload
        self.output_bytes += len(payload)
        while self.output_bytes > self.OUTPUT_CACHE_BYTES:
            _, dropped = self.outputs.popitem(last=False)
            self.output_bytes -= len(dropped)

    def blob(self, blob: Tuple[int, int]) -> bytes:
        return os.pread(self.fd, blob[1], blob[0])

    def electron(self, blob: Tuple[int, int]) -> Dict[str, Any]:
        key = (blob[0], blob[1])
        found = self.functions.get(key)
        if found is None:
            if len(self.functions) > 256:
                self.functions.clear()
            found = self.functions[key] = pickle.loads(self.blob(key))
        return found

    def close(self) -> None:
        os.close(self.fd)


def load_inputs(inputs: List[Tuple[str, Any, Any]], load: Callable[[Any], Any]
                ) -> Tuple[List[Any], Dict[str, Any]]:
    """Place each input value by its edge: ("arg", index, src) or ("kwarg", name, src)."""
    positional: Dict[int, Any] = {}
    kwargs: Dict[str, Any] = {}
    for kind, key, source in inputs:
        if kind == "arg":
            positional[int(key)] = load(source)
        else:
            kwargs[key] = load(source)
    args = [positional[i] for i in sorted(positional)]
    return args, kwargs


def execute_local(task: Dict[str, Any], runs: Dict[str, _RunFiles],
                  capture: "_Capture") -> OutcomeHeader:
    """Run one task of the local pool; returns the outcome header (also written to disk)."""
    run = task["run"]
    files = runs.get(run)
    if files is None:
        if len(runs) > 16:
            for old in runs.values():
                old.close()
            runs.clear()
        files = runs[run] = _RunFiles(run)
    node = task["node"]
    out_path = layout.outcome_path(run, node)
    logs = layout.logs_dir(run)
    for entry in task.get("sys_path", ()):
        if entry not in sys.path:
            sys.path.insert(0, entry)

    def load(source: Any) -> Any:
        if source[0] == "blob":
            return pickle.loads(files.blob((source[1], source[2])))
        payload = files.output(int(source[1]))
        if payload is None:
            raise TaskFailed(f"the result of node {source[1]} is missing or incomplete",
                             "missing_input")
        return pickle.loads(payload)

    CURRENT_TASK.clear()
    CURRENT_TASK.update(run=run, dispatch_id=os.path.basename(run), node=node,
                        attempt=task.get("attempt", 1))
    capture.point_at(logs)
    capture.begin(node)
    cwd = task.get("cwd") or run
    try:
        os.chdir(cwd)  # every task starts in its own run's directory
    except OSError as exc:
        header = _failure(f"the run's working directory {cwd} cannot be entered "
                          f"({exc.strerror}): it was removed or changed after the dispatch; "
                          "dispatch again from a directory that stays", "cwd")
        payload = b""
    else:
        try:
            electron = files.electron(tuple(task["fn"]))
            args, kwargs = load_inputs(task["inputs"], load)
        except BaseException as exc:  # noqa: BLE001
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            header = _failure(f"cannot load the task's function or inputs:\n{text}", "load")
            payload = b""
        else:
            header, payload = run_task(electron, args, kwargs, 1, 2)
            WORKER.after_task()  # a forked copy that returned ends here
    if fenced(task):  # another runner took the claim over while this ran: its result stands
        capture.discard()
        return FENCED.copy()
    capture.finish(node)
    header["attempt"] = task.get("attempt", 1)
    write_outcome_when_space(out_path, header, payload)
    if header.get("ok") and payload:
        files.remember(node, payload)
    return header


def _failure(message: str, reason: str) -> OutcomeHeader:
    """The header of a task that could not start (written to its stderr too)."""
    _write_fd(2, message)
    now = time.time()
    return {"ok": False, "error": message, "reason": reason, "start": now, "end": now,
            "host": HOST, "pid": os.getpid()}


class _WorkerState:
    """What a pool worker restores after every task, so that a task that changed it (closed
    ``sys.stdout``, set ``os.environ``, forked and returned in both processes) fails or
    succeeds alone and the next task, of any run, starts clean. Checks cost a few identity and
    dict comparisons; restoring happens only when something changed."""

    def __init__(self) -> None:
        self.pid = 0

    def start(self) -> None:
        self.pid = os.getpid()
        self.streams = (sys.stdout, sys.stderr)
        self.environ = dict(os.environ)
        # os.environ's own mapping, compared without building a dict per task
        self.environ_data = dict(os.environ._data)  # type: ignore[attr-defined]
        os.register_at_fork(after_in_child=_die_with_parent)

    def after_task(self) -> None:
        if os.getpid() != self.pid:  # the copy a task forked returned here: it must not go on
            _flush_std()
            os._exit(0)

    def restore(self) -> None:
        out, err = self.streams
        if sys.stdout is not out or sys.stderr is not err or out.closed or err.closed:
            if out.closed:
                out = open(1, "w", closefd=False, errors="backslashreplace")
            if err.closed:
                err = open(2, "w", closefd=False, errors="backslashreplace")
            sys.stdout, sys.stderr = self.streams = (out, err)
        if os.environ._data != self.environ_data:  # type: ignore[attr-defined]
            os.environ.clear()
            os.environ.update(self.environ)


WORKER = _WorkerState()


def _die_with_parent() -> None:
    """In a process a task forks: die with the worker (which dies with the runner)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:  # noqa: BLE001 - not Linux
        pass


# The reply for a task whose claim another runner took over (nothing was written for it).
FENCED: OutcomeHeader = {"ok": False, "reason": "fenced", "error": "another runner took the claim over"}


def fenced(task: Dict[str, Any]) -> bool:
    """True once the claim's fencing token exists (one ``stat`` per check)."""
    return bool(task.get("fence")) and os.path.exists(task["fence"])


def enter_pool(runner_pid: int, environ: Optional[Dict[str, str]] = None) -> None:
    """Make this process a pool worker of the runner ``runner_pid``: its own process group
    (cancel kills the task's children too), death with the runner, and the environment of the
    dispatch whose runs it serves."""
    os.setpgrp()
    _die_with_parent()  # not Linux: the EOF on the pipe ends the worker instead
    if os.getppid() != runner_pid:
        # The runner died before the prctl: no signal will come, and a forked worker gets no
        # EOF on its pipe either (it holds both ends). Go now, not in a year.
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # not the runner's handlers: a task's own
        signal.signal(sig, signal.SIG_DFL)       # processes (a Pool's) must die of SIGTERM
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
        for entry in reversed(environ.get("PYTHONPATH", "").split(os.pathsep)):
            if entry and entry not in sys.path:  # a forked interpreter read it long ago
                sys.path.insert(0, entry)


def serve_spawned() -> None:
    """``python -c "from runner.worker import serve_spawned; serve_spawned()" FD RUNNER_PID
    OUT_R OUT_W ERR_R ERR_W``: a pool worker of another interpreter than the runner's, talking
    over socket ``FD``, its output through the two pipes given."""
    from multiprocessing.connection import Connection

    enter_pool(int(sys.argv[2]))
    fds = [int(a) for a in sys.argv[3:7]]
    serve(Connection(int(sys.argv[1])), [(fds[0], fds[1]), (fds[2], fds[3])])


START_DELAY = 0.05  # how long a pool task runs before the worker says it started


class _StartReporter:
    """Tells the runner a pool task started, as ``(run, node, attempt, start time)`` on the
    worker's connection, once it has run ``START_DELAY`` seconds: the many short tasks end
    before and cost nothing (their outcome has their start). A thread of its own looks every
    ``START_DELAY`` while a task runs and sleeps while the worker is idle; the task's thread
    only sets ``current``. Sends on the connection are under ``lock`` (both threads send)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.current: Optional[Tuple[str, int, int, float]] = None
        self.busy = threading.Event()
        threading.Thread(target=self._watch, name="cov-start", daemon=True).start()

    def begin(self, task: Dict[str, Any]) -> None:
        self.current = (task["run"], task["node"], task.get("attempt", 1), time.time())
        if not self.busy.is_set():
            self.busy.set()

    def send(self, message: Any) -> None:
        self.current = None
        with self.lock:
            self.conn.send(message)

    def _watch(self) -> None:
        told = None
        while True:
            self.busy.wait()
            time.sleep(START_DELAY)
            current = self.current
            if current is None:
                self.busy.clear()
                if self.current is not None:  # a task began meanwhile: keep watching it
                    self.busy.set()
                continue
            if current is told or time.time() - current[3] < START_DELAY:
                continue
            told = current
            try:
                with self.lock:
                    if self.current is current:  # still running: not ended meanwhile
                        self.conn.send(current)
            except (OSError, ValueError):
                return  # the runner is gone


def serve(conn: Any, pipes: Optional[List[Tuple[int, int]]] = None) -> None:
    """A pool process: receive task dicts on ``conn``, answer (run, node, attempt, header),
    and, for a task still running ``START_DELAY`` after it started, (run, node, attempt, start
    time) before that: the task is RUNNING from then on (until it starts it waits in this
    worker's queue, QUEUED).

    Messages already in the pipe are read before each task, so a ``skip`` (the task was
    cancelled while queued here) is seen before the task would start.
    """
    runs: Dict[str, _RunFiles] = {}
    capture = _Capture(pipes)
    WORKER.start()
    starts = _StartReporter(conn)
    pending: List[Dict[str, Any]] = []
    skipped: set = set()
    while True:
        try:
            while not pending or conn.poll():
                message = conn.recv()
                if message is None:
                    capture.close()
                    return
                for item in message if isinstance(message, list) else [message]:
                    if item.get("skip"):
                        skipped.add((item["run"], item["node"]))
                    elif item.get("release"):  # the run ended: leave nothing in it
                        capture.release(layout.logs_dir(item["release"]))
                        files = runs.pop(item["release"], None)
                        if files is not None:
                            files.close()
                    else:
                        pending.append(item)
        except (EOFError, OSError):
            return
        task = pending.pop(0)
        if (task["run"], task["node"]) in skipped:
            skipped.discard((task["run"], task["node"]))
            continue
        if fenced(task):
            starts.send((task["run"], task["node"], task.get("attempt", 1), FENCED.copy()))
            continue
        starts.begin(task)
        try:
            header = execute_local(task, runs, capture)
        except BaseException as exc:  # noqa: BLE001 - e.g. results/ unwritable
            header = {"ok": False, "reason": "worker",
                      "error": f"worker could not record the outcome: {type(exc).__name__}: {exc}"}
        WORKER.restore()
        starts.send((task["run"], task["node"], task.get("attempt", 1), header))


# -- the batch side (SSH hosts, Slurm jobs) -------------------------------------------------------
def execute_bundle(bundle_path: str, outcome_path: str, stdout_path: str, stderr_path: str) -> int:
    """Run a self-contained task bundle; write its outcome. Returns 0 unless the outcome
    itself could not be written."""
    rank, ranks = _slurm_rank()
    existing = read_outcome_header(outcome_path) if ranks == 1 else None  # ranks: the script
    if existing is not None and existing.get("ok"):
        return 0  # a requeued job whose attempt already succeeded: nothing to do
    if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
        # the job's time limit is near (sbatch --signal): noted, not fatal (ct.get_context())
        signal.signal(signal.SIGUSR1, lambda *_: CURRENT_TASK.update(warned=time.time()))
    with _Redirect(stdout_path, stderr_path, shared=ranks > 1) as fds:
        try:
            with open(bundle_path, "rb") as f:
                bundle = pickle.load(f)
            if bundle.get("cwd"):
                try:
                    os.chdir(bundle["cwd"])
                except OSError:
                    pass
            for entry in bundle.get("sys_path", ()):
                sys.path.insert(0, entry)
            CURRENT_TASK.update(bundle.get("context", {}))
            electron = pickle.loads(bundle["fn"])
            args, kwargs = load_inputs(bundle["inputs"], lambda src: pickle.loads(src))
        except BaseException as exc:  # noqa: BLE001
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            header: OutcomeHeader = {"ok": False, "reason": "load", "host": HOST, "pid": os.getpid(),
                      "error": f"cannot load the task on {HOST}:\n{text}",
                      "start": time.time(), "end": time.time()}
            _write_fd(fds[1], header["error"])
            payload = b""
        else:
            header, payload = run_task(electron, args, kwargs, fds[0], fds[1],
                                       bool(bundle.get("backend_transfers")))
    if rank == 0:  # the task's result is rank 0's
        write_outcome(outcome_path, header, payload)
    return 0


def _slurm_rank() -> Tuple[int, int]:
    """(rank, ranks) of this process in a Slurm job step of several tasks (``srun`` with
    ``ntasks`` > 1: each rank runs the task); (0, 1) otherwise."""
    try:
        ranks = int(os.environ.get("SLURM_STEP_NUM_TASKS") or 1)
        return (int(os.environ.get("SLURM_PROCID") or 0), ranks) if ranks > 1 else (0, 1)
    except ValueError:
        return 0, 1


if __name__ == "__main__":
    sys.exit(execute_bundle(*sys.argv[1:5]))
