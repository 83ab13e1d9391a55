"""Starting a runner as a fork of the dispatching process, where that is safe.

A spawned runner (``python -m runner``) is a fresh interpreter: its start and imports (~0.1-0.3 s)
were the larger part of a small run's wait. ``cov dispatch`` has already imported most of what a
runner needs when it starts one, so there the runner is forked instead: it is serving the home
~30 ms later, its few remaining imports done while the dispatch builds its graph.

Only where a fork cannot inherit a half-held lock: a process that said so (``allow``: the
``cov dispatch`` command, before it runs the user's script) and that has one thread, counted by
the kernel (``/proc/self/task``), so threads a C extension started count too. Everywhere else (a
Jupyter kernel, a script with threads of its own, ``ct.dispatch`` in a user's program), and with
``COV_FORK_RUNNER=0``, the runner is spawned as before.

The forked runner is detached as the spawned one is: a double fork (it is nobody's child here, so
never a zombie a waiter takes for alive), a session of its own, stdin from ``/dev/null``, stdout
and stderr appended to ``runner.log``, every other inherited descriptor closed (the dispatch's
pipes, its spawn lock), ``/`` as its directory and the package root first on ``PYTHONPATH``. It
never returns into the dispatch's code: it ends with ``os._exit`` when ``runner.daemon.main``
returns, idle, and the objects it inherited are frozen out of the garbage collector (one holding an
inherited descriptor number must never close a descriptor the runner opened since).
"""
from __future__ import annotations

import gc
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

_allowed = False
# In a forked runner: the interpreter and environment of the dispatch it was forked from, whose
# run is coming (its local pool is started before the run is there); None elsewhere.
dispatch_env: Optional[Tuple[str, Dict[str, str]]] = None
# Modules the dispatching process says its runs' tasks refer to by name (the SDK's reshaping
# functions, ``covalent_cli.build``): a runner forked from it imports them before it forks its
# pool (``runner_base._warm_pool``), so that a worker does not import them at its first such
# task (~10 ms at the end of a small run). Set before the fork; by name, as a pickle does.
worker_modules: Tuple[str, ...] = ()


@contextmanager
def allowed() -> Iterator[None]:
    """Runners started inside may be forks of this process (while it has one thread):
    ``cov dispatch`` around its early runner start, before the user's script runs (a fork
    after it would hand the pool workers the script's modules, as it left them)."""
    global _allowed
    _allowed = True
    try:
        yield
    finally:
        _allowed = False


def safe() -> bool:
    """A fork of this process may become a runner now."""
    if not _allowed or os.environ.get("COV_FORK_RUNNER", "1") == "0" or \
            not hasattr(os, "fork"):
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False  # no /proc: the threads cannot be counted


def fork_runner(home: Path, log_path: Path, main: Callable[[List[str]], int],
                argv: List[str]) -> Optional[int]:
    """Fork a detached runner running ``main(argv)`` (``runner.daemon.main``; its placeholder
    heartbeat written); its pid, or None if the fork failed (the caller spawns one instead)."""
    for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    read_end, write_end = os.pipe()
    try:
        child = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        os.close(log_fd)
        return None
    if child == 0:  # the first child: a new session, then the runner is its child
        try:
            os.close(read_end)
            os.setsid()
            if os.fork() == 0:
                _become_runner(log_fd, write_end, home, main, argv)  # never returns
        finally:
            os._exit(0)
    os.close(write_end)
    os.close(log_fd)
    try:
        data = b""
        while True:
            chunk = os.read(read_end, 32)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        os.waitpid(child, 0)
    return int(data) if data else None


def _become_runner(log_fd: int, told: int, home: Path, main: Callable[[List[str]], int],
                   argv: List[str]) -> None:
    """In the runner's process: the placeholder heartbeat, our pid on ``told`` (the
    dispatch goes on once it is there), detach from the dispatch, serve until idle; exits."""
    global dispatch_env
    code = 1
    try:
        dispatch_env = (sys.executable, dict(os.environ))
        from runner.liveness import HOST, write_heartbeat

        pid = os.getpid()
        # Before the runner's own heartbeat (same file), which must never be overwritten by
        # it: a dispatch right behind this one sees a runner coming.
        write_heartbeat(home, {"id": f"{HOST}:{pid}:starting", "host": HOST, "pid": pid,
                               "home": str(home), "runs": []})
        os.write(told, str(pid).encode())
        os.close(told)
        gc.freeze()  # what the dispatch allocated is never collected here (see the docstring)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, _max_fd())
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False, errors="backslashreplace")
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
        cwd = os.getcwd()
        os.chdir("/")
        root = str(Path(__file__).resolve().parent.parent)
        existing = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = root + (os.pathsep + existing if existing else "")
        if sys.path and sys.path[0] in ("", cwd):
            sys.path[0] = root  # the dispatch's directory is not the runner's
        sys.argv = [os.path.join(root, "runner", "__main__.py"), *argv]
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - said in runner.log; the dispatch goes on regardless
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _max_fd() -> int:
    try:
        return max(int(name) for name in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return os.sysconf("SC_OPEN_MAX")
