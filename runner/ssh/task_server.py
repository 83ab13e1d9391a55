"""The runner's side of the persistent worker on an SSH host (``runner.ssh.worker_server``).

``TaskServer`` starts the server on one exec channel of the host's reused connection (the
first task starts it; a lost one is started again by the next task), and a reader thread of
its own reads everything the server prints: it hands live-output frames and the result
files of a finished task to that task's callbacks as they come, and wakes the task's thread
with the pid and the exit code. ``submit`` sends one request and returns a ``ServerTask`` to
wait on.

When the channel ends (the connection dropped, went silent for 3 heartbeats, or the server
died), every waiting task gets ``ConnectionLost``; the backend then finds its task by the pid
file, as for the shell launcher (``protocol.recover_script``): the tasks, forked into their own
sessions, outlive the server.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from runner.ssh import protocol
from runner.ssh.connection import ConnectionLost, SSHError, SSHHost, send_all

log = logging.getLogger("cov.ssh")

# the server's file, shipped beside worker.py (runner.ssh.remote)
SERVER_FILE = "worker_server.py"

OnChunk = Callable[[str, int, bytes], None]


class ServerTask:
    """One task sent to the server: its pid, then its exit code and result files
    (``[(name, bytes)]``), once known."""

    def __init__(self, on_chunk: OnChunk) -> None:
        self.on_chunk = on_chunk
        self.pid: Optional[int] = None
        self.rc: Optional[int] = None
        self.files: List[Tuple[str, bytes]] = []
        self.error: Optional[SSHError] = None
        self.changed = threading.Condition()

    def _set(self, **fields: Any) -> None:
        with self.changed:
            for key, value in fields.items():
                setattr(self, key, value)
            self.changed.notify_all()

    def wait_pid(self) -> int:
        """The task's pid there; ``ConnectionLost`` if the server went first."""
        with self.changed:
            self.changed.wait_for(lambda: self.pid is not None or self.rc is not None or
                                  self.error is not None)
        if self.pid is None and self.error is not None:
            raise self.error
        return int(self.pid if self.pid is not None else -1)

    def wait_rc(self, timeout: Optional[float] = None) -> Optional[int]:
        """Its exit code (its result files are in ``files`` then); None if it is still
        running after ``timeout`` seconds."""
        with self.changed:
            self.changed.wait_for(lambda: self.rc is not None or self.error is not None,
                                  timeout)
        if self.rc is None and self.error is not None:
            raise self.error
        return self.rc


class TaskServer:
    """One persistent worker on a host, shared by the backend's threads."""

    def __init__(self, host: SSHHost, command: str, heartbeat: float) -> None:
        self.host = host
        self.command = command  # the shell line that runs worker_server.py there
        self.heartbeat = heartbeat
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._chan: Any = None
        self._reading = False  # a reader thread runs (starting the server, or reading it)
        self._ready = threading.Event()
        self._failure: Optional[SSHError] = None
        self._tasks: Dict[str, ServerTask] = {}
        self._count = 0
        self._generation = 0  # of reader threads: a task is only sent to a live one

    def submit(self, request: Dict[str, Any], bundle: bytes, on_chunk: OnChunk) -> ServerTask:
        """Send one task (``worker_server`` says what ``request`` holds; its ``id`` is set
        here); the server is started first if it does not run."""
        chan, generation = self._channel()
        task = ServerTask(on_chunk)
        with self._lock:
            if generation != self._generation or not self._reading:  # it ended meanwhile
                raise ConnectionLost(f"the worker on {self.host.label} ended", self.host.label)
            self._count += 1
            request = dict(request, id=str(self._count))
            self._tasks[request["id"]] = task
        data = json.dumps(request).encode()
        try:
            with self._send_lock:
                send_all(chan, f"@cov run {len(data)} {len(bundle)}\n".encode() + data + bundle)
        except Exception as exc:  # noqa: BLE001 - paramiko raises many kinds
            with self._lock:
                self._tasks.pop(request["id"], None)
            raise ConnectionLost(f"connection to {self.host.label} lost while sending a task: "
                                 f"{exc}", self.host.label) from None
        return task

    def close(self) -> None:
        """Stop using the server (its channel closes with the connection)."""
        chan = self._chan
        if chan is not None:
            try:
                chan.shutdown_write()  # EOF on its stdin: it exits, the tasks go on
            except Exception:  # noqa: BLE001 - a dead channel
                pass

    # -- the channel ------------------------------------------------------------------------------
    def _channel(self) -> Tuple[Any, int]:
        """The server's channel (starting the server if none runs) and its generation."""
        with self._lock:
            if not self._reading:  # none yet, or the last one ended: start one
                self._reading = True
                self._generation += 1
                self._ready = threading.Event()
                self._failure = None
                self._chan = None
                threading.Thread(target=self._read_all, args=(self._ready,), daemon=True,
                                 name=f"cov-ssh-server-{self.host.label}").start()
            ready, generation = self._ready, self._generation
        ready.wait()
        with self._lock:
            if generation != self._generation or self._failure is not None or \
                    self._chan is None:
                raise self._failure or ConnectionLost(f"the worker on {self.host.label} ended",
                                                      self.host.label)
            return self._chan, generation

    def _read_all(self, ready: threading.Event) -> None:
        """The reader thread: start the server, then dispatch what it prints until it ends."""
        failure: SSHError
        try:
            with self.host.channel(self.command, timeout=3 * self.heartbeat + 5) as chan:
                reader = protocol.ChannelReader(chan)
                try:
                    reader.field("ready")
                except protocol.ScriptFailed as exc:
                    raise SSHError(f"could not start the worker on {self.host.label}: {exc}",
                                   self.host.label) from None
                with self._lock:
                    self._chan = chan
                ready.set()
                self._dispatch(reader)
        except ConnectionLost as exc:
            failure = exc
        except protocol.ScriptFailed as exc:  # the server exited: its tasks may still run
            failure = ConnectionLost(f"the worker on {self.host.label} ended ({exc})",
                                     self.host.label)
        except SSHError as exc:
            failure = exc
        except Exception as exc:  # noqa: BLE001 - a bug must not leave tasks waiting
            log.exception("ssh: worker reader")
            failure = ConnectionLost(f"reading the worker on {self.host.label} failed: "
                                     f"{type(exc).__name__}: {exc}", self.host.label)
        else:
            failure = ConnectionLost(f"the worker on {self.host.label} ended", self.host.label)
        with self._lock:
            self._failure = failure
            self._reading = False
            self._chan = None
            tasks, self._tasks = self._tasks, {}
        ready.set()
        for task in tasks.values():
            task._set(error=failure)

    def _dispatch(self, reader: protocol.ChannelReader) -> None:
        while True:
            line = reader.line()
            if not line.startswith("@cov "):
                continue  # a heartbeat
            words = line.split()
            kind, ident = words[1], words[2] if len(words) > 2 else ""
            with self._lock:
                task = self._tasks.get(ident)
            if kind == "pid" and task is not None:
                task._set(pid=int(words[3]))
            elif kind == "chunk":
                stream, offset, size = words[3], int(words[4]), int(words[5])
                data = reader.read(size)
                if task is not None and data:
                    task.on_chunk(stream, offset, data)
            elif kind == "done":
                rc, count = int(words[3]), int(words[4])
                files = []
                for _ in range(count):
                    name, _, size_text = reader.line().rpartition(" ")
                    files.append((name, reader.read(int(size_text))))
                with self._lock:
                    self._tasks.pop(ident, None)
                if task is not None:  # its thread writes them: this one reads on at once
                    task._set(files=files, rc=rc)
            else:
                raise protocol.ScriptFailed(f"unexpected output {line[:200]!r}")


__all__ = ["SERVER_FILE", "ServerTask", "TaskServer"]
