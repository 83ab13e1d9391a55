"""The pilot queue through SSH on its own (``pilot_remote.RemotePilotFiles``): the loopback sshd
as the cluster's login node, no Slurm. A "block" here is the test writing the files a pool
writes, in a remote root whose path has a blank and a quote (every remote path is quoted)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator, Tuple

import pytest

from runner import layout
from runner.backends.slurm.pilot_blocks import Block
from runner.backends.slurm.pilot_remote import RemotePilotFiles
from runner.backends.slurm.remote import RemoteShell, RemoteSite
from runner.ssh import HostSpec, SSHPool


@pytest.fixture
def files(sshd_host: Any, tmp_path: Path) -> Iterator[Tuple[RemotePilotFiles, str, Path]]:
    """(the files object, the local run directory, the run's root on the "cluster")."""
    user = sshd_host.username
    base = Path(f"/home/{user}/cov pilot 'q' {uuid.uuid4().hex[:6]}")
    base.mkdir()
    subprocess.run(["chown", f"{user}:", str(base)], check=True)
    pool = SSHPool()
    host = pool.host(HostSpec(sshd_host.name, ssh_config=sshd_host.ssh_config))
    run = tmp_path / "run-1"
    for sub in (layout.RESULTS, layout.LOGS):
        (run / sub).mkdir(parents=True)
    site = RemoteSite(RemoteShell(host), str(base), check_every=0.0)
    pilot = RemotePilotFiles(site)
    pilot.prepare(str(run))
    try:
        yield pilot, str(run), base / run.name
    finally:
        host.close()
        shutil.rmtree(base, ignore_errors=True)


def _as_pool(path: Path, data: bytes = b"") -> None:
    """Write a file on the "cluster" as its user would (the block's pool)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_tickets_go_up_and_come_back_only_if_no_block_took_them(files: Any) -> None:
    pilot, run, root = files
    names = [layout.ticket_file(n, 1) for n in range(5)] + [layout.ticket_file(9, 2)]
    _as_pool(root / layout.outcome_rel(9), b"attempt 1's")  # a retry: the old outcome goes
    pilot.put(run, [(name, name.encode()) for name in names])
    queue = root / layout.PILOT_QUEUE
    assert sorted(p.name for p in queue.iterdir()) == sorted(names)  # nothing half-written
    assert (queue / names[2]).read_bytes() == names[2].encode()
    assert not (root / layout.outcome_rel(9)).exists()
    assert [p.name for p in queue.parent.iterdir() if p.name not in ("queue", "blocks")] == []
    block = Block(run, "b1")
    pilot.new_block(block)
    os.rename(queue / names[0], root / layout.PILOT_BLOCKS / "b1" / layout.BLOCK_RUNNING /
              names[0])  # the block took it first
    assert pilot.take_back(run, names[:3]) == set(names[1:3])
    assert sorted(p.name for p in queue.iterdir()) == sorted(names[3:])


def test_refresh_mirrors_the_blocks_and_brings_outcomes_and_logs(files: Any) -> None:
    pilot, run, root = files
    block = Block(run, "b1")
    pilot.new_block(block)
    remote_block = root / layout.PILOT_BLOCKS / "b1"
    started = {"host": "node7", "job_id": "42", "workers": 2, "pools": 2}
    _as_pool(remote_block / layout.BLOCK_STARTED, json.dumps(started).encode())
    _as_pool(remote_block / layout.pool_file(layout.BLOCK_STARTED, 1),
             json.dumps({**started, "workers": 3}).encode())
    _as_pool(remote_block / layout.BLOCK_HEARTBEAT)
    _as_pool(remote_block / layout.pool_file(layout.BLOCK_HEARTBEAT, 1))
    _as_pool(remote_block / layout.BLOCK_RUNNING / layout.ticket_file(4, 1))
    _as_pool(root / layout.outcome_rel(3), b"outcome of 3")
    _as_pool(root / layout.log_rel(3, "out"), b"printed by 3\n")
    _as_pool(root / layout.outcome_rel(8), b"not asked for")
    pilot.refresh({run: [3, 4]}, force=True)
    assert pilot.current(run)
    found = pilot.outcomes(run, [3, 4])
    assert found is not None and set(found) == {3}
    assert Path(layout.outcome_path(run, 3)).read_bytes() == b"outcome of 3"
    assert Path(layout.log_path(run, 3, "out")).read_text() == "printed by 3\n"
    assert not Path(layout.outcome_path(run, 8)).exists()
    block.look(1.0)
    assert (block.started, block.host, block.job_id, block.pools, block.workers) == \
        (True, "node7", "42", 2, 5)
    assert block.tickets() == {layout.ticket_file(4, 1)} and not block.exited()
    # rank 0 exits first: the block is not over until rank 1 has too
    _as_pool(remote_block / layout.BLOCK_EXITED, b'{"why": "idle"}')
    pilot.refresh({run: [4]}, force=True)
    assert not block.exited()
    _as_pool(remote_block / layout.pool_file(layout.BLOCK_EXITED, 1), b'{"why": "terminated"}')
    pilot.refresh({run: [4]}, force=True)
    assert block.exited() and block.tickets() == {layout.ticket_file(4, 1)}
    # the block is gone: its ticket goes back to the queue, from the mirror too
    pilot.requeue(block, [(layout.ticket_file(4, 1), b"")])
    assert [p.name for p in (root / layout.PILOT_QUEUE).iterdir()] == [layout.ticket_file(4, 1)]
    assert not block.tickets()
    pilot.stop([block])
    assert (remote_block / layout.BLOCK_STOP).exists()


def test_a_reattached_ticket_found_nowhere_is_queued_again(files: Any) -> None:
    pilot, run, root = files
    block = Block(run, "b1")
    pilot.new_block(block)
    queued, running, finished, lost = (layout.ticket_file(n, 1) for n in range(4))
    pilot.put(run, [(queued, b"q")])
    _as_pool(root / layout.PILOT_BLOCKS / "b1" / layout.BLOCK_RUNNING / running)
    _as_pool(root / layout.outcome_rel(2), b"done")
    for name in (queued, running, finished, lost):
        pilot.reattach(run, (name, name.encode()), lambda: False)
    pilot.refresh({run: [0, 1, 2, 3]})  # the look runs in a thread of its own ...
    pilot.refresh({run: [0, 1, 2, 3]}, force=True)  # ... and is taken in by the next call
    assert sorted(p.name for p in (root / layout.PILOT_QUEUE).iterdir()) == sorted([queued, lost])
    assert (root / layout.PILOT_QUEUE / lost).read_bytes() == lost.encode()


def test_a_failed_look_marks_the_run_not_current_and_waits_before_the_next(files: Any) -> None:
    """While the cluster's copy cannot be read, the mirror is not current (a block's silent
    heartbeat then means nothing) and the next look waits ``RETRY_AFTER``."""
    pilot, run, root = files
    pilot.refresh({run: [1]}, force=True)
    assert pilot.current(run)
    shutil.rmtree(root)
    pilot.refresh({run: [1]}, force=True)
    assert not pilot.current(run)
    root.mkdir()
    pilot.refresh({run: [1]})  # too soon: not looked at again
    assert not pilot.current(run)
    pilot.refresh({run: [1]}, force=True)
    assert pilot.current(run)
