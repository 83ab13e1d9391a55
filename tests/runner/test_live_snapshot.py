"""A runner snapshots a large run while it still runs (runner/live_snapshot.py): readers begin
from it and fold only what came after, and a runner that takes the run over from it snapshots
the run again when it ends."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Dict

import covalent_cli as ct
from runner import derived, live_snapshot
from runner.layout import SNAPSHOT
from runner.manifest import Manifest
from runner.query import task_rows
from runner.rundir import RunDir
from runner.state import fold

TASKS = 1500  # enough events for live_snapshot.MIN_BYTES (~340 bytes a task)


@ct.electron
def inc(x):
    return x + 1


@ct.electron
def gate(values, path):
    """Holds the run open until ``path`` exists."""
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.05)
    return sum(values)


@ct.lattice
def held(n, path):
    return gate([inc(i) for i in range(n)], path)


def _wait_for(what: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _parsed_state(run: RunDir) -> Any:
    events = [json.loads(line) for line in run.events_path.read_bytes().splitlines()]
    return fold(events)


def _status(run_cov: Any, dispatch_id: str) -> Dict[str, Any]:
    done = run_cov("status", dispatch_id, "--json", "--all")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def _covers_the_whole_log(run: RunDir) -> bool:
    snap = derived.load(RunDir(run.path).open_file, SNAPSHOT)
    return snap is not None and snap.events_id[0] == run.events_path.stat().st_size


def _live_run(cov_home: Path, tmp_path: Path) -> "tuple[RunDir, Path]":
    """A run all of whose tasks but the last ended, once its runner snapshotted it so (the
    run is quiet: the runner waits for the last task)."""
    gate_file = tmp_path / "open"
    dispatch_id = ct.dispatch(held)(TASKS, str(gate_file))
    run = RunDir(cov_home / dispatch_id)

    def waiting_at_the_gate() -> bool:  # then no event comes until the gate opens
        reader = RunDir(run.path)
        state = reader.state()
        last = state.tasks.get(next(n.id for n in reader.manifest.nodes if n.name == "gate"))
        return last is not None and str(last.status) == "RUNNING" and \
            _covers_the_whole_log(run)

    _wait_for(waiting_at_the_gate)
    assert run.events_path.stat().st_size >= live_snapshot.MIN_BYTES
    return run, gate_file


def test_a_quiet_live_run_is_snapshotted_and_read_from_it(cov_home, tmp_path, run_cov):
    run, gate_file = _live_run(cov_home, tmp_path)
    reader = RunDir(run.path)
    state = reader.state()
    assert reader.began_from_snapshot and not state.finished
    assert state == _parsed_state(run)
    assert reader.manifest == Manifest.from_yaml(run.manifest_path.read_text())
    copy = tmp_path / "copied" / run.dispatch_id  # read here, never served (no runner)
    shutil.copytree(run.path, copy)
    (copy / SNAPSHOT).unlink()
    printed = _status(run_cov, run.dispatch_id)
    plain = RunDir(copy)
    assert printed["status"] == "RUNNING" and not plain.state().finished
    expected = json.loads(json.dumps(task_rows(plain, include_parameters=True,
                                               include_reshaping=True)))
    assert printed["tasks"] == expected
    assert not plain.began_from_snapshot
    gate_file.touch()
    assert str(ct.get_result(run.dispatch_id, wait=True).status) == "COMPLETED"
    _wait_for(lambda: _covers_the_whole_log(run))
    reader = RunDir(run.path)
    assert reader.state() == _parsed_state(run) and reader.state().finished


def test_a_runner_that_takes_over_from_a_live_snapshot_snapshots_the_end(cov_home, tmp_path,
                                                                         run_cov):
    run, gate_file = _live_run(cov_home, tmp_path)
    stopped = run_cov("runner", "stop")
    assert stopped.returncode == 0, stopped.stderr
    live = derived.load(RunDir(run.path).open_file, SNAPSHOT)
    assert live is not None
    gate_file.touch()
    assert str(ct.get_result(run.dispatch_id, wait=True).status) == "COMPLETED"
    _wait_for(lambda: _covers_the_whole_log(run))  # begun from the live one, hashed on
    reader = RunDir(run.path)
    assert reader.state() == _parsed_state(run) and reader.began_from_snapshot
    assert reader.state().finished
