"""Two pools of one block (``srun``'s tasks 0 and 1, as a block of ``nodes=2`` starts them):
one queue, one ``running/``, each pool its own started/heartbeat/exited. No Slurm needed: the
pools are started as ``srun`` would, with ``SLURM_PROCID`` and ``SLURM_STEP_NUM_TASKS``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List

from runner import layout
from runner.backends.slurm.pilot_blocks import Block
from tests.backends.test_pilot_pool import _header, _run_dir, _ticket, _value, mark


def _rank(run: Path, block: str, rank: int, idle: float = 1.0) -> subprocess.Popen:
    (run / layout.PILOT_BLOCKS / block).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": "2"}
    return subprocess.Popen([sys.executable, "-I", str(run / layout.slurm_shipped_rel(layout.POOL)),
                             str(run), block, "1", str(idle), "0", "srun"],
                            cwd="/", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_two_pools_of_one_block_each_ticket_once_and_the_block_exits_with_both(
        tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    marks = tmp_path / "marks"
    for node in range(60):
        _ticket(run, node, mark, str(marks), node)
    pools: List[subprocess.Popen] = [_rank(run, "b1", 0), _rank(run, "b1", 1, idle=3.0)]
    first = pools[0]
    first.communicate(timeout=120)
    block = Block(str(run), "b1")
    block.look(time.monotonic())
    assert block.started and block.pools == 2
    if pools[1].poll() is None:  # rank 1 idles longer: the block is not over before it is
        assert not block.exited()
    pools[1].communicate(timeout=120)
    assert all(p.returncode == 0 for p in pools)
    assert sorted(int(line) for line in marks.read_text().split()) == list(range(60))
    assert all(_value(run, node) == node for node in range(60))
    block.look(time.monotonic())
    assert block.exited() and block.workers == 2 and not block.tickets()
    for rank in (0, 1):
        started = json.loads((run / layout.PILOT_BLOCKS / "b1" /
                              layout.pool_file(layout.BLOCK_STARTED, rank)).read_text())
        assert (started["rank"], started["pools"]) == (rank, 2)


def test_a_cancel_reaches_the_pool_that_runs_the_task(tmp_path: Path) -> None:
    """The cancel request is in the block's shared cancel/: the pool not running the task
    leaves it for the one that does."""
    run = _run_dir(tmp_path)
    _ticket(run, 0, time.sleep, 60)
    _ticket(run, 1, time.sleep, 60)
    pools = [_rank(run, "b1", 0), _rank(run, "b1", 1)]
    running = run / layout.PILOT_BLOCKS / "b1" / layout.BLOCK_RUNNING
    deadline = time.monotonic() + 60
    while len(list(running.iterdir()) if running.is_dir() else []) < 2 and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # both workers have their ticket
    cancel = run / layout.PILOT_BLOCKS / "b1" / layout.BLOCK_CANCEL
    for node in (0, 1):
        (cancel / layout.attempt_name(node, 1)).touch()
    for proc in pools:
        proc.communicate(timeout=60)
    assert _header(run, 0)["reason"] == "cancelled" and _header(run, 1)["reason"] == "cancelled"
    assert not list(cancel.iterdir())
