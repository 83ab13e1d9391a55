"""cov's zygote on a Dask worker: ``python dask_zygote.py LIB SOCKET``.

Shipped beside the worker into ``LIB`` (``dask_task.make_plugin``) and started once per Dask
worker: it imports the shipped worker and cloudpickle once, then forks one child per attempt,
so an attempt costs a fork, not an interpreter start. Never imported by the runner.

Protocol, one connection to the unix socket ``SOCKET`` per attempt: the request is one JSON
line (``bundle``, ``outcome``, ``stdout``, ``stderr``, ``launch``, ``cwd``); the zygote answers
``pid N`` once forked and ``rc N`` when the child ends. It is single-threaded (a selector over
the socket, the connections and a SIGCHLD wakeup pipe; no pidfd, which kernels before 5.3
lack), so forking it is safe. A child starts as ``python worker.py`` would (signals as Python
sets them), in a session of its own, and dies with the zygote, which dies with its Dask worker.

Standard library only (and the shipped worker it runs).
"""
from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from typing import Any, Callable, Dict

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # Linux
    except Exception:  # noqa: BLE001 - elsewhere: the plugin's teardown still kills it
        pass


def _reply(conn: socket.socket, line: str) -> None:
    try:
        conn.sendall(line.encode())
    except OSError:
        pass  # the Dask task went: nobody to tell


class Zygote:
    """The listening socket, the connections being read, the children being waited for."""

    def __init__(self, path: str, execute: Callable[[str, str, str, str], int]) -> None:
        self.execute = execute
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path + ".tmp")
        self.server.listen(64)
        os.rename(path + ".tmp", path)  # listening once it has its name
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.server, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "sigchld")
        self.buffers: Dict[socket.socket, bytes] = {}
        self.children: Dict[int, socket.socket] = {}  # pid -> who waits for its exit code

    def serve(self) -> None:
        while True:
            for key, _ in self.sel.select():
                try:
                    self._handle(key)
                except Exception:  # noqa: BLE001 - one bad request must not stop the zygote
                    traceback.print_exc()

    def _handle(self, key: selectors.SelectorKey) -> None:
        if key.data == "accept":
            conn, _ = self.server.accept()
            self.buffers[conn] = b""
            self.sel.register(conn, selectors.EVENT_READ, conn)
        elif key.data == "sigchld":
            try:
                while os.read(self.wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            self._reap()
        else:
            conn = key.data
            data = conn.recv(65536)
            self.buffers[conn] += data
            if b"\n" in self.buffers[conn] or not data:
                self.sel.unregister(conn)
                line = self.buffers.pop(conn)
                if data:
                    self._fork(conn, json.loads(line))
                else:
                    conn.close()

    def _fork(self, conn: socket.socket, request: Dict[str, str]) -> None:
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                code = self._child(conn, request)
            except BaseException:  # noqa: BLE001 - the launch log says why
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        self.children[pid] = conn
        _reply(conn, f"pid {pid}\n")

    def _child(self, conn: socket.socket, request: Dict[str, str]) -> int:
        os.setsid()
        _die_with_parent()  # the task goes with the zygote
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for key in list(self.sel.get_map().values()):  # the zygote's fds are not the task's
            try:
                os.close(key.fd)
            except OSError:
                pass
        for other in self.children.values():
            other.close()
        conn.close()
        os.close(self.wake_w)
        fd = os.open(request["launch"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.chdir(request["cwd"])
        return self.execute(request["bundle"], request["outcome"], request["stdout"],
                            request["stderr"])

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                _reply(conn, f"rc {os.waitstatus_to_exitcode(status)}\n")
                conn.close()


def main(lib: str, path: str) -> None:
    _die_with_parent()  # the zygote goes with its Dask worker
    if lib not in sys.path:
        sys.path.insert(0, lib)
    import worker as shipped  # type: ignore[import-not-found]  # the shipped mode: it takes
    # lib off sys.path again and forgets the modules it shipped with

    execute: Any = shipped.execute_bundle
    sys.modules.pop("worker", None)  # the task's own `import worker` is its own
    import cloudpickle  # noqa: F401 - imported once here, in every child for free

    Zygote(path, execute).serve()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
