"""Slurm pilot mode: few allocations ("blocks") running many tasks each.

Settings and the scaling policy first (no cluster), then the session's real single-node Slurm
(``slurm_cluster``): tasks write one file per execution into a directory of the test's, so
that a task run twice shows."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Set

import pytest

from runner import layout
from runner.backends.slurm.pilot_blocks import wanted_blocks
from runner.backends.slurm.pilot_script import render_block_script
from runner.backends.slurm.pilot_settings import PilotError, parse_pilot, pilot_problem
from runner.backends.slurm.settings import parse_settings
from runner.packed_reads import PackTail
from runner.rundir import RunDir
from tests.backends.test_slurm import _squeue, _until
from tests.infra.executors import dispatch_script, run_result, wait_status


# -- no cluster -----------------------------------------------------------------------------
def test_pilot_settings_are_validated() -> None:
    assert parse_pilot(None) is None and parse_pilot(False) is None
    assert parse_pilot(True).max_blocks == 1
    found = parse_pilot({"min_blocks": 1, "max_blocks": 3, "workers": 4, "idle_timeout": 5,
                         "walltime": "01:30:00"})
    assert (found.min_blocks, found.max_blocks, found.workers, found.idle_timeout,
            found.walltime_minutes) == (1, 3, 4, 5.0, 90)
    assert parse_pilot({"walltime": "1-00:00:30"}).walltime_minutes == 24 * 60 + 1
    assert parse_pilot({"walltime": 45}).walltime_minutes == 45
    with pytest.raises(PilotError, match="unknown pilot setting 'max_block'; known: min_blocks"):
        parse_pilot({"max_block": 2})
    with pytest.raises(PilotError, match="above max_blocks"):
        parse_pilot({"min_blocks": 3, "max_blocks": 2})
    with pytest.raises(PilotError, match="walltime"):
        parse_pilot({"walltime": "soon"})
    with pytest.raises(PilotError, match="workers"):
        parse_pilot({"workers": -1})
    assert pilot_problem({"pilot": True, "address": "login.example.org"}) == ""  # SSH: fine
    assert "max_block" in pilot_problem({"pilot": {"max_block": 1}, "address": "login"})


def test_blocks_scale_with_tasks_between_min_and_max() -> None:
    assert wanted_blocks(0, 4, 1, 5) == 0  # nothing to do: no block, whatever min_blocks
    assert wanted_blocks(1, 4, 0, 5) == 1
    assert wanted_blocks(9, 4, 0, 5) == 3
    assert wanted_blocks(1000, 4, 0, 5) == 5
    assert wanted_blocks(1, 4, 2, 5) == 2


def test_block_script_runs_the_pool_with_its_settings(tmp_path: Path) -> None:
    settings = parse_settings({"options": {"partition": "debug"}, "time_limit": 600,
                               "variables": {"A": "it's"}, "prerun_commands": ["echo pre"]})
    pilot = parse_pilot({"workers": 3, "idle_timeout": 7, "walltime": 20})
    root = tmp_path / "run dir 'x'"
    text = render_block_script(settings, pilot, root=str(root), dispatch_id="d1",
                               block="b1-ab", name="cov-d1-pilot", python="printf '%s\\n'")
    assert "#SBATCH --time=20\n" in text and "#SBATCH --cpus-per-task=3\n" in text
    assert "#SBATCH --no-requeue\n" in text and "#SBATCH --partition=debug\n" in text
    out = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["pre", f"{root}/slurm/{layout.POOL}", str(root), "b1-ab",
                                       "3", "7", "1200"]


def test_unknown_pilot_setting_is_refused_at_dispatch(cov_home: Path, run_cov: Callable,
                                                      tmp_path: Path) -> None:
    script = tmp_path / "wf.py"
    script.write_text("import covalent as ct\n"
                      "@ct.electron(executor=ct.executor.SlurmExecutor(pilot={'max_block': 2}))\n"
                      "def f():\n    return 1\n"
                      "@ct.lattice\ndef wf():\n    return f()\n")
    result = run_cov("dispatch", str(script))
    assert result.returncode != 0
    assert "unknown pilot setting 'max_block'; known: min_blocks" in result.stderr
    assert "Traceback" not in result.stderr


# -- a real cluster ------------------------------------------------------------------------
SWEEP = """
    @ct.electron(executor=ct.executor.SlurmExecutor(
        {login}poll_freq=0.3, use_srun=False, options={{"partition": "debug"}},
        pilot={pilot}))
    def square(i, pause):
        marks = {marks!r}
        open(os.path.join(marks, f"{{i}}-{{os.getpid()}}-{{time.time_ns()}}"), "w").close()
        print(f"item {{i}}", flush=True)  # logs/<node>.out: which node is item i
        time.sleep(pause)
        return i * i

    @ct.electron
    def total(xs):
        return sum(xs)

    @ct.lattice
    def sweep(n={n}, pause={pause}):
        return total([square(i, pause) for i in range(n)])
    """



def sweep_script(pilot: Dict[str, Any], marks: Path, n: int, pause: float,
                 login: str = "") -> str:
    """The sweep of ``n`` tasks through pilot blocks; ``login``: ``SlurmExecutor`` keyword
    arguments reaching the cluster through SSH (``SlurmLogin.executor_args``), else none."""
    return SWEEP.format(login=f"{login}, " if login else "", pilot=pilot, marks=str(marks),
                        n=n, pause=pause)

def _executions(marks: Path) -> Dict[int, int]:
    counts: Dict[int, int] = {}
    for mark in marks.iterdir():
        node = int(mark.name.split("-")[0])
        counts[node] = counts.get(node, 0) + 1
    return counts


def _blocks(home: Path, run_id: str) -> List[Path]:
    base = home / run_id / layout.PILOT_BLOCKS
    return sorted(base.iterdir()) if base.is_dir() else []


def _block_job(block: Path) -> str:
    return str(json.loads((block / layout.BLOCK_INFO).read_text())["job_id"])


def _our_jobs(run_id: str) -> List[str]:
    """Every job of this run Slurm knows (squeue -t all: finished ones too)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%j"], capture_output=True,
                         text=True).stdout.split()
    return [line.split("|")[0] for line in out if line.endswith(f"|cov-{run_id[:8]}-pilot")]


def test_many_tasks_run_through_few_blocks(slurm_home: Path, run_cov: Callable,  # noqa: F811
                                           tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    run_id = dispatch_script(run_cov, tmp_path, sweep_script(
        {"max_blocks": 2, "workers": 1, "idle_timeout": 5}, marks, n=60, pause=0.01))
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == sum(i * i for i in range(60))
    assert _executions(marks) == {i: 1 for i in range(60)}  # each task ran once
    jobs = _our_jobs(run_id)
    assert 1 <= len(jobs) <= 2, jobs  # sbatch calls: at most max_blocks, not one per task
    assert {_block_job(b) for b in _blocks(slurm_home, run_id)} == set(jobs)
    # The run ended: its blocks were asked to stop and exited, leaving nothing running.
    for block in _blocks(slurm_home, run_id):
        _until(lambda: (block / layout.BLOCK_EXITED).exists(), what=f"{block.name} to exit")
        assert not list((block / layout.BLOCK_RUNNING).iterdir())
    assert not list((slurm_home / run_id / layout.PILOT_QUEUE).iterdir())


def test_block_killed_mid_run_its_tasks_run_again_nothing_finished_reruns(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:  # noqa: F811
    marks = tmp_path / "marks"
    marks.mkdir()
    run_id = dispatch_script(run_cov, tmp_path, sweep_script(
        {"max_blocks": 1, "workers": 2, "idle_timeout": 5}, marks, n=16, pause=0.5))
    results = slurm_home / run_id / layout.RESULTS

    def finished() -> Set[int]:
        """The nodes whose outcome is written: in the blocks' packs (format 2.0), or files."""
        found = {h["node"] for h, _ in PackTail(str(results)).new_records()}
        return found | {int(p.name.split(".")[0]) for p in results.iterdir()
                        if p.name.endswith(".pkl")} if results.is_dir() else found

    def first_block_busy() -> Any:
        blocks = _blocks(slurm_home, run_id)
        if not blocks or not (blocks[0] / layout.BLOCK_INFO).exists():
            return None
        running = list((blocks[0] / layout.BLOCK_RUNNING).iterdir())
        return blocks[0] if running and len(finished()) >= 2 else None

    block = _until(first_block_busy, timeout=60, what="the block to have run tasks")
    job = _block_job(block)
    subprocess.run(["scancel", job], check=True)
    finished_before = finished()
    assert finished_before
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == sum(i * i for i in range(16))
    counts = _executions(marks)
    assert set(counts) == set(range(16))
    run = RunDir(slurm_home / run_id)
    for node in finished_before:  # finished before the kill: never run again
        text = run.read_log(node, "stdout").split()
        if text[:1] == ["item"]:  # a square task (not the parameters' or total's node)
            assert counts[int(text[1])] == 1, (node, counts)
    assert any(n > 1 for n in counts.values()), counts  # the killed ones ran again
    blocks = _blocks(slurm_home, run_id)
    assert len(blocks) >= 2 and _squeue(job).get(job) == "CANCELLED"


IDLE = """
    pilot = ct.executor.SlurmExecutor(poll_freq=0.3, use_srun=False,
                                      options={{"partition": "debug"}},
                                      pilot={{"max_blocks": 1, "idle_timeout": 2}})

    @ct.electron(executor=pilot)
    def first():
        return 1

    @ct.electron
    def pause(x):
        time.sleep({pause})
        return x

    @ct.electron(executor=pilot)
    def second(x):
        return x + 1

    @ct.lattice
    def phases():
        return second(pause(first()))
    """


def test_idle_block_exits_and_a_new_one_serves_later_tasks(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:  # noqa: F811
    run_id = dispatch_script(run_cov, tmp_path, IDLE.format(pause=8))
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == 2
    blocks = _blocks(slurm_home, run_id)
    assert len(blocks) == 2, blocks
    exited = json.loads((blocks[0] / layout.BLOCK_EXITED).read_text())
    assert exited["why"] == "idle"  # released by itself while the local task slept
    job = _block_job(blocks[0])
    assert _squeue(job).get(job) == "COMPLETED"
    # the second block is released by the run's end (asked to stop)
    _until(lambda: (blocks[1] / layout.BLOCK_EXITED).exists(), what="the second block to exit")


def test_runner_killed_and_restarted_reattaches_to_the_queue_and_blocks(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:  # noqa: F811
    """kill -9 of the runner mid-sweep: the block goes on; the next runner adopts the queued
    tickets and the running ones; every task runs once, as attempt 1."""
    import os
    import signal

    from runner.liveness import read_runners

    marks = tmp_path / "marks"
    marks.mkdir()
    run_id = dispatch_script(run_cov, tmp_path, sweep_script(
        {"max_blocks": 1, "workers": 2, "idle_timeout": 20}, marks, n=16, pause=0.5))
    _until(lambda: len(list(marks.iterdir())) >= 3, timeout=60, what="tasks to run")
    runner = next(r for r in read_runners(slurm_home) if r["alive"])
    os.kill(int(runner["pid"]), signal.SIGKILL)
    _until(lambda: not any(r["alive"] for r in read_runners(slurm_home)), timeout=10,
           what="the runner to die")
    assert run_cov("runner", "start").returncode == 0
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == sum(i * i for i in range(16))
    assert _executions(marks) == {i: 1 for i in range(16)}
    assert {t["attempt"] for t in status["tasks"] if t["name"] == "square"} == {1}
    assert len(_blocks(slurm_home, run_id)) == 1  # the first runner's block served them all


WALLTIME = """
    @ct.electron(executor=ct.executor.SlurmExecutor(
        poll_freq=0.3, use_srun=False, options={{"partition": "debug"}},
        pilot={{"max_blocks": 1, "workers": 2, "walltime": 5}}))
    def long_first_time(i):
        marks = {marks!r}
        first = not any(m.startswith(f"{{i}}-") for m in os.listdir(marks))
        open(os.path.join(marks, f"{{i}}-{{os.getpid()}}-{{time.time_ns()}}"), "w").close()
        if first and i == 0:
            time.sleep(600)  # outlives the block: its walltime ends it
        return i

    @ct.lattice
    def limited():
        return [long_first_time(i) for i in range(3)]
    """


def test_block_walltime_ends_it_and_its_running_task_runs_in_another(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:  # noqa: F811
    """The block's job hits its time limit (moved to now, as an admin can, so that Slurm's
    own enforcement ends it at its next tick): the task it was running goes back to the queue
    and a new block runs it; the tasks that had finished are not run again."""
    marks = tmp_path / "marks"
    marks.mkdir()
    run_id = dispatch_script(run_cov, tmp_path, WALLTIME.format(marks=str(marks)))
    _until(lambda: len(_executions(marks)) == 3, timeout=60, what="all three tasks to start")
    block = _blocks(slurm_home, run_id)[0]
    job = _block_job(block)
    assert "TimeLimit=00:05:00" in subprocess.run(["scontrol", "show", "job", job],
                                                  capture_output=True, text=True).stdout
    subprocess.run(["scontrol", "update", f"JobId={job}", "EndTime=now"], check=True)
    status = wait_status(run_cov, run_id, timeout=150)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == [0, 1, 2]
    assert _executions(marks) == {0: 2, 1: 1, 2: 1}
    assert _squeue(job).get(job) == "TIMEOUT"
    assert len(_blocks(slurm_home, run_id)) == 2


def test_cov_cancel_stops_running_and_queued_tasks_and_the_block(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:  # noqa: F811
    marks = tmp_path / "marks"
    marks.mkdir()
    run_id = dispatch_script(run_cov, tmp_path, sweep_script(
        {"max_blocks": 1, "workers": 1, "idle_timeout": 60}, marks, n=4, pause=300))
    _until(lambda: len(list(marks.iterdir())) == 1, timeout=60, what="a task to run")
    assert run_cov("cancel", run_id).returncode == 0
    status = wait_status(run_cov, run_id, timeout=60)
    assert status["status"] == "CANCELLED", status
    assert {t["status"] for t in status["tasks"] if t["name"] == "square"} == {"CANCELLED"}
    assert len(list(marks.iterdir())) == 1  # the queued ones never started
    (block,) = _blocks(slurm_home, run_id)
    # the run is over: the block stops at once rather than after its idle_timeout
    _until(lambda: (block / layout.BLOCK_EXITED).exists(), timeout=20, what="the block to exit")
    job = _block_job(block)
    _until(lambda: _squeue(job).get(job) == "COMPLETED", timeout=20, what="the job to end")


def test_tasks_waiting_for_a_pending_block_say_why(slurm_home: Path, run_cov: Callable,  # noqa: F811
                                                   tmp_path: Path) -> None:
    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor=ct.executor.SlurmExecutor(
            poll_freq=0.3, use_srun=False, options={"partition": "debug", "begin": "now+1hour"},
            pilot={"max_blocks": 1}))
        def later(i):
            return i

        @ct.lattice
        def waits():
            return [later(i) for i in range(3)]
        """)

    def reasons() -> Any:
        status = json.loads(run_cov("status", run_id, "--json").stdout)
        found = {t.get("reason") for t in status["tasks"] if t["name"] == "later"}
        return found if all(r and "BeginTime" in r for r in found) else None

    found = _until(reasons, timeout=60, what="the tasks to tell why they wait")
    (block,) = _blocks(slurm_home, run_id)
    assert found == {f"waiting for pilot block job {_block_job(block)} (BeginTime)"}
    assert run_cov("cancel", run_id).returncode == 0
    assert wait_status(run_cov, run_id, timeout=60)["status"] == "CANCELLED"
    job = _block_job(block)  # never started: scancelled with the run's end, not left in line
    _until(lambda: _squeue(job).get(job) == "CANCELLED", timeout=20, what="the block's scancel")
