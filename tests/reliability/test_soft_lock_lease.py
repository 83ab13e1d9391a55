"""NFS lock mode (``COV_LOCKS=soft``): a lock is never broken while its holder lives
(docs/reliability.md, "Soft locks on network filesystems").

Real processes: a holder takes a run's lock the way a runner does, re-reads the log, stalls
40 s (past the 30 s after which the old marker lock was taken to be abandoned) while alive, then
claims node N attempt 1 and lets go. A real runner serving the same home meanwhile must wait:
the holder's lease is renewed by its own thread. Before, the runner broke the lock at 30 s and
claimed the same attempt: two claims of (N, 1), the task run twice.
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
from tests.infra.fixtures import require_root
from tests.reliability.test_stopped_lock_holder import CHAIN, dispatch, status

HOLDER = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    from runner.liveness import HOST, write_heartbeat
    from runner.rundir import RunDir

    home, run, node, stall = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    me = f"{HOST}:{os.getpid()}:holder"
    if sys.argv[5:] != ["no-heartbeat"]:  # a runner has one; `cov cancel` has none
        write_heartbeat(home, {"id": me, "host": HOST, "pid": os.getpid(), "home": str(home),
                               "runs": ["-"]})
    rundir = RunDir(run)
    lock = rundir.lock()
    lock.acquire()
    print("locked", flush=True)
    rundir.state()
    time.sleep(stall)  # stalled while holding the lock, but alive
    rundir.append_events([{"ev": "claim", "node": node, "attempt": 1, "runner": me,
                           "host": HOST, "backend": "local"}])
    lock.release()
    print("released", flush=True)
''')


def _first_task(run: Path) -> int:
    """The task that is ready first: an electron whose inputs are all parameters."""
    body = (run / "manifest.yaml").read_text().split("\nnodes:\n", 1)[1]
    nodes = [json.loads(line[4:]) for line in body.splitlines()]
    parameters = {n["id"] for n in nodes if n["kind"] == "parameter"}
    return next(n["id"] for n in nodes if n["kind"] == "electron" and
                all(p["node"] in parameters for p in n.get("parents", ())))


def _claims(run: Path, node: int, attempt: int) -> int:
    count = 0
    for line in (run / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("ev") == "claim" and event.get("node") == node and \
                event.get("attempt") == attempt:
            count += 1
    return count


def _soft(home: Home) -> dict:
    return {**home.env, "COV_LOCKS": "soft"}


def test_a_stalled_live_holder_keeps_its_soft_lock(home: Home):
    run = dispatch(home, CHAIN, "chain.py")
    node = _first_task(run)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home.path), str(run), str(node),
                               "40"], stdout=subprocess.PIPE, text=True, env=_soft(home))
    home.procs.append(holder)
    assert holder.stdout.readline().strip() == "locked"
    with open(home.runner_log, "ab") as log:
        runner = subprocess.Popen([sys.executable, "-m", "runner", "--home", str(home.path),
                                   "--idle-timeout", "30"], stdout=log, stderr=log,
                                  env=_soft(home), cwd="/")
    home.procs.append(runner)
    assert holder.stdout.readline().strip() == "released"  # after 40 s
    holder.wait(timeout=30)
    assert wait_until(lambda: status(home, run) == "COMPLETED", 90, step=0.2), \
        home.runner_log_text()
    assert _claims(run, node, 1) == 1, (run / "events.jsonl").read_text()
    assert runner.poll() is None and "Traceback" not in home.runner_log_text()
    assert f"is locked by pid {holder.pid} on " in home.runner_log_text()


def test_a_dead_holders_soft_lock_is_taken_over(home: Home):
    run = dispatch(home, CHAIN, "chain.py")
    node = _first_task(run)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home.path), str(run), str(node),
                               "600"], stdout=subprocess.PIPE, text=True, env=_soft(home))
    home.procs.append(holder)
    assert holder.stdout.readline().strip() == "locked"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    start = time.monotonic()
    with open(home.runner_log, "ab") as log:
        runner = subprocess.Popen([sys.executable, "-m", "runner", "--home", str(home.path),
                                   "--idle-timeout", "30"], stdout=log, stderr=log,
                                  env=_soft(home), cwd="/")
    home.procs.append(runner)
    # Its pid is gone on this host: no need to wait out the lease.
    assert wait_until(lambda: status(home, run) == "COMPLETED", 25, step=0.2), \
        home.runner_log_text()
    assert time.monotonic() - start < 25
    assert _claims(run, node, 1) == 1


def test_a_frozen_holder_on_this_host_keeps_its_soft_lock(home: Home):
    """A holder stopped with SIGSTOP renews nothing; on its own host its pid shows it alive,
    so its lock is not broken however long the lease has expired (here 3 s, stopped 12 s)."""
    run = dispatch(home, CHAIN, "chain.py")
    node = _first_task(run)
    env = {**_soft(home), "COV_LOCK_LEASE": "3"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home.path), str(run), str(node),
                               "2"], stdout=subprocess.PIPE, text=True, env=env)
    home.procs.append(holder)
    assert holder.stdout.readline().strip() == "locked"
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        with open(home.runner_log, "ab") as log:
            runner = subprocess.Popen([sys.executable, "-m", "runner", "--home", str(home.path),
                                       "--idle-timeout", "30"], stdout=log, stderr=log, env=env,
                                      cwd="/")
        home.procs.append(runner)
        assert wait_until(lambda: "is locked by pid" in home.runner_log_text(), 30, step=0.1)
        time.sleep(12)  # four leases pass while the holder is frozen
        assert _claims(run, node, 1) == 0, (run / "events.jsonl").read_text()
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    assert holder.stdout.readline().strip() == "released"
    holder.wait(timeout=30)
    assert wait_until(lambda: status(home, run) == "COMPLETED", 90, step=0.2), \
        home.runner_log_text()
    assert _claims(run, node, 1) == 1
    assert "Traceback" not in home.runner_log_text()


def _elsewhere(*argv: str) -> list:
    """A command run as if on another host: its own UTS namespace, hostname ``otherhost``
    (same filesystem, same pids, but a contender cannot tell its pid from ours)."""
    require_root("a UTS namespace of its own (unshare --uts)")
    return ["unshare", "--uts", "sh", "-c", 'hostname otherhost && exec "$@"', "sh", *argv]


def test_a_live_holder_on_another_host_keeps_its_soft_lock_past_the_lease(home: Home):
    """Across hosts there is no pid to look at: a holder without a runner heartbeat (such as
    `cov cancel`) keeps its lock only by renewing its lease, for four leases of 2 s here."""
    run = dispatch(home, CHAIN, "chain.py")
    node = _first_task(run)
    env = {**_soft(home), "COV_LOCK_LEASE": "2"}
    holder = subprocess.Popen(_elsewhere(sys.executable, "-c", HOLDER, str(home.path), str(run),
                                         str(node), "8", "no-heartbeat"),
                              stdout=subprocess.PIPE, text=True, env=env)
    home.procs.append(holder)
    assert holder.stdout.readline().strip() == "locked"
    assert "otherhost" in (run / "run.lock").read_text()  # the marker names its host
    with open(home.runner_log, "ab") as log:
        runner = subprocess.Popen([sys.executable, "-m", "runner", "--home", str(home.path),
                                   "--idle-timeout", "30"], stdout=log, stderr=log, env=env,
                                  cwd="/")
    home.procs.append(runner)
    assert holder.stdout.readline().strip() == "released"
    holder.wait(timeout=30)
    assert _claims(run, node, 1) == 1, (run / "events.jsonl").read_text()
    assert wait_until(lambda: status(home, run) == "COMPLETED", 90, step=0.2), \
        home.runner_log_text()
    assert _claims(run, node, 1) == 1
    assert "is locked by pid" in home.runner_log_text() and \
        "on otherhost" in home.runner_log_text()


def test_a_dead_holder_on_another_host_loses_its_soft_lock_after_the_lease(home: Home):
    """No pid to look at, no heartbeat: the lock is taken once its lease has gone unrenewed."""
    run = dispatch(home, CHAIN, "chain.py")
    node = _first_task(run)
    env = {**_soft(home), "COV_LOCK_LEASE": "2"}
    holder = subprocess.Popen(_elsewhere(sys.executable, "-c", HOLDER, str(home.path), str(run),
                                         str(node), "600", "no-heartbeat"),
                              stdout=subprocess.PIPE, text=True, env=env)
    home.procs.append(holder)
    assert holder.stdout.readline().strip() == "locked"
    os.kill(holder.pid, signal.SIGKILL)  # exec'd: the pid is the holder's own
    holder.wait(timeout=10)
    with open(home.runner_log, "ab") as log:
        runner = subprocess.Popen([sys.executable, "-m", "runner", "--home", str(home.path),
                                   "--idle-timeout", "30"], stdout=log, stderr=log, env=env,
                                  cwd="/")
    home.procs.append(runner)
    assert wait_until(lambda: status(home, run) == "COMPLETED", 60, step=0.2), \
        home.runner_log_text()
    assert _claims(run, node, 1) == 1
