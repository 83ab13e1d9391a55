"""The runner `cov dispatch` forks (runner/fork_start.py): detached exactly as a spawned one is,
and only where a fork is safe; everywhere else a fresh interpreter, as before."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List

from tests.conftest import REPO, WORKFLOWS


def _runners(home: Path) -> List[Dict]:
    from runner.liveness import read_runners

    return [r for r in read_runners(home) if r["alive"]]


def _cmdline(pid: int) -> List[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [part.decode() for part in f.read().split(b"\0") if part]


def _wait_gone(pid: int, timeout: float = 60.0) -> bool:
    from runner.liveness import pid_alive

    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def test_cov_dispatch_forks_a_runner_detached_like_a_spawned_one(run_cov, cov_home):
    proc = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "--wait")
    # run() read the dispatch's stdout and stderr to their end: the runner, still alive, holds
    # neither pipe (nor anything else of the dispatch's).
    assert proc.returncode == 0, proc.stderr
    assert "HELLO, WORLD!" in proc.stdout
    runners = _runners(cov_home)
    assert len(runners) == 1
    pid = int(runners[0]["pid"])
    assert "covalent_cli.cli" in _cmdline(pid)  # a fork of the dispatch, not `python -m runner`
    assert not runners[0]["id"].endswith(":starting")  # its own heartbeat, not the placeholder
    assert os.getsid(pid) != os.getsid(0)  # a session of its own
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    fds = {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
    log = str(cov_home / ".runners" / "runner.log")
    assert fds[0] == os.devnull and fds[1] == log and fds[2] == log
    assert "serving" in Path(log).read_text()  # its output goes to runner.log
    with open(f"/proc/{pid}/status") as f:
        ppid = next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
    assert ppid != os.getpid()  # nobody's child here: reaped by init, never a zombie
    assert _wait_gone(pid), "the forked runner did not exit when idle"


def test_cov_dispatch_spawns_with_cov_fork_runner_0(run_cov, cov_home):
    proc = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "--wait",
                   env={"COV_FORK_RUNNER": "0"})
    assert proc.returncode == 0, proc.stderr
    [runner] = _runners(cov_home)
    assert _cmdline(int(runner["pid"]))[1:3] == ["-m", "runner"]


def test_a_script_dispatching_itself_gets_a_spawned_runner(cov_home, tmp_path):
    """ct.dispatch in a user's program (threads or not) never forks it."""
    script = tmp_path / "own.py"
    script.write_text(textwrap.dedent("""
        import covalent as ct

        @ct.electron
        def one():
            return 1

        @ct.lattice
        def flow():
            return one()

        print(ct.dispatch_sync(flow)().result)
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.stdout.strip() == "1", proc.stderr
    [runner] = _runners(cov_home)
    assert _cmdline(int(runner["pid"]))[1:3] == ["-m", "runner"]


def test_fork_is_safe_only_where_allowed_and_single_threaded():
    code = textwrap.dedent("""
        import threading
        from runner import fork_start

        print(fork_start.safe())
        with fork_start.allowed():
            print(fork_start.safe())
            stop = threading.Event()
            thread = threading.Thread(target=stop.wait)
            thread.start()
            print(fork_start.safe())
            stop.set()
            thread.join()
        print(fork_start.safe())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert proc.stdout.split() == ["False", "True", "False", "False"], proc.stderr
