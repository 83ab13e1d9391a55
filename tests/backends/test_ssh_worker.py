"""The SSH backend's persistent worker (``runner.ssh.worker_server``) against the real sshd:
tasks are forked children of one long-lived Python per host, each the leader of its own
process group; a task that dies, and a worker that dies under a running task, end as with the
per-task launcher (``persistent_worker=False``), which keeps working too."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

import covalent_cli as ct
from tests.backends.test_ssh import hosts, ssh_home  # noqa: F401 (fixtures)
from tests.processes import run_state, wait_for_pid

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def whoami(i: int) -> tuple:
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        parent = f.read().replace(b"\0", b" ").decode()
    return os.getpid(), os.getppid(), os.getpgid(0), parent


def dies() -> int:
    print("about to die")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def sleeper(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


def gather(*rows: tuple) -> list:
    return list(rows)


def _run_all(executor, fn, n: int) -> list:
    task = ct.electron(fn, executor=executor)
    collect = ct.electron(gather)

    @ct.lattice
    def wf():
        return collect(*[task(i) for i in range(n)])

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    return result.result


def test_tasks_are_forked_by_one_persistent_worker(ssh_home):  # noqa: F811
    rows = _run_all(ct.executor.SSHExecutor(hostname="covtest"), whoami, 6)
    pids, parents, groups, commands = zip(*rows)
    assert len(set(pids)) == 6
    assert len(set(parents)) == 1, "tasks were not children of one worker"
    assert "worker_server.py" in commands[0]
    assert list(groups) == list(pids), "each task leads its own process group (cancel)"


def test_per_task_launcher_is_still_there_on_request(ssh_home):  # noqa: F811
    rows = _run_all(ct.executor.SSHExecutor(hostname="covtest", persistent_worker=False),
                    whoami, 3)
    pids, parents, groups, commands = zip(*rows)
    assert not any("worker_server.py" in c for c in commands)
    assert list(groups) == list(pids)


@pytest.mark.parametrize("persistent", [True, False], ids=["worker", "launcher"])
def test_a_task_killed_on_the_host_fails_saying_so(ssh_home, persistent):  # noqa: F811
    task = ct.electron(dies, executor=ct.executor.SSHExecutor(
        hostname="covtest", persistent_worker=persistent))

    @ct.lattice
    def wf():
        return task()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED
    error = run_state(ssh_home, result.dispatch_id).tasks[0].error
    assert "was killed (signal 9) without writing an outcome" in error, error


def test_worker_killed_under_a_running_task_the_task_is_waited_for(ssh_home):  # noqa: F811
    task = ct.electron(sleeper, executor=ct.executor.SSHExecutor(hostname="covtest"))

    @ct.lattice
    def wf():
        return task(2.5, 11)

    dispatch_id = ct.dispatch(wf)()
    pid = wait_for_pid(ssh_home, dispatch_id, 0)
    with open(f"/proc/{pid}/stat") as f:
        server = int(f.read().rsplit(") ", 1)[1].split()[1])
    with open(f"/proc/{server}/cmdline", "rb") as f:
        assert b"worker_server.py" in f.read()
    os.kill(server, signal.SIGKILL)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == 11
    state = run_state(ssh_home, dispatch_id).tasks[0]
    assert state.pid == pid and state.attempt == 1  # the same process, not a rerun
    log = (Path(ssh_home) / ".runners" / "runner.log").read_text()
    assert "while running task sleeper; resuming" in log
