"""Preemption and node failure on the real single-node cluster, and what `cov status` shows.

The test cluster (tests/infra/slurm.sh) has ``PreemptType=preempt/partition_prio``: a job in
partition ``urgent`` preempts jobs of ``debug`` (``PreemptMode=REQUEUE``: Slurm requeues them
itself, same job id) and of ``preemptible`` (``PreemptMode=CANCEL``: they end ``PREEMPTED``).
A node set DOWN (``scontrol update NodeName=localhost State=DOWN``, as slurmctld does when a
node stops answering) kills its jobs: Slurm requeues a requeueable batch job (the default,
``JobRequeue=1``) and ends one submitted with ``--no-requeue`` ``NODE_FAIL (NodeDown)``.

Each test runs two tasks, one job each: ``kept`` is requeued by Slurm and must be followed
(its id kept, its task never FAILED, its second run returns); ``lost`` ends for good and is
submitted again by cov (``max_requeues=1``, a new job), then ends for good once more: FAILED
with the state and both job ids, in `cov status` and `--json`. Both happen twice, so the
tests disturb the cluster: they hold the Slurm group (tests/infra/parallel.py: they use
``slurm_cluster``), and the node is resumed in a ``finally``.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

from tests.backends.test_slurm import _events, _handles, _squeue, _task, _until
from tests.infra.executors import dispatch_script
from tests.infra.fixtures import SlurmCluster

TASKS = """
    kept_on = ct.executor.SlurmExecutor(poll_freq=0.3, missing_grace=1, requeue_window=1,
                                        use_srun=False, max_requeues=1, partition={kept!r})
    lost_on = ct.executor.SlurmExecutor(poll_freq=0.3, missing_grace=1, requeue_window=1,
                                        use_srun=False, max_requeues=1, partition={lost!r},
                                        options={options!r})

    def runs(marks, name):
        '''One line per run of the task: the job it runs in.'''
        path = os.path.join(marks, name)
        with open(path, "a") as f:
            f.write(os.environ["SLURM_JOB_ID"] + "\\n")
        with open(path) as f:
            return f.read().split()

    @ct.electron(executor=kept_on)
    def kept(marks):
        seen = runs(marks, "kept")
        if len(seen) == 1:
            time.sleep(600)  # until the fault ends this run
        return seen

    @ct.electron(executor=lost_on)
    def lost(marks):
        runs(marks, "lost")
        time.sleep(600)  # every run of it ends by the fault

    @ct.lattice
    def faulted(marks):
        return [kept(marks), lost(marks)]
    """


def _node_state() -> str:
    return subprocess.run(["sinfo", "-h", "-n", "localhost", "-o", "%T"], capture_output=True,
                          text=True).stdout.strip().lower()


@pytest.fixture
def node_restored(slurm_cluster: SlurmCluster) -> Iterator[None]:
    """Whatever a test does to the node, it is usable again afterwards (later tests need it):
    resumed if it is still down or drained (ReturnToService=2 usually brings it back itself)."""
    try:
        yield
    finally:
        for _ in range(3):
            state = _node_state()
            if not any(word in state for word in ("down", "drain", "fail")):
                break
            subprocess.run(["scontrol", "update", "NodeName=localhost", "State=RESUME"],
                           capture_output=True)
            time.sleep(0.5)
        _until(lambda: _node_state().rstrip("*") in ("idle", "mixed", "allocated"),
               timeout=60, what="the node back in service")


def _preempt(cluster: SlurmCluster) -> None:
    """A job of partition ``urgent`` asking for every CPU: it preempts what runs."""
    subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-c", str(cluster.cpus),
                    "-J", "cov-test-urgent", "-o", "/dev/null", "--wrap", "sleep 2"],
                   check=True, capture_output=True)


def _node_down(cluster: SlurmCluster) -> None:
    subprocess.run(["scontrol", "update", "NodeName=localhost", "State=DOWN",
                    "Reason=cov-test-node-failure"], check=True)


FAULTS: Dict[str, Dict[str, Any]] = {
    "preempted": dict(kept="debug", lost="preemptible", options={}, state="PREEMPTED",
                      reason="", disturb=_preempt),
    "node_fail": dict(kept="debug", lost="debug", options={"no-requeue": True},
                      state="NODE_FAIL", reason=" (NodeDown)", disturb=_node_down),
}


def _lines(path: Path) -> List[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_requeued_job_is_followed_and_a_lost_one_submitted_again_until_max_requeues(
        fault: str, slurm_cluster: SlurmCluster, slurm_home: Path, run_cov: Callable,
        tmp_path: Path, node_restored: None) -> None:
    """``kept``: Slurm requeues its job (the same id, RestartCnt 1); the task stays, its second
    run returns both runs' (same) job id. ``lost``: its job ends ``state``; cov submits the
    attempt again (requeue 1 of 1, a new job); the second job ends ``state`` too: FAILED with
    that state and both jobs. Neither task is FAILED at a requeue (no end event but the last,
    no FAILED in any `cov status` seen on the way)."""
    case = FAULTS[fault]
    marks = tmp_path / "marks"
    marks.mkdir()
    run_id = dispatch_script(run_cov, tmp_path, TASKS.format(**case), "-a", f"marks={marks}")
    seen: Dict[str, List[str]] = {"kept": [], "lost": []}

    def status() -> Dict[str, Any]:
        data = json.loads(run_cov("status", run_id, "--json").stdout)
        for name, states in seen.items():
            state = _task(data, name)["status"]
            if not states or states[-1] != state:
                states.append(state)
        return data

    def running(kept_runs: int, lost_runs: int) -> bool:
        status()
        return len(_lines(marks / "kept")) == kept_runs and \
            len(_lines(marks / "lost")) == lost_runs

    _until(lambda: running(1, 1), timeout=120, what="both tasks running")
    (job,) = _handles(slurm_home, run_id)[_task(status(), "kept")["id"]]
    case["disturb"](slurm_cluster)
    # kept: requeued by Slurm, held until its old run's credential expires, then run again
    done = _until(lambda: running(2, 2) and _task(status(), "kept")["status"] == "COMPLETED"
                  and status(), timeout=150, what="kept run again, lost submitted again")
    kept, lost = _task(done, "kept"), _task(done, "lost")
    assert json.loads(run_cov("result", run_id, str(kept["id"]), "--json").stdout)[
        "result"] == [job, job], "kept ran twice in the one job Slurm requeued"
    first, second = _handles(slurm_home, run_id)[lost["id"]]
    assert _lines(marks / "lost") == [first, second] and lost["job_id"] == second
    assert _squeue(first) == {first: case["state"]}
    assert lost["status"] == "RUNNING" and kept["job_id"] == job

    case["disturb"](slurm_cluster)  # the second job of lost: requeues used up
    run_cov("wait", run_id, "--timeout", "90", "-q", timeout=120)
    final = status()
    lost = _task(final, "lost")
    expected = (f"Slurm job {second} ended {case['state']}{case['reason']} without writing an "
                f"outcome, after 1 requeue (job {first} {case['state']})")
    assert lost["status"] == "FAILED" and lost["error"].startswith(expected), lost["error"]
    assert lost["job_id"] == second and _handles(slurm_home, run_id)[kept["id"]] == [job]
    ends = {name: [e["status"] for e in _events(slurm_home, run_id)
                   if e["ev"] == "end" and e["node"] == _task(final, name)["id"]]
            for name in seen}
    assert ends == {"kept": ["COMPLETED"], "lost": ["FAILED"]}, ends
    assert "FAILED" not in seen["kept"] and seen["lost"][-1] == "FAILED" and \
        seen["lost"].count("FAILED") == 1, seen
    table = run_cov("status", run_id).stdout
    row = next(line for line in table.splitlines()
               if line.split()[:2] == [str(lost["id"]), "lost"])
    assert f"job {second}" in row and "FAILED" in row, table
    assert f"Slurm job {second} ended {case['state']}" in table, table


# -- memory ---------------------------------------------------------------------------------------
def test_a_task_over_its_memory_is_killed_and_fails_out_of_memory(slurm_home: Path,
                                                                  run_cov: Callable,
                                                                  tmp_path: Path) -> None:
    """``mem="150M"``: the test cluster's Slurm sums each step's memory every second and kills
    a step over it (``JobAcctGatherParams=OverMemoryKill``; no cgroups). In a job step
    (``srun``) the worker dies and the job script reports it; in the batch step the whole job
    is killed and ``squeue`` says ``FAILED``. Either way the task is FAILED as
    ``OUT_OF_MEMORY``, with its job id in `cov status`."""
    run_id = dispatch_script(run_cov, tmp_path, """
        def grow():
            chunks = []
            for _ in range(40):  # 2 GB at most, 50 MB at a time, each page touched
                chunks.append(bytearray(50 * 1024 * 1024))
                for i in range(0, len(chunks[-1]), 4096):
                    chunks[-1][i] = 1
                time.sleep(0.1)
            time.sleep(600)

        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, missing_grace=1,
                                                        partition="debug", mem="150M"))
        def in_a_step():
            grow()

        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, missing_grace=1,
                                                        partition="debug", mem="150M",
                                                        use_srun=False))
        def in_the_batch_step():
            grow()

        @ct.lattice
        def hungry():
            return [in_a_step(), in_the_batch_step()]
        """)
    run_cov("wait", run_id, "--timeout", "120", "-q", timeout=150)
    status = json.loads(run_cov("status", run_id, "--json").stdout)
    table = run_cov("status", run_id).stdout
    for name in ("in_a_step", "in_the_batch_step"):
        task = _task(status, name)
        (job,) = _handles(slurm_home, run_id)[task["id"]]
        assert task["status"] == "FAILED" and task["job_id"] == job, task
        assert task["error"].startswith(f"Slurm job {job} ended OUT_OF_MEMORY"), task["error"]
        assert "exceeded memory limit" in task["error"], task["error"]  # the job's output
        row = next(line for line in table.splitlines() if line.split()[:2] == [
            str(task["id"]), name])
        assert f"job {job}" in row and "FAILED" in row, table
    assert _squeue(job) == {job: "FAILED"}  # what Slurm itself says of the batch step's kill


def test_only_a_failed_job_whose_output_tells_of_a_memory_kill_reads_out_of_memory() -> None:
    """A time limit or a preemption stays what it is, whatever the output says."""
    from runner.backends.base import Task
    from runner.backends.slurm.jobs import SlurmJob, lost_message

    task = Task(run="/r", dispatch_id="d", node=0, name="t", attempt=1, fn=(0, 1), inputs=[])
    tail = "slurmstepd: error: StepId=7.batch exceeded memory limit (181264384 > 157286400)\n"
    failed = SlurmJob(task, job_id="7", state="FAILED", reason="JobLaunchFailure")
    assert lost_message(failed, 60, "x", tail).startswith(
        "Slurm job 7 ended OUT_OF_MEMORY (Slurm's state: FAILED, JobLaunchFailure) without")
    assert lost_message(failed, 60, "x", "").startswith("Slurm job 7 ended FAILED (JobLaunch")
    timeout = SlurmJob(task, job_id="8", state="TIMEOUT", reason="TimeLimit")
    assert lost_message(timeout, 60, "x", tail).startswith("Slurm job 8 ended TIMEOUT (TimeLimit)")
