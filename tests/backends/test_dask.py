"""The Dask backend against a real ``distributed.LocalCluster`` on 127.0.0.1 (worker
processes, not threads): tasks run in the cluster's worker processes with their results and
logs in the run directory, failures keep their traceback, cancel reaches the Dask task and
kills its process, a runner killed mid-task is followed by one that re-attaches (or runs the
attempt again when the scheduler lost it); without a scheduler address, ``dask`` is the local
pool and ``cov status`` says so."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Iterator, Set

import cloudpickle
import pytest

import covalent_cli as ct
import tests.live
from runner.daemon import ensure_running, stop_runners
from runner.liveness import read_runners
from runner.rundir import RunDir
from tests.infra.fixtures import _in_ci
from tests.processes import run_state, wait_for_pid, wait_pid_gone
from tests.live import Follower, check_live, talker

# The Dask workers import no test code: the tasks travel by value, as a user's script's do.
cloudpickle.register_pickle_by_value(tests.live)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def distributed() -> object:
    """The ``distributed`` package (the ``dask`` extra; CI installs it with ``test``)."""
    try:
        import distributed as found
    except ImportError:
        reason = "distributed is not installed (pip install -e '.[test]' brings it)"
        if _in_ci():
            pytest.fail(f"CI: required test component unavailable: {reason}", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def cluster(distributed) -> Iterator[object]:
    """A real Dask cluster on loopback: a scheduler and 2 worker processes of 2 threads."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as found:
        yield found


@pytest.fixture
def client(distributed, cluster) -> Iterator[object]:
    """A client of the test's own, to look at the cluster."""
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as found:
        yield found


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_pids(client) -> Set[int]:
    return set(client.run(os.getpid).values())


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])


def _in_a_dask_worker(found: dict, client) -> bool:
    """The task ran in a child of cov's zygote, a child of a Dask worker process."""
    return _parent_of(found["parent"]) in _worker_pids(client)


def _keys_on_scheduler(client) -> Set[str]:
    return set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)))


def _kill_runners(home: Path) -> None:
    for info in read_runners(home):
        os.kill(int(info["pid"]), signal.SIGKILL)
    time.sleep(0.2)


# -- tasks (pickled by value) ---------------------------------------------------------------------
def where(x: int) -> dict:
    """Which process runs the task and below which parent, plus a printed line."""
    import os as _os

    print(f"running with {x}", flush=True)
    return {"x": x, "pid": _os.getpid(), "parent": _os.getppid()}


def double(found: dict) -> int:
    return found["x"] * 2


def boom(x: int) -> int:
    raise ValueError(f"bad value {x}")


def sleeper(seconds: float, value: int) -> int:
    import time as _time

    _time.sleep(seconds)
    return value


# -- the tests ------------------------------------------------------------------------------------
def test_tasks_run_in_the_dask_workers_with_results_and_logs_in_the_run_dir(
        cov_home, cluster, client):
    dask = ct.executor.DaskExecutor(scheduler_address=cluster.scheduler_address)
    first = ct.electron(where, executor=dask)
    second = ct.electron(double, executor=dask)

    @ct.lattice
    def wf(x):
        return second(first(x))

    dispatch_id = ct.dispatch(wf)(21)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == 42
    found = result.get_node_result(0)["output"]
    found = getattr(found, "get_deserialized", lambda: found)()
    assert _in_a_dask_worker(found, client)  # not in the runner's pool
    run = cov_home / dispatch_id
    assert (run / "logs" / "0.out").read_text() == "running with 21\n"
    task = run_state(cov_home, dispatch_id).tasks[0]
    assert task.pid == found["pid"] and task.backend == "dask"
    manifest = RunDir(run).manifest
    assert manifest.executors[manifest.node(0).executor or ""]["type"] == "dask"
    deadline = time.time() + 20  # the runner lets go of the futures it collected
    while {k for k in _keys_on_scheduler(client) if dispatch_id in k} and time.time() < deadline:
        time.sleep(0.1)
    assert not {k for k in _keys_on_scheduler(client) if dispatch_id in k}


def test_a_failing_task_fails_the_run_with_its_traceback(cov_home, cluster, run_cov):
    task = ct.electron(boom, executor=ct.executor.DaskExecutor(
        scheduler_address=cluster.scheduler_address))

    @ct.lattice
    def wf():
        return task(0)

    dispatch_id = ct.dispatch(wf)()
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.FAILED
    err = (cov_home / dispatch_id / "logs" / "0.err").read_text()
    assert "Traceback (most recent call last)" in err and "ValueError: bad value 0" in err
    assert "in boom" in err
    status = run_cov("status", dispatch_id)
    assert "ValueError: bad value 0" in status.stdout, status.stdout


def test_cancel_cancels_the_dask_task_and_kills_its_process(cov_home, cluster, client):
    task = ct.electron(sleeper, executor=ct.executor.DaskExecutor(
        scheduler_address=cluster.scheduler_address))

    @ct.lattice
    def wf():
        return task(120, 1)

    dispatch_id = ct.dispatch(wf)()
    pid = wait_for_pid(cov_home, dispatch_id, 0)
    assert not wait_pid_gone(pid, timeout=0.2)
    assert f"cov-{dispatch_id}-0-1" in _keys_on_scheduler(client)
    ct.cancel(dispatch_id)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.CANCELLED
    assert wait_pid_gone(pid, timeout=20), f"the task's process {pid} is still alive after cancel"
    deadline = time.time() + 20
    while f"cov-{dispatch_id}-0-1" in _keys_on_scheduler(client) and time.time() < deadline:
        time.sleep(0.1)
    assert f"cov-{dispatch_id}-0-1" not in _keys_on_scheduler(client)


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_a_restarted_runner_reattaches_to_the_running_dask_task(cov_home, cluster, how):
    """Killed (SIGKILL: its client just vanishes) or stopped (SIGTERM: it closes its client):
    the published attempt goes on, and the next runner collects it."""
    task = ct.electron(sleeper, executor=ct.executor.DaskExecutor(
        scheduler_address=cluster.scheduler_address))

    @ct.lattice
    def wf():
        return task(5, 7)

    dispatch_id = ct.dispatch(wf)()
    pid = wait_for_pid(cov_home, dispatch_id, 0)
    if how == "killed":
        _kill_runners(cov_home)
    else:
        assert stop_runners(cov_home, timeout=20)
    assert not wait_pid_gone(pid, timeout=0.1)  # the runner went while its task runs
    ensure_running(cov_home)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == 7
    state = run_state(cov_home, dispatch_id).tasks[0]
    assert state.attempt == 1 and state.pid == pid  # collected, not started again


def test_an_attempt_the_scheduler_lost_runs_again_after_a_restart(cov_home, cluster, client):
    task = ct.electron(sleeper, executor=ct.executor.DaskExecutor(
        scheduler_address=cluster.scheduler_address))

    @ct.lattice
    def wf():
        return task(60, 8)

    dispatch_id = ct.dispatch(wf)()
    pid = wait_for_pid(cov_home, dispatch_id, 0)
    _kill_runners(cov_home)
    # what a scheduler restart does to the attempt: its published name and task are gone
    key = f"cov-{dispatch_id}-0-1"
    future = client.get_dataset(key)
    client.unpublish_dataset(key)
    client.cancel([future], force=True)
    del future
    os.killpg(pid, signal.SIGKILL)
    Path(cov_home / dispatch_id / "logs" / "0.out").unlink(missing_ok=True)
    ensure_running(cov_home)
    deadline = time.time() + 60
    while time.time() < deadline:
        task_state = run_state(cov_home, dispatch_id).tasks[0]
        if task_state.pid and task_state.pid != pid:
            break
        time.sleep(0.1)
    assert task_state.pid != pid, "the attempt was not started again"
    ct.cancel(dispatch_id)  # it would sleep a minute: started again is what counts
    assert ct.get_result(dispatch_id, wait=True).status == ct.status.CANCELLED


def test_named_dask_executors_from_the_config(cov_home, cluster, client):
    config = Path(os.environ["COV_CONFIG"])
    config.write_text(config.read_text() + "executors:\n"
                      f"  dask:\n    scheduler_address: {cluster.scheduler_address}\n"
                      f"  big:\n    type: dask\n    scheduler_address: "
                      f"{cluster.scheduler_address}\n")
    by_name = ct.electron(where, executor="dask")
    by_own_name = ct.electron(where, executor="big")

    @ct.lattice
    def wf():
        return [by_name(1), by_own_name(2)]

    result = ct.get_result(ct.dispatch(wf)(), wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert {r["x"] for r in result.result} == {1, 2}
    assert all(_in_a_dask_worker(r, client) for r in result.result)


def test_without_a_scheduler_address_dask_is_the_local_pool_and_status_says_so(
        cov_home, run_cov):
    by_name = ct.electron(where, executor="dask")
    by_object = ct.electron(where, executor=ct.executor.DaskExecutor())

    @ct.lattice
    def wf():
        return [by_name(1), by_object(2)]

    dispatch_id = ct.dispatch(wf)()
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    runners = {int(info["pid"]) for info in read_runners(cov_home)}
    assert {r["parent"] for r in result.result} <= runners  # pool workers of the runner
    assert {t.backend for t in run_state(cov_home, dispatch_id).tasks.values()
            if t.backend} == {"local"}
    status = run_cov("status", dispatch_id)
    assert status.returncode == 0, status.stderr
    assert "executor dask has no scheduler_address: its tasks run in the local pool" in \
        " ".join(status.stdout.split()), status.stdout
    detail = run_cov("status", dispatch_id, "0")
    assert "executor dask (local: no scheduler_address)" in detail.stdout, detail.stdout


def test_an_unreachable_scheduler_fails_the_task_saying_where(cov_home):
    port = _free_port()  # a loopback port nothing listens on
    task = ct.electron(where, executor=ct.executor.DaskExecutor(
        scheduler_address=f"tcp://127.0.0.1:{port}", connect_timeout=2))

    @ct.lattice
    def wf():
        return task(1)

    dispatch_id = ct.dispatch(wf)()
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.FAILED
    error = run_state(cov_home, dispatch_id).tasks[0].error
    assert f"cannot connect to the Dask scheduler at tcp://127.0.0.1:{port}" in error, error


def test_what_a_dask_task_prints_is_in_its_log_while_it_runs(cov_home, cluster):
    task = ct.electron(talker, executor=ct.executor.DaskExecutor(
        scheduler_address=cluster.scheduler_address))

    @ct.lattice
    def wf():
        return task(4.0)

    dispatch_id = ct.dispatch(wf)()
    check_live(Follower(dispatch_id, "0"), "0", 4.0, limit=2.0)
    assert ct.get_result(dispatch_id, wait=True).result == "done"
    out = (cov_home / dispatch_id / "logs" / "0.out").read_text().splitlines()
    assert [line.split()[0] for line in out] == ["first", "second"]  # whole, once


def test_dispatch_to_a_dask_cluster_without_distributed_is_a_one_line_error(run_cov, tmp_path):
    """Where the extra is not installed (blocked here: this venv has it), the dispatch says
    what to install instead of a task failing later."""
    script = tmp_path / "wf.py"
    script.write_text(
        "import sys\nsys.modules['distributed'] = None  # as if not installed\n"
        "import covalent as ct\n\n"
        "@ct.electron(executor=ct.executor.DaskExecutor(scheduler_address='tcp://127.0.0.1:1'))\n"
        "def task(x):\n    return x\n\n"
        "@ct.lattice\ndef wf(x=1):\n    return task(x)\n")
    proc = run_cov("dispatch", str(script))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: executor 'dask' runs tasks on a Dask cluster, and "
                           "distributed is not installed"), proc.stderr
    assert "pip install 'cov[dask]'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_python_of_its_own_starts_the_worker_directly(cov_home, cluster, client):
    """``python_path``: no zygote, a ``python worker.py`` child of the Dask worker."""
    task = ct.electron(where, executor=ct.executor.DaskExecutor(
        scheduler_address=cluster.scheduler_address, python_path=sys.executable))

    @ct.lattice
    def wf():
        return task(5)

    result = ct.get_result(ct.dispatch(wf)(), wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result["x"] == 5 and result.result["parent"] in _worker_pids(client)


def test_a_task_whose_dask_worker_dies_runs_again_on_the_cluster(cov_home, cluster, client):
    """The Dask worker process running the task is killed: its zygote and the task die with
    it, Dask runs the attempt again (the nanny restarts the worker, the plugin comes back)."""
    task = ct.electron(where_slowly, executor=ct.executor.DaskExecutor(
        scheduler_address=cluster.scheduler_address))

    @ct.lattice
    def wf():
        return task(3, str(cov_home.parent / "started"))

    dispatch_id = ct.dispatch(wf)()
    pid = wait_for_pid(cov_home, dispatch_id, 0)
    zygote = _parent_of(pid)
    dask_worker = _parent_of(zygote)
    assert dask_worker in _worker_pids(client)
    os.kill(dask_worker, signal.SIGKILL)
    # nothing of it runs on without its worker
    assert wait_pid_gone(pid, timeout=20) and wait_pid_gone(zygote, timeout=20)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result["pid"] != pid
    assert (cov_home.parent / "started").read_text().count("start\n") == 2


def where_slowly(seconds: float, marker: str) -> dict:
    import time as _time

    with open(marker, "a") as f:
        f.write("start\n")
    _time.sleep(seconds)
    return where(0)


def cwd() -> str:
    import os as _os

    return _os.getcwd()


def test_workdir_is_made_on_the_dask_worker_and_tasks_run_there(cov_home, cluster, tmp_path):
    base = tmp_path / "work dir"  # a space: paths go as they are
    task = ct.electron(cwd, executor=ct.executor.DaskExecutor(
        scheduler_address=cluster.scheduler_address, workdir=str(base),
        create_unique_workdir=True))

    @ct.lattice
    def wf():
        return task()

    dispatch_id = ct.dispatch(wf)()
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == str(base / dispatch_id / "node_0")


def test_a_restarted_scheduler_gets_the_attempt_again_and_a_gone_one_fails_it(cov_home,
                                                                               distributed):
    """The scheduler goes away mid-task (its workers and the task with it): once a scheduler
    answers at the address again, the attempt runs there from the start; when none does, the
    task fails saying that it cannot connect."""
    port = _free_port()

    def start():
        return distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", scheduler_port=port,
                                        dashboard_address=None)

    address = f"tcp://127.0.0.1:{port}"
    marker = cov_home.parent / "started"
    task = ct.electron(where_slowly, executor=ct.executor.DaskExecutor(
        scheduler_address=address, connect_timeout=30))

    @ct.lattice
    def wf():
        return task(2, str(marker))

    first = start()
    dispatch_id = ct.dispatch(wf)()
    pid = wait_for_pid(cov_home, dispatch_id, 0)
    first.close()
    assert wait_pid_gone(pid, timeout=20)
    with start():
        result = ct.get_result(dispatch_id, wait=True)
        assert result.status == ct.status.COMPLETED, result.error
        assert result.result["pid"] != pid and marker.read_text().count("start\n") == 2
        sleepy = ct.electron(sleeper, executor=ct.executor.DaskExecutor(
            scheduler_address=address, connect_timeout=3))

        @ct.lattice
        def long_wf():
            return sleepy(120, 1)

        late = ct.dispatch(long_wf)()
        wait_for_pid(cov_home, late, 0)
    result = ct.get_result(late, wait=True)
    assert result.status == ct.status.FAILED
    error = run_state(cov_home, late).tasks[0].error
    assert f"cannot connect to the Dask scheduler at {address}" in error, error
