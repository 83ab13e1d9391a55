"""Slurm tasks are QUEUED, with the scheduler's PENDING reason, until their job runs.

The parsers and the job table first (no cluster), then the session's real single-node cluster
(run these under ``flock /tmp/cov-slurm-tests.lock``, as tests/backends/test_slurm.py).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from runner.backends.base import Task
from runner.backends.slurm.client import parse_squeue
from runner.backends.slurm.jobs import JobTable, SlurmJob
from tests.backends.test_slurm import _until
from tests.infra.executors import dispatch_script


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
