"""What runs on a Dask worker for one task attempt (the Dask backend's remote half).

Sent as code (``cloudpickle.register_pickle_by_value``): a Dask worker needs no cov, only its
own Python, cloudpickle and distributed. Two parts:

``make_plugin(shipped)``
    a Dask worker plugin, registered once per cluster and cov version (named ``cov-<hash>``):
    on each worker it puts the shipped worker (``runner.worker.shipped_files``) and
    ``dask_zygote.py`` into ``<local_directory>/cov-<uid>/lib-<hash>/`` and starts the
    *zygote* (``runner/backends/dask/zygote.py``), a process that has imported the worker and
    cloudpickle once and forks one child per attempt (a task costs a fork, not an interpreter
    start). It dies with the worker (teardown, and PDEATHSIG).

``run_attempt(...)``, the function of one Dask task
    writes the bundle into ``.../cov-<uid>/<key>/``, has the zygote fork a child that runs
    ``execute_bundle`` in a session of its own (the task's prints, ``os.dup2`` and crashes
    stay out of the Dask worker's process, whose threads run other tasks; a cancel kills the
    task's whole process group: ``kill_attempt``), or, with a ``python`` of its own, starts
    ``python worker.py BUNDLE OUTCOME STDOUT STDERR``. While the child runs it sends its start
    (pid, host) and what it printed since the last look as Dask log events on ``TOPIC``, and
    it returns the outcome file, stdout, stderr and the launcher's log as bytes: the runner
    writes them into the run directory, which the Dask workers need not see.

Standard library only at the top (``distributed`` inside functions, which run on a worker).
"""
from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Optional

TOPIC = "cov-attempt"  # the Dask log-event topic of starts and live output
TICK = 0.5  # seconds between two looks at the task's output
# At most this much of one stream per event (the rest comes next tick): the scheduler keeps
# the last 1000 events of a topic (distributed.admin.low-level-log-length) in memory.
CHUNK = 32 * 1024
CANCELLED = "cancelled"  # in an attempt's scratch directory: kill_attempt came
ZYGOTE_FILE = "dask_zygote.py"  # runner/backends/dask/zygote.py, shipped beside the worker
ZYGOTE_SOCKET = "zygote.sock"
ZYGOTE_LOG = "zygote.log"

def digest(shipped: Dict[str, bytes]) -> str:
    """The version of the shipped files (names the plugin and the lib directory)."""
    return hashlib.sha256(b"".join(name.encode() + data for name, data in
                                   sorted(shipped.items()))).hexdigest()[:16]


def _base(dask_worker: Any = None) -> str:
    """This worker's scratch directory for cov (in the Dask worker's ``local_directory``)."""
    if dask_worker is None:
        from distributed import get_worker

        dask_worker = get_worker()
    base = os.path.join(str(dask_worker.local_directory), f"cov-{os.getuid()}")
    os.makedirs(base, mode=0o700, exist_ok=True)  # bundles hold the user's data
    return base


def _attempt_dir(base: str, key: str) -> str:
    return os.path.join(base, "".join(c if c.isalnum() or c in "-_." else "_" for c in key))


def _install(base: str, shipped: Dict[str, bytes], entry: str) -> str:
    """The shipped worker's files in ``lib-<hash>/`` (written once per version, each file under
    a temporary name and renamed, ``entry`` last: its presence means all are there)."""
    lib = os.path.join(base, f"lib-{digest(shipped)}")
    if os.path.exists(os.path.join(lib, entry)):
        return lib
    os.makedirs(lib, exist_ok=True)
    for name in sorted(shipped, key=lambda n: n == entry):
        tmp = os.path.join(lib, f".{name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(shipped[name])
        os.replace(tmp, os.path.join(lib, name))
    return lib


def make_plugin(shipped: Dict[str, bytes], entry: str) -> Any:
    """The worker plugin that installs the shipped worker and runs the zygote on each Dask
    worker (``distributed`` is imported here, not at the module's import)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class CovWorkerPlugin(WorkerPlugin):
        idempotent = True  # registered again by each runner: kept, not restarted
        name = f"cov-{digest(shipped)}"

        def __init__(self) -> None:
            self.lib = ""
            self.socket = ""
            self.zygote: Optional[subprocess.Popen] = None

        def setup(self, worker: Any) -> None:
            base = _base(worker)
            self.lib = _install(base, shipped, entry)
            # a unix socket's path has at most 107 bytes; a private directory keeps it ours
            where = self.lib if len(self.lib) < 80 else tempfile.mkdtemp(prefix="cov-")
            self.socket = os.path.join(where, ZYGOTE_SOCKET)
            with open(os.path.join(self.lib, ZYGOTE_LOG), "ab") as log:
                self.zygote = subprocess.Popen(
                    [sys.executable, os.path.join(self.lib, ZYGOTE_FILE), self.lib,
                     self.socket],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=base)

        def attempt(self, *args: Any) -> Dict[str, Any]:
            return _attempt(self, *args)

        def teardown(self, worker: Any) -> None:
            if self.zygote is not None:
                self.zygote.kill()
                self.zygote.wait()

    return CovWorkerPlugin()


def _event(message: Dict[str, Any]) -> None:
    try:
        from distributed import get_worker

        get_worker().log_event(TOPIC, message)
    except Exception:  # noqa: BLE001 - news are a nicety; the result still comes whole
        pass


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _send_new_output(key: str, paths: Dict[str, str], sent: Dict[str, int]) -> None:
    for stream, path in paths.items():
        try:
            with open(path, "rb") as f:
                f.seek(sent[stream])
                data = f.read(CHUNK)
        except OSError:
            continue
        if data:
            _event({"key": key, "kind": "live", "stream": stream, "offset": sent[stream],
                    "data": data})
            sent[stream] += len(data)


class _Forked:
    """A child of the zygote: its pid, and its exit code once the zygote says it."""

    def __init__(self, plugin: Any, request: Dict[str, str]) -> None:
        deadline = time.time() + 60
        while True:  # the zygote starts with the worker: it may not listen yet
            self.conn = socket.socket(socket.AF_UNIX)
            try:
                self.conn.connect(plugin.socket)
                break
            except OSError:
                self.conn.close()
                if plugin.zygote.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"cov's zygote on this Dask worker is not running "
                                       f"(exit code {plugin.zygote.poll()}; see "
                                       f"{os.path.join(plugin.lib, ZYGOTE_LOG)})") from None
                time.sleep(0.02)
        self.conn.sendall(json.dumps(request).encode() + b"\n")
        self.buffer = b""
        pid = self._line("pid")
        assert pid is not None  # no timeout: a line or an error
        self.pid = int(pid)

    def _line(self, field: str, timeout: Optional[float] = None) -> Optional[str]:
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.conn], [], [], timeout)
            if not ready:
                return None
            data = self.conn.recv(4096)
            if not data:
                raise RuntimeError("cov's zygote on this Dask worker closed the connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        name, _, value = line.decode().partition(" ")
        if name != field:
            raise RuntimeError(f"cov's zygote answered {line!r}")
        return value

    def wait(self, timeout: float) -> Optional[int]:
        value = self._line("rc", timeout)
        if value is None:
            return None
        self.conn.close()
        return int(value)


class _Started:
    """A ``python worker.py ...`` of its own (an executor's ``python_path``)."""

    def __init__(self, python: str, lib: str, entry: str, path: Dict[str, str]) -> None:
        with open(path["launch"], "ab") as launch:
            self.proc = subprocess.Popen(
                [*python.split(), os.path.join(lib, entry), path["bundle"], path["outcome"],
                 path["stdout"], path["stderr"]],
                stdin=subprocess.DEVNULL, stdout=launch, stderr=launch, cwd=path["cwd"],
                start_new_session=True)  # its own process group: kill_attempt kills it whole
        self.pid = self.proc.pid

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


def run_attempt(plugin_name: str, *args: Any) -> Dict[str, Any]:
    """The function of an attempt's Dask task: ``attempt`` of the plugin on this worker.

    Small on purpose: it is pickled by value with every task, while the code it calls came
    once, with the plugin (pickling the module's functions by value for each task cost more
    than the task)."""
    from distributed import get_worker

    plugin = get_worker().plugins.get(plugin_name)
    if plugin is None:
        raise RuntimeError(f"the worker plugin {plugin_name} is not on this Dask worker")
    return plugin.attempt(*args)


def _attempt(plugin: Any, key: str, bundle: bytes, names: Dict[str, str],
             python: Optional[str] = None, workdir: Optional[str] = None,
             live: bool = True) -> Dict[str, Any]:
    """Run one attempt in a child process; its files as bytes.

    ``names``: the file names to use (``runner.layout``'s, passed in: this module runs where
    cov is not): ``worker``, ``bundle``, ``outcome``, ``stdout``, ``stderr``, ``launch``,
    ``pid``. ``python``: the interpreter of the task (default: the Dask worker's, through its
    zygote). ``workdir``: made if missing (the bundle's cwd). Returns ``{"outcome", "stdout",
    "stderr", "launch"}`` (bytes), ``rc``, ``pid``, ``host``.
    """
    here = _attempt_dir(_base(), key)
    shutil.rmtree(here, ignore_errors=True)  # an earlier try of the same key (a lost worker)
    os.makedirs(here)
    path = {name: os.path.join(here, names[name])
            for name in ("bundle", "outcome", "stdout", "stderr", "launch", "pid")}
    path["cwd"] = here
    with open(path["bundle"], "wb") as f:
        f.write(bundle)
    if workdir:
        try:
            os.makedirs(workdir, exist_ok=True)
        except OSError:
            pass  # the task runs in its scratch directory, as where the dispatch's cwd is not
    child: Any = _Started(python, plugin.lib, names["worker"], path) if python else \
        _Forked(plugin, {k: path[k] for k in ("bundle", "outcome", "stdout", "stderr",
                                              "launch", "cwd")})
    with open(path["pid"] + ".tmp", "w") as f:
        f.write(str(child.pid))
    os.replace(path["pid"] + ".tmp", path["pid"])
    host = socket.gethostname()
    _event({"key": key, "kind": "start", "pid": child.pid, "host": host, "start": time.time()})
    sent = {"stdout": 0, "stderr": 0}
    streams = {"stdout": path["stdout"], "stderr": path["stderr"]}
    cancelled = os.path.join(here, CANCELLED)
    while True:
        if os.path.exists(cancelled):  # a cancel that came while the child was starting
            _kill(child.pid)
        rc = child.wait(TICK)
        if rc is not None:
            break
        if live:
            _send_new_output(key, streams, sent)
    result: Dict[str, Any] = {name: _read(path[name])
                              for name in ("outcome", "stdout", "stderr", "launch")}
    result.update(rc=rc, pid=child.pid, host=host)
    shutil.rmtree(here, ignore_errors=True)
    return result


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the child's session: the task and what it started
    except ProcessLookupError:
        try:
            os.kill(pid, signal.SIGKILL)  # forked, not yet in a session of its own
        except ProcessLookupError:
            pass


def kill_attempt(key: str, names: Dict[str, str], dask_worker: Any = None) -> Optional[int]:
    """Kill the process group of attempt ``key`` if it runs on this Dask worker (called with
    ``Client.run`` on every worker); the pid killed, or None. An attempt whose child is not
    started yet is marked, and ``run_attempt`` kills the child once it has one."""
    here = _attempt_dir(_base(dask_worker), key)
    if not os.path.isdir(here):
        return None
    with open(os.path.join(here, CANCELLED), "w"):
        pass
    try:
        with open(os.path.join(here, names["pid"])) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    _kill(pid)
    return pid
