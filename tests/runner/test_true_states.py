"""A task is RUNNING only once it started on its worker: claimed before that, it is QUEUED.

Before: the claim made a task RUNNING with the claim's time as its start, so 6 tasks showed
RUNNING on 2 workers, the 4 waiting ones with the dispatch time as start.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import covalent_cli as ct
from covalent_cli.result import covalent_status
from runner.query import NOT_RUN, PENDING, not_run_causes, task_rows, unique_prefix
from runner.rundir import RunDir
from runner.state import QUEUED, RUNNING, EventError, check_event, fold


@ct.electron
def nap(i):
    time.sleep(2.5)
    return i


@ct.lattice
def naps(n=6):
    return [nap(i) for i in range(n)]


def _two_workers() -> None:
    config = Path(os.environ["COV_CONFIG"])
    config.write_text(config.read_text() + "  workers: 2\n")


def _tasks(run: RunDir):
    state = RunDir(run.path).state()
    return {n: t for n, t in state.tasks.items() if run.manifest.node(n).name == "nap"}


def test_six_tasks_on_two_workers_two_running_four_queued(cov_home):
    _two_workers()
    dispatched = time.time()
    dispatch_id = ct.dispatch(naps)(6)
    run = RunDir(cov_home / dispatch_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tasks = _tasks(run)
        if sum(t.status == RUNNING for t in tasks.values()) == 2:
            break
        time.sleep(0.05)
    tasks = _tasks(run)
    statuses = sorted(str(t.status) for t in tasks.values())
    assert statuses == ["QUEUED"] * 4 + ["RUNNING"] * 2, statuses
    for task in tasks.values():
        assert task.claimed is not None and task.claimed >= dispatched
        if task.status == RUNNING:
            assert task.started is not None and task.started >= task.claimed and task.pid
        else:
            assert task.started is None
    # the SDK keeps Covalent's names: a queued task is RUNNING there, since its submission
    queued = next(n for n, t in tasks.items() if t.status == QUEUED)
    node = ct.get_result(dispatch_id).get_node_result(queued)
    assert node["status"] == ct.status.RUNNING and node["start_time"] is not None
    rows = {r["id"]: r for r in task_rows(run)}
    assert rows[queued]["status"] == rows[queued]["shown"] == "QUEUED"

    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED and result.result == list(range(6))
    final = _tasks(run)
    starts = sorted(t.started for t in final.values())
    # two at a time: the third task starts only once a first one ended
    assert starts[2] - starts[0] >= 2.0, starts
    assert all(t.started >= t.claimed for t in final.values())
    events = [json.loads(line) for line in run.events_path.read_text().splitlines()]
    started = [e["node"] for e in events if e["ev"] == "start"]
    assert len(started) == len(set(started)) and set(final) <= set(started)  # one per task


def test_claim_is_queued_until_start_and_reports_of_other_attempts_are_ignored():
    state = fold([
        {"ev": "claim", "node": 0, "attempt": 1, "t": 10.0, "host": "h"},
        {"ev": "pending", "node": 0, "attempt": 1, "reason": "Resources", "t": 10.5}])
    task = state.tasks[0]
    assert task.status == QUEUED and task.started is None and task.claimed == 10.0
    assert task.reason == "Resources"
    fold([{"ev": "start", "node": 0, "attempt": 2, "start": 11.0, "t": 11.0}], state)
    assert task.status == QUEUED  # another attempt's start
    fold([{"ev": "start", "node": 0, "attempt": 1, "start": 12.0, "pid": 42, "t": 13.0}], state)
    assert (task.status, task.started, task.pid, task.reason) == (RUNNING, 12.0, 42, None)
    fold([{"ev": "end", "node": 0, "attempt": 1, "status": "COMPLETED", "start": 12.0,
           "end": 14.0},
          {"ev": "start", "node": 0, "attempt": 1, "start": 20.0, "t": 20.0}], state)
    assert task.status == "COMPLETED" and task.started == 12.0  # a late start changes nothing
    # a retry is QUEUED again, without the old attempt's start
    fold([{"ev": "claim", "node": 1, "attempt": 1, "t": 1.0},
          {"ev": "start", "node": 1, "attempt": 1, "start": 2.0, "t": 2.0},
          {"ev": "claim", "node": 1, "attempt": 2, "t": 3.0}], state)
    assert state.tasks[1].status == QUEUED and state.tasks[1].started is None


def test_new_events_are_checked_and_queued_never_comes_from_an_event():
    check_event({"ev": "start", "node": 1, "attempt": 1, "start": 1.0, "pid": 3, "t": 1.0})
    check_event({"ev": "pending", "node": 1, "attempt": 1, "reason": "Priority", "t": 1.0})
    for bad in ({"ev": "start", "node": 1, "attempt": 1, "pid": "3"},
                {"ev": "start", "node": 1, "start": "noon"},
                {"ev": "pending", "node": 1, "reason": 5},
                {"ev": "end", "node": 1, "status": "QUEUED"}):
        with pytest.raises(EventError):
            check_event(bad)
    assert covalent_status(QUEUED) == "RUNNING" and covalent_status("FAILED") == "FAILED"


def test_not_run_names_the_first_failure_upstream(tmp_path):
    from runner.manifest import Edge, Manifest, NodeSpec

    nodes = [NodeSpec(0, "a", "electron", "local", blob=(0, 1)),
             NodeSpec(1, "b", "electron", "local", [Edge(0, "x")], blob=(0, 1)),
             NodeSpec(2, "c", "electron", "local", [Edge(1, "x")], blob=(0, 1)),
             NodeSpec(3, "d", "electron", "local", waits=[0], blob=(0, 1)),
             NodeSpec(4, "e", "electron", "local", blob=(0, 1))]
    manifest = Manifest(dispatch_id="d", root_dispatch_id="d", lattice_name="w", nodes=nodes,
                        output_node=4, executors={})
    state = fold([{"ev": "end", "node": 0, "status": "FAILED"}])
    assert not_run_causes(manifest, state) == {1: 0, 2: 0, 3: 0}
    assert not_run_causes(manifest, fold([])) == {}


def test_short_ids_are_unique_prefixes_of_at_least_eight():
    names = ["5b0c2e7a-1", "5b0c2e7a-2", "5b0c2e7f-9", "0000"]
    assert unique_prefix("5b0c2e7f-9", names) == "5b0c2e7f"
    assert unique_prefix("5b0c2e7a-1", names) == "5b0c2e7a-1"
    assert unique_prefix("0000", names) == "0000"
    assert (PENDING, NOT_RUN) == ("PENDING", "NOT_RUN")
