"""A runner stopped (SIGSTOP) past the stale limit, taken over by another, then resumed.

Its pool workers keep running while it is stopped, holding the tasks it prefetched. Once the
other runner has taken its claims over, they must start none of them and write no outcome for
them; the resumed runner must notice it lost its claims and drop them. Counted by side-effect
lines each task writes when it starts (``<node> <attempt> <pid> <time>``).
"""
from __future__ import annotations

import json
import os
import signal
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.fault.harness import Home, wait_until

STALE = 1.0  # COV_STALE_AFTER_S: a runner on this host is dead after 4 s without a heartbeat
TASKS = 24

WORKFLOW = textwrap.dedent('''
    import os
    import time

    import covalent as ct


    @ct.electron
    def step(i, log, delay):
        ctx = ct.get_context()
        line = f"{ctx.node_id} {ctx.attempt} {os.getpid()} {time.time()}\\n"
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        time.sleep(delay)
        return i


    @ct.electron
    def total(values):
        return sum(values)


    @ct.lattice
    def fan(log, n=%(n)d, delay=1.5):
        return total([step(i, log, delay) for i in range(n)])
''') % {"n": TASKS}


def _lines(log: Path):
    return [(int(n), int(a), int(p), float(t))
            for n, a, p, t in (line.split() for line in log.read_text().splitlines())]


def _events(run_dir: Path):
    out = []
    for line in (run_dir / "events.jsonl").read_bytes().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


@pytest.fixture
def stale_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COV_STALE_AFTER_S", str(STALE))
    home = Home(tmp_path)
    yield home
    home.stop_all()


def test_a_stopped_runner_taken_over_runs_none_of_its_prefetched_tasks(stale_home, tmp_path):
    home = stale_home
    script = tmp_path / "fan.py"
    script.write_text(WORKFLOW)
    log = tmp_path / "side-effects.log"
    proc = home.cov("dispatch", "-q", str(script), "-a", f"log={log}")
    assert proc.returncode == 0, proc.stderr
    run_dir = home.path / proc.stdout.strip()
    first = home.start_runner("--workers", "2", idle_timeout=60)
    assert wait_until(lambda: log.exists() and len(_lines(log)) >= 2, 60)
    os.kill(first.pid, signal.SIGSTOP)  # its two workers run on, sixteen tasks in hand
    try:
        second = home.start_runner("--workers", "2", idle_timeout=60)

        def taken_over():
            return any(e.get("ev") == "claim" and e.get("attempt", 1) > 1
                       for e in _events(run_dir))

        assert wait_until(taken_over, 60, step=0.05), home.runner_log_text()
        # the first runner's workers would now start their prefetched tasks, one by one
        wait_until(lambda: False, 3)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    wait = home.cov("wait", run_dir.name, "--timeout", "120", "-q", timeout=150)
    assert wait.returncode == 0, home.cov("status", run_dir.name).stdout
    assert json.loads(home.cov("result", run_dir.name, "--json").stdout)["result"] == \
        sum(range(TASKS))
    lines = _lines(log)
    twice = [k for k, c in Counter((n, a) for n, a, _, _ in lines).items() if c > 1]
    assert not twice, f"(node, attempt) run twice: {twice}"
    superseded = {}  # (node, attempt) -> when a later attempt of the node was claimed
    claims = [e for e in _events(run_dir) if e.get("ev") == "claim"]
    for e in claims:
        for earlier in claims:
            if earlier["node"] == e["node"] and earlier["attempt"] < e["attempt"]:
                key = (earlier["node"], earlier["attempt"])
                superseded[key] = min(superseded.get(key, e["t"]), e["t"])
    late = [(n, a) for n, a, _, t in lines if (n, a) in superseded and t > superseded[(n, a)]]
    assert not late, (f"{len(late)} tasks started after another runner took their claim over: "
                      f"{late}")
    assert len(superseded) >= 4, "the test did not cause a takeover of queued tasks"
    # every result on disk is the recorded attempt's (no late write replaced one)
    from runner.rundir import RunDir
    from runner.outcome import read_outcome_header

    state = RunDir(run_dir).state()
    for node, task in state.tasks.items():
        header = read_outcome_header(str(run_dir / "results" / f"{node}.pkl"))
        if header is not None and "attempt" in header:
            assert header["attempt"] == task.attempt, (node, header, task)
    # the resumed runner noticed, dropped its lost claims and went on (it did not crash)
    assert wait_until(lambda: "taken for dead" in home.runner_log_text(), 30), \
        home.runner_log_text()
    assert first.poll() is None or first.returncode == 0, home.runner_log_text()
    assert second.poll() is None or second.returncode == 0
