"""End to end on the local backend: real dispatch, a real background runner, real files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import covalent_cli as ct
from covalent_cli.errors import DispatchError
from runner.rundir import RunDir


@ct.electron
def inc(x):
    return x + 1


@ct.electron
def total(xs):
    return sum(xs)


@ct.electron
def noisy(x):
    print(f"out {x}")
    print(f"err {x}", file=sys.stderr)
    os.system(f"echo from-a-child-process {x}")
    return x


@ct.electron
def boom(x):
    raise ValueError(f"bad value {x}")


@ct.lattice
def fan(n):
    return total([inc(i) for i in range(n)])


def test_deprecated_lattice_methods_dispatch(cov_home):
    """``lattice.dispatch(...)``/``lattice.dispatch_sync(...)`` (deprecated in Covalent) still
    work: they are bound by covalent_cli.dispatch, as lattice.py must not import it."""
    assert fan.dispatch_sync(3).result == 6
    dispatch_id = fan.dispatch(2)
    assert ct.get_result(dispatch_id, wait=True).result == 3


def test_fan_out_completes_with_result_and_node_outputs(cov_home):
    result = ct.dispatch_sync(fan)(20)
    assert result.status == ct.status.COMPLETED
    assert result.result == sum(range(1, 21))
    assert result.get_node_result(0)["output"].get_deserialized() == 1
    assert result.inputs.get_deserialized() == {"args": (20,), "kwargs": {}}  # a tuple, as Covalent
    outputs = result.get_all_node_outputs()
    assert outputs["inc(0)"].get_deserialized() == 1
    assert outputs[":parameter:0(1)"].get_deserialized() == 0
    assert result.start_time <= result.end_time
    assert result.root_dispatch_id == result.dispatch_id
    with pytest.raises(KeyError):
        result.get_node_result(10_000)


def test_dispatch_returns_at_once_and_status_only(cov_home):
    dispatch_id = ct.dispatch(fan)(5)
    status = ct.get_result(dispatch_id, status_only=True)
    assert status["id"] == dispatch_id and status["status"] in {"STARTING", "RUNNING", "COMPLETED"}
    assert ct.get_result(dispatch_id, wait=True).result == 15


def test_stdout_and_stderr_are_captured_per_task(cov_home):
    @ct.lattice
    def wf():
        return noisy(7)

    result = ct.dispatch_sync(wf)()
    node = result.get_node_result(0)
    assert node["stdout"] == "out 7\nfrom-a-child-process 7\n"
    assert node["stderr"] == "err 7\n"


def test_failure_names_the_node_keeps_traceback_and_independent_branches_finish(cov_home):
    @ct.lattice
    def wf():
        good = inc(1)
        bad = boom(2)
        return total([good, bad])

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED
    assert result.result is None
    assert result.error == "The following tasks failed:\n2: boom"
    failed = result.get_node_result(2)
    assert failed["status"] == ct.status.FAILED
    assert failed["error"] is None  # Covalent: the task's own exception is in stderr
    assert "ValueError: bad value 2" in failed["stderr"]
    assert "test_local_runs.py" in failed["stderr"]  # the user's file, not <dynamic-code>
    assert result.get_node_result(0)["status"] == ct.status.COMPLETED
    assert result.get_node_result(4)["status"] == ct.status.NEW_OBJECT  # never ran


def test_deps_and_hooks_run_in_covalent_order(cov_home, tmp_path):
    log = tmp_path / "order.log"

    def before(tag):
        with open(log, "a") as f:
            f.write(f"before-{tag}\n")
        return tag

    def after():
        with open(log, "a") as f:
            f.write("after\n")

    @ct.electron(deps_bash=[f"echo bash >> {log}"],
                 call_before=[ct.DepsCall(before, args=["one"], retval_keyword="tags"),
                              ct.DepsCall(before, args=["two"], retval_keyword="tags")],
                 call_after=[ct.DepsCall(after)])
    def task(x, tags=None):
        with open(log, "a") as f:
            f.write("task\n")
        return [x, tags]

    @ct.lattice
    def wf():
        return task(1)

    result = ct.dispatch_sync(wf)()
    assert result.result == [1, ["one", "two"]]
    assert log.read_text().split() == ["bash", "before-one", "before-two", "task", "after"]


def test_failing_bash_dep_fails_the_task(cov_home):
    @ct.electron(deps_bash="exit 4")
    def never(x):
        return x

    @ct.lattice
    def wf():
        return never(1)

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED
    node = result.get_node_result(0)
    assert "exit code 4" in node["error"]


def test_tasks_run_in_the_dispatch_cwd(cov_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    @ct.electron
    def where():
        return os.getcwd()

    @ct.lattice
    def wf():
        return where()

    assert ct.dispatch_sync(wf)().result == str(tmp_path)


def test_sublattice_result_dependent_loop_nests_child_runs(cov_home):
    @ct.electron
    @ct.lattice
    def countdown(n):
        if n <= 0:
            return inc(n)
        return countdown(n - 1)

    @ct.lattice
    def wf(n):
        return countdown(n)

    result = ct.dispatch_sync(wf)(3)
    assert result.status == ct.status.COMPLETED and result.result == 1
    node = result.get_node_result(0)
    child = node["sublattice_result"]
    assert child.root_dispatch_id == result.dispatch_id
    assert child.dispatch_id != result.dispatch_id
    assert child.get_node_result(0)["sublattice_result"] is not None  # nested again


def test_unpicklable_argument_fails_at_dispatch_naming_the_task(cov_home):
    import threading

    @ct.electron
    def takes(lock):
        return 1

    @ct.lattice
    def wf():
        return takes(threading.Lock())

    with pytest.raises(DispatchError) as info:
        ct.dispatch(wf)()
    assert "takes" in str(info.value) and "lock" in str(info.value).lower()
    assert not cov_home.exists() or not [p for p in cov_home.iterdir() if not p.name.startswith(".")]


def test_cancel_stops_running_task_and_marks_pending_cancelled(cov_home, tmp_path):
    marker = tmp_path / "started"

    @ct.electron
    def slow(path):
        open(path, "w").close()
        time.sleep(60)
        return 1

    @ct.lattice
    def wf(path):
        return inc(slow(path))

    dispatch_id = ct.dispatch(wf)(str(marker))
    deadline = time.time() + 20
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    message = ct.cancel(dispatch_id)
    assert dispatch_id in message
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.CANCELLED
    assert result.get_node_result(0)["status"] == ct.status.CANCELLED
    statuses = {result.get_node_result(i)["status"] for i in range(len(result.get_all_node_outputs()))}
    assert "RUNNING" not in statuses


def test_redispatch_reuses_unchanged_results(cov_home):
    first = ct.dispatch_sync(fan)(4)
    new_id = ct.redispatch(first.dispatch_id, reuse_previous_results=True)()
    second = ct.get_result(new_id, wait=True)
    assert second.result == first.result
    events = [json.loads(l) for l in (RunDir(cov_home / new_id).events_path).read_text().splitlines()]
    reused = {e["node"] for e in events if e.get("reused")}
    assert {0, 2, 4, 6} <= reused
    third = ct.get_result(ct.redispatch(first.dispatch_id)(6), wait=True)
    assert third.result == sum(range(1, 7))


def test_redispatch_replaces_electrons_by_name(cov_home):
    first = ct.dispatch_sync(fan)(3)

    @ct.electron
    def inc(x):  # noqa: F811 - the replacement
        return x + 100

    new_id = ct.redispatch(first.dispatch_id, replace_electrons={"inc": inc})()
    assert ct.get_result(new_id, wait=True).result == 303


def test_killed_runner_is_replaced_and_finished_results_are_not_recomputed(cov_home, tmp_path):
    log = tmp_path / "side.log"

    @ct.electron
    def step(i, path):
        with open(path, "a") as f:
            f.write(f"{i}\n")
        time.sleep(0.05)
        return i

    @ct.lattice
    def wf(path):
        return total([step(i, path) for i in range(40)])

    dispatch_id = ct.dispatch(wf)(str(log))
    deadline = time.time() + 20
    while (not log.exists() or len(log.read_text().split()) < 5) and time.time() < deadline:
        time.sleep(0.02)
    from runner.liveness import read_runners

    for info in read_runners(cov_home):
        os.kill(int(info["pid"]), signal.SIGKILL)
    run = RunDir(cov_home / dispatch_id)
    finished_before = {n for n, t in run.state().tasks.items() if t.status == "COMPLETED"}
    from runner.daemon import ensure_running

    time.sleep(0.2)
    ensure_running(cov_home)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.result == sum(range(40))
    lines = log.read_text().split()
    counts = {i: lines.count(str(i)) for i in set(lines)}
    for node in finished_before:
        name = result.get_node_result(node)["node_name"]
        if name == "step":
            value = result.get_node_result(node)["output"].get_deserialized()
            assert counts[str(value)] == 1, f"finished task {node} ran again"


def test_two_runners_on_one_home_never_run_a_task_twice(cov_home, tmp_path):
    log = tmp_path / "side.log"

    @ct.electron
    def step(i, path):
        with open(path, "a") as f:
            f.write(f"{i}\n")
        return i

    @ct.lattice
    def wf(path):
        return total([step(i, path) for i in range(200)])

    env = {**os.environ, "COV_NO_RUNNER": "1"}
    os.environ["COV_NO_RUNNER"] = "1"
    try:
        dispatch_id = ct.dispatch(wf)(str(log))
    finally:
        del os.environ["COV_NO_RUNNER"]
    procs = [subprocess.Popen([sys.executable, "-m", "runner", "--home", str(cov_home),
                               "--idle-timeout", "1", *extra], env=env)
             for extra in ([], ["--poll"])]
    try:
        result = ct.get_result(dispatch_id, wait=True, timeout=60)
        assert result.result == sum(range(200))
    finally:
        for p in procs:
            p.wait(timeout=30)
    lines = log.read_text().split()
    assert len(lines) == 200 and len(set(lines)) == 200
