"""A run lock held by a stopped process costs only that run (docs/reliability.md, "A lock
held by a stopped process").

Real holders: ``flock run.lock sleep`` and a runner stopped with SIGSTOP while it holds a run's
lock. Another runner keeps serving every other run, logs the held lock once, and takes the
locked run up when the holder lets go; ``cov cancel`` says who holds the lock and waits.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.fault.harness import Home, wait_until

COV = [sys.executable, "-m", "covalent_cli.cli"]

CHAIN = textwrap.dedent('''
    import covalent as ct


    @ct.electron
    def inc(x):
        return x + 1


    @ct.lattice
    def wf(x=0):
        return inc(inc(inc(x)))
''')

FAN = textwrap.dedent('''
    import covalent as ct


    @ct.electron
    def one(i):
        return i


    @ct.lattice
    def wf(n=3000):
        return [one(i) for i in range(n)]
''')


def dispatch(home: Home, body: str, name: str) -> Path:
    path = home.root / name
    path.write_text(body)
    proc = home.cov("dispatch", "-q", str(path))
    assert proc.returncode == 0, proc.stderr
    return home.path / proc.stdout.strip()


def status(home: Home, run: Path) -> str:
    proc = home.cov("status", run.name, "--json")
    return json.loads(proc.stdout)["status"] if proc.returncode == 0 else f"exit {proc.returncode}"


def flock_holders(pid: int, lock: Path) -> bool:
    """True if ``pid`` holds a flock on ``lock`` (from /proc/locks)."""
    try:
        inode = os.stat(lock).st_ino
    except FileNotFoundError:
        return False
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and "->" not in parts and \
                    int(parts[4]) == pid and int(parts[5].split(":")[2]) == inode:
                return True
    return False


def test_flock_holder_stops_only_its_run_and_cancel_says_who(home: Home):
    locked = dispatch(home, CHAIN, "locked.py")
    free = dispatch(home, CHAIN, "free.py")
    holder = subprocess.Popen(["flock", str(locked / "run.lock"), "sleep", "600"],
                              start_new_session=True)
    try:
        assert wait_until(lambda: flock_holders(holder.pid, locked / "run.lock"), 10)
        runner = home.start_runner(idle_timeout=30)
        # The other run completes while the lock stays held (the runner used to wait 60 s for
        # the lock, then die).
        assert wait_until(lambda: status(home, free) == "COMPLETED", 40, step=0.2), \
            home.runner_log_text()
        assert runner.poll() is None, home.runner_log_text()
        log = home.runner_log_text()
        assert log.count(f"run {locked.name} is locked by pid {holder.pid} on ") == 1, log
        assert status(home, locked) == "STARTING"

        cancel = subprocess.Popen([*COV, "cancel", locked.name], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=home.env)
        line = cancel.stderr.readline()
        assert line.startswith(f"{locked.name} is locked by pid {holder.pid} on "), line
        assert line.rstrip().endswith("; retrying"), line
        assert cancel.poll() is None  # still waiting for the lock
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        out, err = cancel.communicate(timeout=60)
        assert cancel.returncode == 0, err
        assert "Cancellation requested" in out and "Traceback" not in err
        assert wait_until(lambda: status(home, locked) == "CANCELLED", 30, step=0.2), \
            home.runner_log_text()
        assert "Traceback" not in home.runner_log_text()
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)


def test_cancel_gives_up_with_one_line_when_the_lock_stays_held(home: Home):
    run = dispatch(home, CHAIN, "held.py")
    holder = subprocess.Popen(["flock", str(run / "run.lock"), "sleep", "600"],
                              start_new_session=True)
    try:
        assert wait_until(lambda: flock_holders(holder.pid, run / "run.lock"), 10)
        proc = subprocess.run([*COV, "cancel", run.name], capture_output=True, text=True,
                              env={**home.env, "COV_NO_RUNNER": "1"}, timeout=200)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines[0] == f"{run.name} is locked by pid {holder.pid} on {os.uname().nodename};" \
                           " retrying"
        assert lines[-1].startswith(f"Error: {run.name} is still locked by pid {holder.pid}")
        assert "Traceback" not in proc.stderr and not (run / "cancel.json").exists()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)


def test_a_sigstopped_runner_holding_a_lock_stops_only_that_run(home: Home):
    busy = dispatch(home, FAN, "fan.py")
    first = home.start_runner(idle_timeout=30)
    lock = busy / "run.lock"
    caught = False
    deadline = time.monotonic() + 90
    # Stop the runner at a moment it holds the run's lock (it takes it for each claim and
    # each batch of results): stop, look, resume until caught.
    while time.monotonic() < deadline and not _ended(busy):
        os.kill(first.pid, signal.SIGSTOP)
        wait_until(lambda: _state_letter(first.pid) == "T", 5, step=0.001)
        if flock_holders(first.pid, lock):
            caught = True
            break
        os.kill(first.pid, signal.SIGCONT)
        time.sleep(0.003)
    assert caught, "never caught the runner holding the lock"
    try:
        other = dispatch(home, CHAIN, "other.py")
        home.start_runner(idle_timeout=30)
        assert wait_until(lambda: status(home, other) == "COMPLETED", 60, step=0.2), \
            home.runner_log_text()
        assert f"run {busy.name} is locked by pid {first.pid} on " in home.runner_log_text()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert wait_until(lambda: status(home, busy) == "COMPLETED", 120, step=0.2), \
        home.runner_log_text()
    assert "Traceback" not in home.runner_log_text()


def _ended(run: Path) -> bool:
    try:
        with open(run / "events.jsonl", "rb") as f:
            f.seek(max(0, os.path.getsize(run / "events.jsonl") - 300))
            return b'"ev": "run", "status": "COMPLETED"' in f.read()
    except OSError:
        return False


def _state_letter(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b") ", 1)[1][:1].decode()
