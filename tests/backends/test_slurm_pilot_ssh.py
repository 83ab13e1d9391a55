"""Slurm pilot mode through SSH with no shared filesystem: the session's real Slurm reached
through the loopback sshd as the SSH test user (``slurm_login``).

The runner's run directory is one the cluster's user cannot read; the blocks take tickets from
the cluster-side copy under ``remote_workdir/.cov/<id>/`` and the runner moves tickets there and
brings outcomes and logs back over the connection. Tasks write one file per execution into a
directory in the SSH user's home, so that a task run twice shows."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

from runner import layout
from tests.backends.test_slurm import _squeue, _until
from tests.backends.test_slurm_pilot import _executions, sweep_script
from tests.infra.executors import SlurmLogin, dispatch_script, run_result, wait_status


@pytest.fixture
def remote(slurm_login: SlurmLogin) -> Iterator[Path]:
    """A fresh directory in the SSH user's home, owned by that user: ``work`` (the executor's
    remote_workdir), ``marks`` (one file per task execution) and ``files``."""
    user = slurm_login.host.username
    base = Path(f"/home/{user}/cov-pilot-ssh-{uuid.uuid4().hex[:8]}")
    (base / "marks").mkdir(parents=True)
    (base / "files").mkdir()
    subprocess.run(["chown", "-R", f"{user}:", str(base)], check=True)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _dispatch(run_cov: Callable, tmp_path: Path, login: SlurmLogin, remote: Path,
              pilot: Dict[str, Any], n: int, pause: float) -> str:
    return dispatch_script(run_cov, tmp_path, sweep_script(
        pilot, remote / "marks", n, pause, login=login.executor_args(str(remote / "work"))))


def _remote_run(remote: Path, run_id: str) -> Path:
    return remote / "work" / ".cov" / run_id


def _remote_blocks(remote: Path, run_id: str) -> List[Path]:
    base = _remote_run(remote, run_id) / layout.PILOT_BLOCKS
    return sorted(base.iterdir()) if base.is_dir() else []


def _local_job(home: Path, run_id: str, block: str) -> str:
    info = home / run_id / layout.PILOT_BLOCKS / block / layout.BLOCK_INFO
    return str(json.loads(info.read_text())["job_id"])


def test_pilot_through_ssh_runs_many_tasks_in_few_blocks(
        slurm_login: SlurmLogin, remote: Path, cov_home: Path, run_cov: Callable,
        tmp_path: Path) -> None:
    """Tickets go to the cluster's copy of the queue, outcomes and logs come back; the local
    run directory never had a queue, and the run's blocks stop when it ends."""
    run_id = _dispatch(run_cov, tmp_path, slurm_login, remote,
                       {"max_blocks": 2, "workers": 1, "idle_timeout": 5}, n=40, pause=0.01)
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == sum(i * i for i in range(40))
    assert _executions(remote / "marks") == {i: 1 for i in range(40)}  # each task ran once
    node = next(t["id"] for t in status["tasks"] if t["name"] == "square")
    assert run_cov("logs", run_id, str(node), "--stream", "stdout").stdout.startswith("item ")
    assert not (cov_home / run_id / layout.PILOT_QUEUE).exists()  # the queue was remote
    blocks = _remote_blocks(remote, run_id)
    assert 1 <= len(blocks) <= 2, blocks
    for block in blocks:  # asked to stop at the run's end: they exit, nothing left running
        job = _local_job(cov_home, run_id, block.name)
        if not (block / layout.BLOCK_STARTED).exists():  # still in Slurm's queue at the end
            _until(lambda: _squeue(job).get(job) in ("CANCELLED", "RUNNING", "COMPLETED"),
                   what=f"{block.name} to be scancelled")
            if _squeue(job).get(job) == "CANCELLED":
                continue
        _until(lambda: (block / layout.BLOCK_EXITED).exists(), what=f"{block.name} to exit")
        assert not list((block / layout.BLOCK_RUNNING).iterdir())
        started = json.loads((block / layout.BLOCK_STARTED).read_text())
        assert started["job_id"] == job
    assert not list((_remote_run(remote, run_id) / layout.PILOT_QUEUE).iterdir())
    # the cluster's copies of the finished tasks' outcomes and logs are removed (cleanup)
    remote_results = _remote_run(remote, run_id) / layout.RESULTS
    _until(lambda: not any(p.name.endswith(".pkl") for p in remote_results.iterdir()),
           what="the remote outcomes to be cleaned up")


def test_pilot_through_ssh_block_killed_its_tasks_run_again_nothing_finished_reruns(
        slurm_login: SlurmLogin, remote: Path, cov_home: Path, run_cov: Callable,
        tmp_path: Path) -> None:
    run_id = _dispatch(run_cov, tmp_path, slurm_login, remote,
                       {"max_blocks": 1, "workers": 2, "idle_timeout": 5}, n=16, pause=0.5)
    results = _remote_run(remote, run_id) / layout.RESULTS

    def first_block_busy() -> Any:
        blocks = _remote_blocks(remote, run_id)
        if not blocks or not (blocks[0] / layout.BLOCK_STARTED).exists():
            return None
        running = list((blocks[0] / layout.BLOCK_RUNNING).iterdir())
        done = list(results.iterdir()) if results.is_dir() else []
        return blocks[0] if running and len(done) >= 2 else None

    block = _until(first_block_busy, timeout=60, what="the block to have run tasks")
    job = json.loads((block / layout.BLOCK_STARTED).read_text())["job_id"]
    subprocess.run(["scancel", job], check=True)
    finished_before = {int(p.name.split(".")[0]) for p in results.iterdir()
                       if p.name.endswith(".pkl")}
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == sum(i * i for i in range(16))
    counts = _executions(remote / "marks")
    assert set(counts) == set(range(16))
    logs = cov_home / run_id / layout.LOGS  # the local copies, brought back
    for node in finished_before:
        log = logs / layout.log_file(node, "out")
        text = log.read_text().split() if log.exists() else []
        if text[:1] == ["item"]:
            assert counts[int(text[1])] == 1, (node, counts)
    assert any(n > 1 for n in counts.values()), counts  # the killed ones ran again
    assert len(_remote_blocks(remote, run_id)) >= 2 and _squeue(job).get(job) == "CANCELLED"


def test_pilot_through_ssh_runner_killed_and_restarted_reattaches(
        slurm_login: SlurmLogin, remote: Path, cov_home: Path, run_cov: Callable,
        tmp_path: Path) -> None:
    """kill -9 of the runner mid-sweep: the block goes on with the cluster's queue; the next
    runner finds the queued and running tickets there and every task runs once, as attempt 1."""
    from runner.liveness import read_runners

    run_id = _dispatch(run_cov, tmp_path, slurm_login, remote,
                       {"max_blocks": 1, "workers": 2, "idle_timeout": 20}, n=16, pause=0.5)
    marks = remote / "marks"
    _until(lambda: len(list(marks.iterdir())) >= 3, timeout=60, what="tasks to run")
    runner = next(r for r in read_runners(cov_home) if r["alive"])
    os.kill(int(runner["pid"]), signal.SIGKILL)
    _until(lambda: not any(r["alive"] for r in read_runners(cov_home)), timeout=10,
           what="the runner to die")
    assert run_cov("runner", "start").returncode == 0
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == sum(i * i for i in range(16))
    assert _executions(marks) == {i: 1 for i in range(16)}
    assert {t["attempt"] for t in status["tasks"] if t["name"] == "square"} == {1}
    assert len(_remote_blocks(remote, run_id)) == 1  # the first runner's block served them all


def test_pilot_through_ssh_cov_cancel_stops_running_and_queued_tasks(
        slurm_login: SlurmLogin, remote: Path, cov_home: Path, run_cov: Callable,
        tmp_path: Path) -> None:
    run_id = _dispatch(run_cov, tmp_path, slurm_login, remote,
                       {"max_blocks": 1, "workers": 1, "idle_timeout": 60}, n=4, pause=300)
    marks = remote / "marks"
    _until(lambda: len(list(marks.iterdir())) == 1, timeout=60, what="a task to run")
    assert run_cov("cancel", run_id).returncode == 0
    status = wait_status(run_cov, run_id, timeout=60)
    assert status["status"] == "CANCELLED", status
    assert {t["status"] for t in status["tasks"] if t["name"] == "square"} == {"CANCELLED"}
    assert len(list(marks.iterdir())) == 1  # the queued ones never started
    (block,) = _remote_blocks(remote, run_id)
    _until(lambda: (block / layout.BLOCK_EXITED).exists(), timeout=20, what="the block to exit")
    job = _local_job(cov_home, run_id, block.name)
    _until(lambda: _squeue(job).get(job) == "COMPLETED", timeout=20, what="the job to end")
    assert not list((_remote_run(remote, run_id) / layout.PILOT_QUEUE).iterdir())


def test_pilot_through_ssh_copies_the_tasks_files_over_the_login_connection(
        slurm_login: SlurmLogin, remote: Path, cov_home: Path, run_cov: Callable,
        tmp_path: Path) -> None:
    """ExecutorConnection transfers of a pilot task: the runner copies them before the ticket
    goes up and after the outcome comes back (the runner's file is in a directory the
    cluster's user cannot read)."""
    src = tmp_path / "private-input.txt"
    src.write_text("login data")
    back = tmp_path / "back" / "result.txt"
    on_cluster = remote / "files"
    run_id = dispatch_script(run_cov, tmp_path, f"""
        cluster = ct.executor.SlurmExecutor(
            {slurm_login.executor_args(str(remote / "work"))}, poll_freq=0.3, use_srun=False,
            options={{"partition": "debug"}}, pilot={{"workers": 1, "idle_timeout": 3}})
        conn = ct.fs_strategies.ExecutorConnection()

        @ct.electron(executor=cluster, files=[
            ct.fs.TransferFromRemote({str(src)!r}, {str(on_cluster / "in.txt")!r}, strategy=conn),
            ct.fs.TransferToRemote({str(back)!r}, {str(on_cluster / "out.txt")!r}, strategy=conn)])
        def job(files=[]):
            with open(files[0][1]) as f, open(files[1][0], "w") as g:
                g.write(f.read().upper())
            return os.environ["SLURM_JOB_ID"]

        @ct.lattice
        def wf():
            return job()
        """)
    status = wait_status(run_cov, run_id, timeout=90)
    assert status["status"] == "COMPLETED", status
    assert back.read_text() == "LOGIN DATA"
    (block,) = _remote_blocks(remote, run_id)
    assert run_result(run_cov, run_id) == _local_job(cov_home, run_id, block.name)


def _drop_connections(sshd_dir: Path) -> int:
    """Kill this session's sshd's connection processes (its children, by pid): every open SSH
    connection to it drops, as a network cut would; the listener stays. How many were cut."""
    listener = (sshd_dir / "sshd.pid").read_text().strip()
    kids = subprocess.run(["pgrep", "-P", listener], capture_output=True, text=True).stdout.split()
    for pid in kids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(kids)


def test_pilot_through_ssh_connection_dropped_mid_run_reconnects_nothing_runs_twice(
        slurm_login: SlurmLogin, remote: Path, cov_home: Path, run_cov: Callable,
        tmp_path: Path) -> None:
    """The runner's connection is cut twice while the block works: the block goes on with
    the cluster's queue, the runner connects again and takes the outcomes; no task runs twice
    and the block is not taken for lost."""
    run_id = _dispatch(run_cov, tmp_path, slurm_login, remote,
                       {"max_blocks": 1, "workers": 2, "idle_timeout": 20}, n=24, pause=0.5)
    marks = remote / "marks"
    for done in (3, 10):
        _until(lambda: len(list(marks.iterdir())) >= done, timeout=60, what="tasks to run")
        assert _drop_connections(slurm_login.host.dir) >= 1
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == sum(i * i for i in range(24))
    assert _executions(marks) == {i: 1 for i in range(24)}
    assert {t["attempt"] for t in status["tasks"] if t["name"] == "square"} == {1}
    assert len(_remote_blocks(remote, run_id)) == 1
