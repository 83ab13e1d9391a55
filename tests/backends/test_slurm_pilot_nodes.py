"""Pilot blocks of several pools: ``pilot={"nodes": N}`` starts one pool per node with
``srun`` inside the block, each taking tickets from the run's one queue.

The test Slurm has one node, so what runs for real here is the ``srun`` launch path with one
node: one pool (``nodes=1`` with ``ntasks-per-node=1``), and two pools on the one node
(``ntasks-per-node=2``) sharing the queue. Blocks spread over several real nodes are not run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from runner import layout
from runner.backends.slurm.pilot_script import render_block_script
from runner.backends.slurm.pilot_settings import PilotError, parse_pilot
from runner.backends.slurm.settings import parse_settings
from tests.backends.test_slurm import _until
from tests.backends.test_slurm_pilot import _blocks
from tests.infra.executors import dispatch_script, run_result, wait_status


def test_nodes_setting_is_validated_and_starts_a_pool_per_node_with_srun() -> None:
    assert parse_pilot(True).nodes == 1 and parse_pilot({"nodes": 4}).nodes == 4
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(PilotError, match="pilot nodes must be a whole number >= 1"):
            parse_pilot({"nodes": bad})
    settings = parse_settings({"options": {"partition": "debug"}})
    text = render_block_script(settings, parse_pilot({"nodes": 3, "workers": 8}), root="/r x",
                               dispatch_id="d1", block="b1", name="cov-d1-pilot",
                               python="python3")
    assert "#SBATCH --nodes=3\n" in text and "#SBATCH --ntasks-per-node=1\n" in text
    assert "#SBATCH --cpus-per-task=8\n" in text
    launch = next(line for line in text.splitlines() if "pilot_pool.py" in line)
    assert launch.startswith("srun --kill-on-bad-exit=1 ") and launch.endswith(" srun")
    # one node, no tasks asked for: the pool runs in the batch step itself, as before
    single = render_block_script(settings, parse_pilot({"workers": 8}), root="/r",
                                 dispatch_id="d1", block="b1", name="n", python="python3")
    assert "srun" not in single and "--nodes" not in single and "ntasks" not in single
    # options that ask for tasks take the srun path on one node; theirs are kept
    tasks = render_block_script(parse_settings({"options": {"ntasks_per_node": 2}}),
                                parse_pilot({"workers": 1}), root="/r", dispatch_id="d1",
                                block="b1", name="n", python="python3")
    assert "#SBATCH --ntasks-per-node=2\n" in tasks and "--ntasks-per-node=1" not in tasks
    assert "srun --kill-on-bad-exit=1" in tasks


SWEEP = """
    @ct.electron(executor=ct.executor.SlurmExecutor(
        poll_freq=0.3, use_srun=False,
        options={{"partition": "debug", "ntasks-per-node": {per_node}}},
        pilot={{"max_blocks": 1, "workers": 1, "nodes": 1, "idle_timeout": 5}}))
    def where(i, pause):
        marks = {marks!r}
        rank, step = os.environ.get("SLURM_PROCID"), os.environ.get("SLURM_STEP_ID")
        open(os.path.join(marks, f"{{i}}-{{rank}}-{{os.getpid()}}-{{time.time_ns()}}"),
             "w").close()
        time.sleep(pause)
        return [i, rank, step]

    @ct.lattice
    def sweep(n={n}, pause={pause}):
        return [where(i, pause) for i in range(n)]
    """


def _marks(marks: Path) -> Tuple[Dict[int, int], Dict[str, int]]:
    """(executions per task, tasks per pool rank)."""
    runs: Dict[int, int] = {}
    ranks: Dict[str, int] = {}
    for mark in marks.iterdir():
        item, rank = mark.name.split("-")[:2]
        runs[int(item)] = runs.get(int(item), 0) + 1
        ranks[rank] = ranks.get(rank, 0) + 1
    return runs, ranks


def _run(slurm_home: Path, run_cov: Callable, tmp_path: Path, per_node: int, n: int,
         pause: float) -> Tuple[str, List[list], Path]:
    marks = tmp_path / "marks"
    marks.mkdir()
    run_id = dispatch_script(run_cov, tmp_path, SWEEP.format(per_node=per_node,
                                                             marks=str(marks), n=n, pause=pause))
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", status
    return run_id, run_result(run_cov, run_id), marks


def test_block_of_one_node_through_srun(slurm_home: Path, run_cov: Callable,  # noqa: F811
                                        tmp_path: Path) -> None:
    run_id, rows, marks = _run(slurm_home, run_cov, tmp_path, per_node=1, n=8, pause=0.05)
    assert [r[0] for r in rows] == list(range(8))
    assert {(r[1], r[2]) for r in rows} == {("0", "0")}  # rank 0 of step 0: under srun
    assert _marks(marks)[0] == {i: 1 for i in range(8)}
    (block,) = _blocks(slurm_home, run_id)
    started = json.loads((block / layout.BLOCK_STARTED).read_text())
    assert (started["rank"], started["pools"]) == (0, 1)
    _until(lambda: (block / layout.BLOCK_EXITED).exists(), what="the block to exit")


def test_two_pools_of_one_block_share_the_queue_and_run_each_task_once(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:  # noqa: F811
    run_id, rows, marks = _run(slurm_home, run_cov, tmp_path, per_node=2, n=40, pause=0.2)
    assert [r[0] for r in rows] == list(range(40))
    runs, ranks = _marks(marks)
    assert runs == {i: 1 for i in range(40)}  # each ticket taken by one pool only
    assert set(ranks) == {"0", "1"}, ranks  # both pools took tickets from the queue
    (block,) = _blocks(slurm_home, run_id)
    for rank in (0, 1):
        info = json.loads((block / layout.pool_file(layout.BLOCK_STARTED, rank)).read_text())
        assert (info["rank"], info["pools"], info["workers"]) == (rank, 2, 1)
    for rank in (0, 1):  # the run ended: both pools stop
        _until(lambda: (block / layout.pool_file(layout.BLOCK_EXITED, rank)).exists(),
               what=f"pool {rank} to exit")
    assert not list((block / layout.BLOCK_RUNNING).iterdir())
