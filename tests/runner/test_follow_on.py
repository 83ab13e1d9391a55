"""Follow-ons (runner/follow_on.py): a task queued in its parent's pool worker before the parent
ends. What a user and a reader of the event log see must be what they saw without them."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List

import covalent_cli as ct
from runner.rundir import RunDir


def _events(cov_home: Path, dispatch_id: str) -> List[Dict]:
    return [json.loads(line) for line in (cov_home / dispatch_id / "events.jsonl").read_text()
            .splitlines()]


def _ran(log: Path) -> List[str]:
    return log.read_text().split() if log.exists() else []


def test_a_chain_runs_each_task_once_and_its_log_reads_in_order(cov_home, tmp_path):
    log = tmp_path / "side.log"

    @ct.electron
    def step(x, path):
        with open(path, "a") as f:
            f.write(f"{x}\n")
        return x + 1

    @ct.lattice
    def chain(path):
        x = 0
        for _ in range(30):
            x = step(x, path)
        return x

    dispatch_id = ct.dispatch(chain)(str(log))
    assert ct.get_result(dispatch_id, wait=True).result == 30
    assert _ran(log) == [str(i) for i in range(30)]  # once each, in order
    events = _events(cov_home, dispatch_id)
    position: Dict[tuple, int] = {}
    for i, event in enumerate(events):
        if event["ev"] in ("claim", "start", "end"):
            position.setdefault((event["ev"], event["node"]), i)
    manifest = RunDir(cov_home / dispatch_id).manifest
    steps = [n.id for n in manifest.nodes if n.name == "step"]
    assert len(steps) == 30
    for node in steps:
        assert position[("claim", node)] < position[("end", node)]
        if ("start", node) in position:
            assert position[("claim", node)] < position[("start", node)]
        for edge in manifest.node(node).parents:  # a task is claimed after its parent ended
            if manifest.node(edge.node).name == "step":
                assert position[("end", edge.node)] < position[("claim", node)]
    # Tasks queued behind their parent: their claim, written after that parent's end (above),
    # carries the moment they were queued, before that end (a usual claim's comes after it);
    # no task started before the moment of its claim.
    claimed_at = {e["node"]: e["t"] for e in events if e["ev"] == "claim"}
    ended_at = {e["node"]: e["t"] for e in events if e["ev"] == "end"}
    started_at = {e["node"]: e["start"] for e in events if e["ev"] == "end"}
    parent_of = {node: next(edge.node for edge in manifest.node(node).parents
                            if manifest.node(edge.node).name == "step")
                 for node in steps[1:]}
    ahead = [node for node, parent in parent_of.items() if claimed_at[node] < ended_at[parent]]
    assert ahead, "no task ran queued behind its parent"
    for node in parent_of:
        assert started_at[node] >= claimed_at[node]


def test_what_follows_a_failed_task_never_runs_and_is_never_claimed(cov_home, tmp_path):
    log = tmp_path / "side.log"

    @ct.electron
    def step(x, path):
        with open(path, "a") as f:
            f.write(f"{x}\n")
        if x == 3:
            raise ValueError("three")
        return x + 1

    @ct.lattice
    def chain(path):
        x = 0
        for _ in range(10):
            x = step(x, path)
        return x

    dispatch_id = ct.dispatch(chain)(str(log))
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.FAILED
    assert _ran(log) == ["0", "1", "2", "3"]
    touched = {e["node"] for e in _events(cov_home, dispatch_id) if "node" in e}
    manifest = RunDir(cov_home / dispatch_id).manifest
    steps = [n.id for n in manifest.nodes if n.name == "step"]
    assert touched & set(steps) == set(steps[:4])  # nothing after the failure in the log


def test_a_retried_parent_is_followed_once_it_succeeds(cov_home, tmp_path):
    log = tmp_path / "side.log"
    flag = tmp_path / "failed-once"

    @ct.electron(executor=ct.executor.LocalExecutor(retries=1))
    def flaky(x, path, flag):
        with open(path, "a") as f:
            f.write(f"flaky{x}\n")
        if not Path(flag).exists():
            Path(flag).touch()
            raise RuntimeError("first attempt")
        return x + 1

    @ct.electron
    def after(x, path):
        with open(path, "a") as f:
            f.write(f"after{x}\n")
        return x * 10

    @ct.lattice
    def wf(path, flag):
        return after(after(flaky(1, path, flag), path), path)

    dispatch_id = ct.dispatch(wf)(str(log), str(flag))
    assert ct.get_result(dispatch_id, wait=True).result == 200
    assert _ran(log) == ["flaky1", "flaky1", "after2", "after20"]
    attempts = {e["node"]: e["attempt"] for e in _events(cov_home, dispatch_id)
                if e["ev"] == "end" and e["status"] == "COMPLETED"}
    names = {n.id: n.name for n in RunDir(cov_home / dispatch_id).manifest.nodes}
    assert sorted(a for n, a in attempts.items() if names[n] == "after") == [1, 1]


def test_cancel_while_a_chain_is_queued_ends_the_run_and_runs_nothing_more(cov_home, tmp_path):
    log = tmp_path / "side.log"
    gate = tmp_path / "started"

    @ct.electron
    def step(x, path, gate):
        with open(path, "a") as f:
            f.write(f"{x}\n")
        if x == 1:
            Path(gate).touch()
            time.sleep(60)
        return x + 1

    @ct.lattice
    def chain(path, gate):
        x = 0
        for _ in range(6):
            x = step(x, path, gate)
        return x

    dispatch_id = ct.dispatch(chain)(str(log), str(gate))
    deadline = time.time() + 60
    while not gate.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert gate.exists()
    ct.cancel(dispatch_id)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.CANCELLED
    assert _ran(log) == ["0", "1"]
    manifest = RunDir(cov_home / dispatch_id).manifest
    steps = [n.id for n in manifest.nodes if n.name == "step"]
    statuses = [result.get_node_result(n)["status"] for n in steps]
    assert statuses[0] == ct.status.COMPLETED
    assert all(s == ct.status.CANCELLED for s in statuses[1:])  # as without follow-ons


def test_a_follow_on_that_ran_under_a_killed_runner_is_recorded_not_run_again(cov_home, tmp_path):
    """The runner is stopped while the parent runs; its worker finishes the parent and runs the
    follow-on (never claimed); the runner is killed: the next one records both outcomes."""
    import os
    import signal

    from runner.daemon import ensure_running
    from runner.liveness import read_runners

    log = tmp_path / "side.log"
    started, go = tmp_path / "started", tmp_path / "go"

    @ct.electron
    def parent(path, started, go):
        Path(started).touch()
        deadline = time.time() + 60
        while not Path(go).exists() and time.time() < deadline:
            time.sleep(0.01)
        with open(path, "a") as f:
            f.write("parent\n")
        return 1

    @ct.electron
    def child(x, path):
        with open(path, "a") as f:
            f.write("child\n")
        return x + 1

    @ct.lattice
    def wf(path, started, go):
        return child(parent(path, started, go), path)

    dispatch_id = ct.dispatch(wf)(str(log), str(started), str(go))
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.02)
    assert started.exists()
    [runner] = [r for r in read_runners(cov_home) if r["alive"]]
    pid = int(runner["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        go.touch()
        deadline = time.time() + 60
        while _ran(log) != ["parent", "child"] and time.time() < deadline:
            time.sleep(0.02)
        assert _ran(log) == ["parent", "child"]  # the follow-on ran behind the stopped runner
        time.sleep(0.5)  # its outcome is written right after
    finally:
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
    deadline = time.time() + 30
    while any(r["alive"] for r in read_runners(cov_home)) and time.time() < deadline:
        time.sleep(0.05)
    ensure_running(cov_home)
    assert ct.get_result(dispatch_id, wait=True).result == 2
    assert _ran(log) == ["parent", "child"]  # neither ran again
    names = {n.id: n.name for n in RunDir(cov_home / dispatch_id).manifest.nodes}
    ends = [e for e in _events(cov_home, dispatch_id) if e["ev"] == "end"
            and names[e["node"]] in ("parent", "child")]
    assert sorted((names[e["node"]], e["attempt"], e["status"]) for e in ends) == [
        ("child", 1, "COMPLETED"), ("parent", 1, "COMPLETED")]


def test_dense_layers_give_their_result(cov_home):
    """Each layer task reads every task of the layer before (through a list node, which follows
    the last of them, its other inputs packed results that ended in the same step)."""

    @ct.electron
    def start(j):
        return j + 1

    @ct.electron
    def layer(xs, j):
        return sum(xs) % 1000003 + j

    @ct.electron
    def total(xs):
        return sum(xs)

    @ct.lattice
    def dense():
        prev = [start(j) for j in range(10)]
        for _ in range(50):
            prev = [layer(prev, j) for j in range(10)]
        return total(prev)

    expected = [j + 1 for j in range(10)]
    for _ in range(50):
        expected = [sum(expected) % 1000003 + j for j in range(10)]
    for _ in range(2):
        assert ct.dispatch_sync(dense)().result == sum(expected)
