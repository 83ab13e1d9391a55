"""What runs on a Dask worker for one task attempt (the Dask backend's remote half).

``run_attempt`` is submitted to the scheduler as the function of one Dask task. It is pickled
by value (``cloudpickle.register_pickle_by_value``), so a Dask worker needs no cov: only its own
Python, cloudpickle and distributed. On the worker it:

1. puts the shipped worker (``runner.worker.shipped_files``, sent as bytes) into
   ``<local_directory>/cov/lib-<hash>/`` once, and the task's bundle into
   ``<local_directory>/cov/<key>/``;
2. starts ``python worker.py BUNDLE OUTCOME STDOUT STDERR`` there in a session of its own: the
   task's prints, ``os.dup2`` and crashes stay out of the Dask worker's process (whose threads
   run other tasks), and a cancel can kill the task's whole process group (``kill_attempt``);
3. while it runs, sends its start (pid, host) and what it printed since the last look as Dask
   log events on ``TOPIC`` (the runner subscribes and writes them into the run's logs at once);
4. returns the outcome file, stdout, stderr and the launcher's log as bytes; the runner writes
   them into the run directory, so the Dask workers need not see it.

This module imports only the standard library at the top (``distributed`` inside functions,
where it runs on a Dask worker): it is sent as code, not imported there.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Optional

TOPIC = "cov-attempt"  # the Dask log-event topic of starts and live output
TICK = 0.5  # seconds between two looks at the task's output
CHUNK = 256 * 1024  # at most this much of one stream per event (the rest comes next tick)


def _base(dask_worker: Any = None) -> str:
    """This worker's scratch directory for cov (the Dask worker's ``local_directory``)."""
    try:
        if dask_worker is None:
            from distributed import get_worker

            dask_worker = get_worker()
        root = str(dask_worker.local_directory)
    except Exception:  # noqa: BLE001 - not on a Dask worker (a test calling it directly)
        import tempfile

        root = tempfile.gettempdir()
    return os.path.join(root, f"cov-{os.getuid()}")


def _attempt_dir(base: str, key: str) -> str:
    return os.path.join(base, "".join(c if c.isalnum() or c in "-_." else "_" for c in key))


def _install(base: str, shipped: Dict[str, bytes], entry: str) -> str:
    """The shipped worker's files in ``lib-<hash>/`` (written once per version, each file under
    a temporary name and renamed, ``entry`` last: its presence means all are there)."""
    digest = hashlib.sha256(b"".join(name.encode() + data for name, data in
                                     sorted(shipped.items()))).hexdigest()[:16]
    lib = os.path.join(base, f"lib-{digest}")
    if os.path.exists(os.path.join(lib, entry)):
        return lib
    os.makedirs(lib, exist_ok=True)
    for name in sorted(shipped, key=lambda n: n == entry):
        tmp = os.path.join(lib, f".{name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(shipped[name])
        os.replace(tmp, os.path.join(lib, name))
    return lib


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


def run_attempt(key: str, shipped: Dict[str, bytes], bundle: bytes, names: Dict[str, str],
                python: Optional[str] = None, live: bool = True) -> Dict[str, Any]:
    """Run one attempt in a child process of this Dask worker; its files as bytes.

    ``names``: the file names to use (``runner.layout``'s, passed in: this module runs where
    cov is not): ``worker``, ``bundle``, ``outcome``, ``stdout``, ``stderr``, ``launch``,
    ``pid``. ``python``: the interpreter of the task (default: the Dask worker's own).
    Returns ``{"outcome", "stdout", "stderr", "launch"}`` (bytes), ``rc``, ``pid``, ``host``.
    """
    base = _base()
    lib = _install(base, shipped, names["worker"])
    here = _attempt_dir(base, key)
    shutil.rmtree(here, ignore_errors=True)  # an earlier try of the same key (a lost worker)
    os.makedirs(here)
    path = {name: os.path.join(here, names[name])
            for name in ("bundle", "outcome", "stdout", "stderr", "launch", "pid")}
    with open(path["bundle"], "wb") as f:
        f.write(bundle)
    host = socket.gethostname()
    with open(path["launch"], "wb") as launch:
        proc = subprocess.Popen(
            [python or sys.executable, os.path.join(lib, names["worker"]), path["bundle"],
             path["outcome"], path["stdout"], path["stderr"]],
            stdin=subprocess.DEVNULL, stdout=launch, stderr=launch, cwd=here,
            start_new_session=True)  # its own process group: kill_attempt kills it whole
    with open(path["pid"] + ".tmp", "w") as f:
        f.write(str(proc.pid))
    os.replace(path["pid"] + ".tmp", path["pid"])
    _event({"key": key, "kind": "start", "pid": proc.pid, "host": host, "start": time.time()})
    sent = {"stdout": 0, "stderr": 0}
    streams = {"stdout": path["stdout"], "stderr": path["stderr"]}
    while True:
        try:
            rc = proc.wait(timeout=TICK)
            break
        except subprocess.TimeoutExpired:
            if live:
                _send_new_output(key, streams, sent)
    result: Dict[str, Any] = {name: _read(path[name])
                              for name in ("outcome", "stdout", "stderr", "launch")}
    result.update(rc=rc, pid=proc.pid, host=host)
    shutil.rmtree(here, ignore_errors=True)
    return result


def kill_attempt(key: str, names: Dict[str, str], dask_worker: Any = None) -> Optional[int]:
    """Kill the process group of attempt ``key`` if it runs on this Dask worker (called with
    ``Client.run`` on every worker); the pid killed, or None."""
    pid_file = os.path.join(_attempt_dir(_base(dask_worker), key), names["pid"])
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.killpg(pid, signal.SIGKILL)
    except (OSError, ValueError):
        return None
    return pid
