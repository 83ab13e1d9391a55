"""Slurm tasks are QUEUED, with the scheduler's PENDING reason, until their job runs.

The parsers and the job table first (no cluster), then the session's real single-node cluster
(run these under ``flock /tmp/cov-slurm-tests.lock``, as tests/backends/test_slurm.py).
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

from runner.backends.base import Task
from runner.backends.slurm.client import parse_squeue
from runner.backends.slurm.jobs import JobTable, SlurmJob
from tests.backends.test_slurm import _handles, _squeue, _until
from tests.infra.executors import dispatch_script, wait_status


def _job(node: int) -> SlurmJob:
    task = Task(run="/r", dispatch_id="d", node=node, name="t", attempt=1, fn=(0, 1), inputs=[])
    return SlurmJob(task, job_id=f"7_{node}")


def test_squeue_start_time_is_kept_for_running_jobs_only():
    infos = parse_squeue("7_0|RUNNING|None|0|2026-01-31T12:00:00|\n"
                         "7_1|PENDING|Priority|0|2026-01-31T13:00:00|\n7_2|RUNNING|None|0|N/A|")
    assert infos["7_0"].start == time.mktime((2026, 1, 31, 12, 0, 0, 0, 0, -1))
    assert infos["7_1"].start is None and infos["7_2"].start is None
    assert parse_squeue("7_3|RUNNING|None")["7_3"].start is None  # an older answer's shape


def test_job_table_tells_a_start_once_and_each_new_pending_reason():
    table = JobTable(missing_grace=60)
    first, second = _job(0), _job(1)
    table.add(first)
    table.add(second)
    table.apply(parse_squeue("7_0|PENDING|None|0|\n7_1|PENDING|Priority|0|"), now=0.0)
    assert [(j.task.node, k, v) for j, k, v in table.take_news()] == [(1, "pending", "Priority")]
    table.apply(parse_squeue("7_0|PENDING|Resources|0|\n7_1|PENDING|Priority|0|"), now=1.0)
    assert [(j.task.node, k, v) for j, k, v in table.take_news()] == [(0, "pending", "Resources")]
    table.apply(parse_squeue("7_0|RUNNING|None|0|2026-01-31T12:00:00|\n7_1|PENDING|Priority|0|"),
                now=2.0)
    news = table.take_news()
    assert [(j.task.node, k) for j, k, _ in news] == [(0, "start")] and news[0][2] > 0
    table.apply(parse_squeue("7_0|RUNNING|None|0|2026-01-31T12:00:00|\n7_1|COMPLETED|None|0|"),
                now=3.0)
    assert table.take_news() == []  # told once; an end needs no start (its outcome has it)


def test_queued_jobs_show_their_pending_reason_until_they_run(slurm_home: Path,  # noqa: F811
                                                              run_cov: Callable,
                                                              tmp_path: Path) -> None:
    """One array element at a time (``array_parallelism=1``): the others wait with Slurm's
    reason JobArrayTaskLimit, QUEUED in `cov status`, and only the running one is RUNNING."""
    run_id = dispatch_script(run_cov, tmp_path, """
        one_at_a_time = ct.executor.SlurmExecutor(poll_freq=0.3, missing_grace=3,
                                                  array_parallelism=1,
                                                  options={"partition": "debug"})

        @ct.electron(executor=one_at_a_time)
        def sleepy(i):
            time.sleep(300)

        @ct.lattice
        def lined_up():
            return [sleepy(i) for i in range(3)]
        """)

    def tasks() -> Any:
        data = json.loads(run_cov("status", run_id, "--json").stdout)
        return [t for t in data["tasks"] if t["name"] == "sleepy"]

    seen = _until(lambda: (lambda ts: sorted(t["status"] for t in ts) == [
        "QUEUED", "QUEUED", "RUNNING"] and all(t["reason"] for t in ts
                                              if t["status"] == "QUEUED") and ts)(tasks()),
                  timeout=60, what="one job running, two pending with a reason")
    queued = [t for t in seen if t["status"] == "QUEUED"]
    assert {t["reason"] for t in queued} == {"JobArrayTaskLimit"}, queued
    assert all(t["started"] is None and t["job_id"] for t in queued)
    running = next(t for t in seen if t["status"] == "RUNNING")
    assert running["started"] >= running["claimed"] - 1  # squeue's StartTime: whole seconds
    table = run_cov("status", run_id).stdout
    assert table.count("pending: JobArrayTaskLimit") == 2, table
    assert "job " in table and all(len(line) <= 80 for line in table.splitlines())
    assert run_cov("cancel", run_id).returncode == 0
    run_cov("wait", run_id, "--timeout", "60", "-q", timeout=90)


def _rows(table: str, name: str) -> List[str]:
    """The task rows called ``name`` of a `cov status` table, each with its note lines."""
    rows: List[str] = []
    for line in table.splitlines():
        words = line.split()
        if len(words) > 1 and words[0].isdigit():
            rows.append(line if words[1] == name else "")
        elif rows and rows[-1] and line.startswith("    "):
            rows[-1] += " " + line.strip()
    return [row for row in rows if row]


def test_held_array_elements_and_pilot_blocks_show_their_job_and_reason(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:  # noqa: F811
    """An array submitted held (``--hold``): every element QUEUED with its own ``job A_i`` and
    Slurm's reason JobHeldUser, though Slurm keeps them in the one record of the array; one
    element released runs alone and the others stay held. A pilot run whose block is held: its
    tasks say which block job they wait for and why, in the table too."""
    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, partition="debug",
                                                        use_srun=False,
                                                        options={"hold": True}))
        def element(i):
            return i

        @ct.lattice
        def held_array():
            return [element(i) for i in range(3)]
        """)
    home = slurm_home

    def elements() -> Any:
        table = run_cov("status", run_id).stdout
        rows = _rows(table, "element")
        return (table, rows) if len(rows) == 3 and all(
            "QUEUED" in row and "pending: JobHeldUser" in row for row in rows) else None

    table, rows = _until(elements, timeout=60, what="three held elements in cov status")
    jobs = sorted(j for ids in _handles(home, run_id).values() for j in ids)
    array = jobs[0].split("_")[0]  # never started: in the one record of the array
    assert jobs == [f"{array}_{i}" for i in range(3)], jobs
    assert sorted(next(w for w in row.split() if "_" in w) for row in rows) == jobs, table
    data = json.loads(run_cov("status", run_id, "--json").stdout)
    tasks = {t["job_id"]: t for t in data["tasks"] if t["name"] == "element"}
    assert sorted(tasks) == jobs and {t["reason"] for t in tasks.values()} == {"JobHeldUser"}
    subprocess.run(["scontrol", "release", jobs[1]], check=True)
    _until(lambda: tasks_by_status(run_cov, run_id) == {
        jobs[0]: "QUEUED", jobs[1]: "COMPLETED", jobs[2]: "QUEUED"}, timeout=60,
        what="the released element done, the others still held")
    table = run_cov("status", run_id).stdout
    assert [row for row in _rows(table, "element") if "pending: JobHeldUser" in row] == [
        row for row in _rows(table, "element") if jobs[1] not in row], table
    for job in (jobs[0], jobs[2]):
        subprocess.run(["scontrol", "release", job], check=True)
    assert wait_status(run_cov, run_id, timeout=60)["status"] == "COMPLETED"

    pilot_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor=ct.executor.SlurmExecutor(
            poll_freq=0.3, use_srun=False, options={"partition": "debug", "hold": True},
            pilot={"max_blocks": 1}))
        def pooled(i):
            return i

        @ct.lattice
        def held_block():
            return [pooled(i) for i in range(2)]
        """)

    def waiting() -> Any:
        rows = _rows(run_cov("status", pilot_id).stdout, "pooled")
        return rows if len(rows) == 2 and all(
            "QUEUED" in row and "(JobHeldUser)" in row for row in rows) else None

    rows = _until(waiting, timeout=60, what="the pilot's tasks waiting for their held block")
    (block,) = {found for row in rows
                for found in re.findall(r"waiting for pilot block job (\d+) \(JobHeldUser\)", row)}
    assert len(rows) == 2 and _squeue(block) == {block: "PENDING"}, rows
    subprocess.run(["scontrol", "release", block], check=True)
    assert wait_status(run_cov, pilot_id, timeout=90)["status"] == "COMPLETED"


def tasks_by_status(run_cov: Callable, run_id: str) -> Dict[str, str]:
    data = json.loads(run_cov("status", run_id, "--json").stdout)
    return {t["job_id"]: t["status"] for t in data["tasks"] if t["name"] == "element"}
