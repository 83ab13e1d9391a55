"""Files per task (format 2.0's pack files): on Lustre/NFS every file create is a
metadata-server round trip and users have inode quotas, so a 10,000-task run of small results
and short logs leaves at most 500 files in its run directory, and every reader still finds
each task's result and output."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

from runner.rundir import RunDir
from tests.fault.harness import Home

TASKS = 10_000
FILE_BOUND = 500

SCRIPT = Path(__file__).resolve().parents[2] / "workflows" / "printing_sweep.py"


def _files(path: str) -> int:
    return sum(len(files) + len(dirs) for _, dirs, files in os.walk(path))


def test_a_10000_task_run_leaves_at_most_500_files(home: Home) -> None:
    out = home.cov("dispatch", "-q", str(SCRIPT), "many", "-a", f"n={TASKS}", timeout=300)
    assert out.returncode == 0, out.stderr
    run = RunDir(home.path / out.stdout.strip().splitlines()[-1])
    home.start_runner("--workers", "2")
    done = home.cov("wait", run.dispatch_id, "--timeout", "900", "-q", timeout=960)
    assert done.returncode == 0, (done.stdout, done.stderr, home.runner_log_text())

    count = _files(str(run.path))
    assert count <= FILE_BOUND, f"{count} files and directories in the run directory"
    assert pickle.loads(run.output_bytes(run.manifest.output_node)) == sum(range(TASKS))
    echoes = [n for n in run.manifest.nodes if n.name == "echo"]
    values = run.read_outputs(n.id for n in echoes)
    assert len(values) == TASKS
    first, last = echoes[0], echoes[-1]
    assert pickle.loads(values[last.id]) == TASKS - 1
    logs = home.cov("logs", run.dispatch_id, str(last.id), "--stream", "stdout")
    assert logs.returncode == 0 and logs.stdout == f"task {TASKS - 1}\n"
    assert run.read_log(first.id, "stdout") == "task 0\n"


REUSED = 200


def _echoes_packed(run: RunDir) -> None:
    """Every echo task's result is found, in a pack (no file of its own)."""
    echoes = [n for n in run.manifest.nodes if n.name == "echo"]
    values = run.read_outputs(n.id for n in echoes)
    assert sorted(pickle.loads(v) for v in values.values()) == list(range(REUSED))
    assert all(run.outcome_is_packed(n.id) for n in echoes)
    assert pickle.loads(run.output_bytes(run.manifest.output_node)) == sum(range(REUSED))


def test_cache_hits_and_reused_results_leave_no_file_per_task(home: Home) -> None:
    """A rerun whose tasks all hit the result cache, and a redispatch reusing every result,
    pack what they take over: their run directories hold a handful of files, not one per
    task (format 1.0 linked each in as results/<node>.pkl)."""
    home.start_runner("--workers", "2")

    def finished(*command: str) -> RunDir:
        out = home.cov(*command, "-q", timeout=300)
        assert out.returncode == 0, out.stderr
        run_id = out.stdout.strip().splitlines()[-1]
        done = home.cov("wait", run_id, "--timeout", "300", "-q", timeout=360)
        assert done.returncode == 0, (done.stdout, done.stderr, home.runner_log_text())
        return RunDir(home.path / run_id)

    first = finished("dispatch", "--cache", str(SCRIPT), "many", "-a", f"n={REUSED}")
    run = finished("dispatch", "--cache", str(SCRIPT), "many", "-a", f"n={REUSED}")
    _echoes_packed(run)
    print("cached run files", _files(str(run.path)))  # -s
    assert _files(str(run.path)) <= 20, sorted(os.listdir(run.path / "results"))
    reused = finished("redispatch", first.dispatch_id, "--reuse")
    _echoes_packed(reused)
    print("reused run files", _files(str(reused.path)))
    assert _files(str(reused.path)) <= 20, sorted(os.listdir(reused.path / "results"))
