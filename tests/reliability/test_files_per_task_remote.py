"""Files per task on the executors HPC users run on (format 2.0's pack files,
docs/run-directory.md): the SSH backend (the loopback sshd) and the Slurm pilot pool (the real
single-node Slurm) append small outcomes and short logs to pack files instead of making a file
or three per task, and every reader (``cov result``, ``cov logs``, ``Result``) still finds each
task's result and output through the ``end`` events' ``at``/``log_at``.

The bound is per task: a run of ``TASKS`` printing tasks leaves at most ``FIXED`` files and
directories plus ``PER_TASK`` per task (format 1.0 made two per task: an outcome and a log).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from runner import layout
from runner.packed_reads import PackTail
from runner.rundir import RunDir
from tests.infra.executors import (add_to_config, dispatch_script, printing_sweep_on, run_result,
                                   wait_status)
from tests.infra.fixtures import SSHHost

TASKS = int(os.environ.get("COV_TEST_TASKS", "200"))
FIXED = 60  # the run's own files, slurm/'s shipped modules, a block's directory ...
PER_TASK = 0.05  # 10 files for 200 tasks: none of them per task



def _files(path: Path) -> int:
    return sum(len(files) + len(dirs) for _, dirs, files in os.walk(path))


def _check_run(run_cov: Callable, home: Path, run_id: str) -> int:
    """Assert every task's result and output is found; the run directory's file count."""
    status = wait_status(run_cov, run_id, timeout=max(240, TASKS * 0.2))
    assert status["status"] == "COMPLETED", [t for t in status["tasks"] if t.get("error")][:2]
    assert run_result(run_cov, run_id) == sum(range(TASKS))
    run = RunDir(home / run_id)
    echoes = [n for n in run.manifest.nodes if n.name == "echo"]
    assert len(run.read_outputs(n.id for n in echoes)) == TASKS
    last = echoes[-1]
    logs = run_cov("logs", run_id, str(last.id), "--stream", "stdout")
    assert logs.returncode == 0 and logs.stdout == f"task {TASKS - 1}\n", logs
    assert run.read_log(echoes[0].id, "stdout") == "task 0\n"
    count = _files(home / run_id)
    print(f"{count} files and directories in the run directory of {TASKS} tasks")  # -s
    if os.environ.get("COV_TEST_LIST"):
        for top, dirs, files in os.walk(home / run_id):
            print(top, len(dirs), sorted(files)[:8])
    assert count <= FIXED + PER_TASK * TASKS, f"{count} files and directories for {TASKS} tasks"
    packed = [n for n in echoes if run.outcome_is_packed(n.id)]
    assert len(packed) == TASKS, f"{len(packed)} of {TASKS} outcomes packed"
    return count


def test_ssh_tasks_leave_no_file_per_task(cov_home: Path, run_cov: Callable,
                                          sshd_host: SSHHost, tmp_path: Path,
                                          monkeypatch) -> None:
    monkeypatch.setenv("COV_SSH_CONFIG", sshd_host.ssh_config)
    add_to_config("executors:\n  ssh:\n    remote_workdir: /tmp/cov-ssh-test-work\n")
    executor = f"ct.executor.SSHExecutor(hostname={sshd_host.name!r})"
    run_id = dispatch_script(run_cov, tmp_path, printing_sweep_on(executor),
                             "-a", f"n={TASKS}")
    _check_run(run_cov, cov_home, run_id)


def test_slurm_pilot_tasks_leave_no_file_per_task(slurm_home: Path, run_cov: Callable,
                                                  tmp_path: Path) -> None:
    executor = ("ct.executor.SlurmExecutor(poll_freq=0.3, use_srun=False, "
                "options={'partition': 'debug'}, "
                "pilot={'max_blocks': 1, 'workers': 2, 'idle_timeout': 5})")
    run_id = dispatch_script(run_cov, tmp_path, printing_sweep_on(executor),
                             "-a", f"n={TASKS}")
    _check_run(run_cov, slurm_home, run_id)
    # the echo tasks' packs are the block's two workers': one writer each, on the node
    echoes = {n.id for n in RunDir(slurm_home / run_id).manifest.nodes if n.name == "echo"}
    ends = [json.loads(line) for line in
            (slurm_home / run_id / layout.EVENTS).read_text().splitlines()
            if '"end"' in line]
    ends = [e for e in ends if e["node"] in echoes]
    assert 1 <= len({e["at"][0] for e in ends}) <= 2, {e["at"][0] for e in ends}
    assert all(e.get("log_at", {}).get("out") for e in ends)


SLOW = """
    @ct.electron(executor=ct.executor.SlurmExecutor(
        poll_freq=0.3, use_srun=False, options={'partition': 'debug'},
        pilot={'max_blocks': 1, 'workers': 2, 'idle_timeout': 5}))
    def slow(i):
        print("slow", i, flush=True)
        time.sleep(0.5)  # its output goes live (logs/<node>.out) while it runs
        return i

    @ct.lattice
    def slow_ones(n=12):
        return [slow(i) for i in range(n)]
    """


def test_slurm_pilot_tasks_whose_output_went_live_leave_no_log_file(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:
    """A pilot task that printed and ran a while had its output linked to
    ``logs/<node>.out`` (``cov logs -f``); at its end it is packed too, and that name goes
    once the end event points at the pack."""
    run_id = dispatch_script(run_cov, tmp_path, SLOW)
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == list(range(12))
    run = RunDir(slurm_home / run_id)
    slow = [n for n in run.manifest.nodes if n.name == "slow"]
    assert [run.read_log(n.id, "stdout") for n in slow] == [f"slow {i}\n" for i in range(12)]
    assert all(run.log_location(n.id, "stdout") is not None for n in slow)
    went_live = [h["node"] for h, _ in PackTail(str(run.results_dir)).new_records()
                 if h.get("live_packed")]
    assert len(went_live) == 12, went_live  # they did go live: the case under test
    left = [n for n in os.listdir(run.path / layout.LOGS) if not layout.is_pack_name(
        n, layout.LOG_PACK_SUFFIX)]
    assert left == [], left
