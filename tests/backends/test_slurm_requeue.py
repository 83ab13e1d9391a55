"""Time limits and preemption: a job that ends TIMEOUT, PREEMPTED, NODE_FAIL or BOOT_FAIL is
submitted again up to ``max_requeues`` times, warned (SIGUSR1) before its limit, and its task
resumes from its checkpoint directory; exhausted, the task fails with the state and job ids.

TIMEOUT is real (the single-node cluster, ``time_limited`` below); so are PREEMPTED and
NODE_FAIL, in tests/backends/test_slurm_faults.py. The literal scheduler answers below (what
``squeue``/``sacct`` print, through a ``Shell`` that answers them, to the real engine code) add
what one cluster cannot show in one test: NODE_FAIL after a PREEMPTED requeue, a
re-attaching runner keeping the count, and Slurm's own OUT_OF_MEMORY state (only task/cgroup
gives it; the test cluster's memory kill ends jobs FAILED).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import pytest

from runner.backends.base import Task
from runner.backends.slurm.client import Result
from runner.backends.slurm.engine import SlurmBackend
from runner.backends.slurm.site import SharedSite
from tests.backends.test_slurm import REPO, _events, _handles, _squeue, _task, _until
from tests.infra.executors import dispatch_script


# -- PREEMPTED and NODE_FAIL: literal answers, the real engine -------------------------------
class AnsweringShell:
    """Answers ``sbatch`` with the next job id, and ``squeue`` for each job asked about with
    its literal line in ``states`` (``"12": "PREEMPTED|None|0"``)."""

    def __init__(self, states: Dict[str, str]) -> None:
        self.states = states
        self.job_ids = iter(["13", "14", "15"])
        self.calls: List[List[str]] = []

    def run(self, argv: Sequence[str], cwd: Optional[str] = None,
            timeout: float = 60.0) -> Result:
        self.calls.append(list(argv))
        name = os.path.basename(argv[0])
        if name == "sbatch":
            return Result(0, next(self.job_ids) + "\n", "")
        if name == "squeue":
            asked = next(a for a in argv if a.startswith("--jobs=")).split("=", 1)[1]
            return Result(0, "".join(f"{job}|{self.states[job]}|\n"
                                     for job in asked.split(",") if job in self.states), "")
        return Result(1, "", "")  # scontrol show config: no accounting, no jobcomp


class Recorder:
    def __init__(self) -> None:
        self.handles: List[Dict[str, Any]] = []

    def record_handle(self, task: Task, handle: Dict[str, Any]) -> None:
        self.handles.append(handle)

    def record_start(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record_pending(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wake(self) -> None:
        pass


def _backend(tmp_path: Path, states: Dict[str, str], max_requeues: int) -> Any:
    recorder = Recorder()
    backend = SlurmBackend({"type": "slurm", "poll_freq": 0.1, "requeue_window": 0,
                            "missing_grace": 0, "max_requeues": max_requeues,
                            "batch_window": 0}, recorder)
    shell = AnsweringShell(states)
    backend._use_site(SharedSite(shell))
    return backend, recorder, shell


def _submitted(backend: Any, tmp_path: Path) -> Task:
    """A task as if its job 12 had gone out (its bundle written), without a cluster."""
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    task = Task(run=str(run), dispatch_id="run", node=0, name="sim", attempt=1, fn=(0, 0),
                inputs=[])
    backend.site.prepare(str(run))
    backend.site.write_bundles(str(run), [(0, 1, b"bundle")])
    from runner.backends.slurm.jobs import SlurmJob

    backend.jobs.add(SlurmJob(task, job_id="12"))
    backend.next_query = 0.0
    return task


def _steps(backend: Any, until: Any, limit: int = 20) -> List[Any]:
    done: List[Any] = []
    for _ in range(limit):
        backend.next_query = 0.0
        done += backend.poll()
        if until(done):
            return done
        time.sleep(0.01)
    raise AssertionError(f"no end after {limit} polls: {done}")


def test_preempted_job_is_submitted_again_then_node_fail_exhausts_the_requeues(
        tmp_path: Path) -> None:
    """``12 PREEMPTED`` (sacct-shaped states through squeue's fields): requeue 1 of 1, a new
    job 13 with the same bundle, recorded with its history; ``13 NODE_FAIL``: the task fails
    naming both jobs and states, never in between."""
    backend, recorder, shell = _backend(tmp_path, {"12": "PREEMPTED|None|0",
                                                   "13": "NODE_FAIL|None|0"}, 1)
    _submitted(backend, tmp_path)
    done = _steps(backend, lambda d: d or len(recorder.handles) == 1)
    assert done == []  # PREEMPTED did not fail the task
    assert recorder.handles[0]["job_id"] == "13"
    assert recorder.handles[0]["requeues"] == 1
    assert recorder.handles[0]["requeued_from"] == ["12 PREEMPTED"]
    sbatch = [call for call in shell.calls if call[0].endswith("sbatch")]
    assert len(sbatch) == 1
    done = _steps(backend, lambda d: d)
    header = done[0].header
    assert header["ok"] is False and header["job_id"] == "13"
    assert header["error"].startswith("Slurm job 13 ended NODE_FAIL without writing an outcome, "
                                      "after 1 requeue (job 12 PREEMPTED)"), header["error"]


def test_without_max_requeues_a_timeout_fails_at_once(tmp_path: Path) -> None:
    backend, recorder, shell = _backend(tmp_path, {"12": "TIMEOUT|TimeLimit|0"}, 0)
    _submitted(backend, tmp_path)
    done = _steps(backend, lambda d: d)
    assert done[0].header["error"].startswith("Slurm job 12 ended TIMEOUT (TimeLimit)")
    assert recorder.handles == []


def test_out_of_memory_is_the_tasks_own_fault_and_never_requeued(tmp_path: Path) -> None:
    """Slurm's own OUT_OF_MEMORY (task/cgroup counted an OOM kill; the test cluster has no
    cgroups, see tests/backends/test_slurm_faults.py for its memory kill): no requeue, even
    with ``max_requeues``; the task fails at once with the state and the job."""
    backend, recorder, shell = _backend(tmp_path, {"12": "OUT_OF_MEMORY|OutOfMemory|0"}, 1)
    _submitted(backend, tmp_path)
    done = _steps(backend, lambda d: d)
    assert done[0].header["error"].startswith(
        "Slurm job 12 ended OUT_OF_MEMORY (OutOfMemory) without writing an outcome;")
    assert done[0].header["job_id"] == "12" and recorder.handles == []


def test_a_reattaching_runner_keeps_the_requeue_count(tmp_path: Path) -> None:
    """The handle carries the count: a restarted runner does not requeue once more."""
    backend, recorder, shell = _backend(tmp_path, {"13": "TIMEOUT|TimeLimit|0"}, 1)
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    task = Task(run=str(run), dispatch_id="run", node=0, name="sim", attempt=1, fn=(0, 0),
                inputs=[])
    assert backend.reattach(task, {"job_id": "13", "requeues": 1,
                                   "requeued_from": ["12 TIMEOUT"]})
    done = _steps(backend, lambda d: d)
    assert "after 1 requeue (job 12 TIMEOUT)" in done[0].header["error"]


# -- a real TIMEOUT -------------------------------------------------------------------------------
RESUMABLE = """
    import json

    requeued = ct.executor.SlurmExecutor(poll_freq=0.3, missing_grace=1, requeue_window=1,
                                         use_srun=False, max_requeues=1, time="00:10:00",
                                         partition="debug")

    @ct.electron(executor=requeued)
    def resumable(marks):
        ctx = ct.get_context()
        state = os.path.join(ctx.checkpoint_dir, "state.json")
        if os.path.exists(state):  # the job before this one was warned, saved, timed out
            with open(state) as f:
                saved = json.load(f)
            return (f"resumed at step {saved['step']} (warned: {saved['warned']}), "
                    f"node {ctx.node_id} of {ctx.dispatch_id}")
        open(os.path.join(marks, "resumable"), "w").close()
        step = 0
        while not ctx.time_warning:
            step += 1
            time.sleep(0.1)
        with open(state + ".tmp", "w") as f:
            json.dump({"step": step, "warned": True}, f)
        os.replace(state + ".tmp", state)
        time.sleep(600)  # until the time limit

    @ct.electron(executor=requeued)
    def hopeless(marks):
        open(os.path.join(marks, "hopeless"), "w").close()
        time.sleep(600)

    @ct.lattice
    def limited(marks):
        return [resumable(marks), hopeless(marks)]
    """


@pytest.fixture(scope="module")
def time_limited(slurm_cluster: Any, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Dict[str, Any]]:
    """A run of two tasks with ``max_requeues=1`` and real time limits. Slurm checks time
    limits (and the warnings before them) on a 30-second tick, so once each job runs, a thread
    moves its end 31 s ahead (``scontrol update EndTime=now+31``, as an admin can): the next
    tick warns it (SIGUSR1: less than ``signal_delay`` = 90 s left), the one after ends it
    TIMEOUT. Each job, the requeued ones too."""
    base = tmp_path_factory.mktemp("requeue")
    home, config, marks = base / "home", base / "config.yaml", base / "marks"
    marks.mkdir()
    config.write_text("runner:\n  idle_timeout: 3\n  rescan_interval: 0.5\n")
    env = {**os.environ, "COV_HOME": str(home), "COV_CONFIG": str(config)}

    def cov(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "covalent_cli.cli", *args], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=str(REPO))

    source = RESUMABLE
    found: Dict[str, Any] = {"cov": cov, "home": home, "marks": marks, "shortened": []}
    found["run_id"] = dispatch_script(cov, base, source, "-a", f"marks={marks}")
    stop = threading.Event()

    def shorten() -> None:
        try:
            while not stop.is_set():
                for ids in _handles(home, found["run_id"]).values():
                    for job in ids:
                        if job not in found["shortened"] and _squeue(job).get(job) == "RUNNING":
                            subprocess.run(["scontrol", "update", f"JobId={job}",
                                            "EndTime=now+31"], check=True)
                            found["shortened"].append(job)
                stop.wait(0.5)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            found["error"] = exc

    thread = threading.Thread(target=shorten, daemon=True)
    thread.start()
    yield found
    stop.set()
    thread.join(timeout=30)
    from runner.daemon import stop_runners

    stop_runners(home)


def test_timeout_warns_requeues_and_the_task_resumes_from_its_checkpoint(
        time_limited: Dict[str, Any]) -> None:
    """``resumable``: warned before its limit, it saves its step in ``checkpoint_dir``; its job
    ends TIMEOUT; a new job runs the same attempt, which finds the checkpoint and returns. The
    task is never FAILED on the way. ``hopeless`` times out twice: FAILED with TIMEOUT and both
    job ids, in ``cov status`` too."""
    cov, run_id, home = time_limited["cov"], time_limited["run_id"], time_limited["home"]
    cov("wait", run_id, "--timeout", "400", "-q", timeout=430)
    assert "error" not in time_limited, time_limited.get("error")
    status = json.loads(cov("status", run_id, "--json").stdout)
    handles = _handles(home, run_id)
    resumable, hopeless = _task(status, "resumable"), _task(status, "hopeless")
    assert resumable["status"] == "COMPLETED", resumable["error"]
    assert json.loads(cov("result", run_id, "0", "--json").stdout)["result"].startswith(
        "resumed at step ")
    assert json.loads(cov("result", run_id, "0", "--json").stdout)["result"].endswith(
        f"(warned: True), node {resumable['id']} of {run_id}")  # get_context() in a job
    first, second = handles[resumable["id"]]
    assert resumable["job_id"] == second != first and resumable["attempt"] == 1
    ends = [e for e in _events(home, run_id) if e["ev"] == "end"
            and e["node"] == resumable["id"]]
    assert [e["status"] for e in ends] == ["COMPLETED"]  # never FAILED at its requeue
    checkpoint = Path(status["path"]) / "checkpoints" / str(resumable["id"]) / "state.json"
    assert json.loads(checkpoint.read_text())["warned"] is True  # USR1 reached the task

    assert hopeless["status"] == "FAILED", hopeless
    h_first, h_second = handles[hopeless["id"]]
    assert hopeless["error"].startswith(f"Slurm job {h_second} ended TIMEOUT"), hopeless["error"]
    assert f"after 1 requeue (job {h_first} TIMEOUT)" in hopeless["error"]
    table = cov("status", run_id).stdout
    row = next(line for line in table.splitlines()
               if line.split()[:2] == [str(hopeless["id"]), "hopeless"])
    assert f"job {h_second}" in row and "FAILED" in row
    assert f"Slurm job {h_second} ended TIMEOUT" in table


def test_checkpoint_dir_is_the_nodes_own_on_the_local_pool_too(cov_home: Path, run_cov: Any,
                                                               tmp_path: Path) -> None:
    """The same directory for every attempt of a node: a retried task finds what the failed
    attempt left there."""
    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor=ct.executor.LocalExecutor(retries=1))
        def flaky():
            ctx = ct.get_context()
            seen = os.path.join(ctx.checkpoint_dir, "seen")
            if not os.path.exists(seen):
                open(seen, "w").write(str(ctx.attempt))
                raise RuntimeError("first attempt fails")
            return [ctx.checkpoint_dir, open(seen).read(), ctx.attempt, ctx.time_warning]

        @ct.lattice
        def wf():
            return flaky()
        """)
    run_cov("wait", run_id, "--timeout", "60", "-q", timeout=90)
    result = json.loads(run_cov("result", run_id, "--json").stdout)["result"]
    run_dir = json.loads(run_cov("status", run_id, "--json").stdout)["path"]
    node = next(t["id"] for t in json.loads(run_cov("status", run_id, "--json").stdout)["tasks"]
                if t["name"] == "flaky")
    assert result == [os.path.join(run_dir, "checkpoints", str(node)), "1", 2, False]
