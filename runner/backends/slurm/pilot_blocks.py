"""A pilot block as the runner sees it, read from its directory; and how many blocks to want.

A ``Block`` is one Slurm job running ``runner/pilot_pool.py`` for one run. Everything the
runner knows of it comes from files the pool writes in ``slurm/pilot/blocks/<id>/`` (see
``runner.pilot_pool``) and from Slurm's answers:

* ``started``: ``started.json`` appeared (host, workers); until then the block is pending;
* ``pools``: how many pools the block runs (one per Slurm task when started with ``srun``,
  from ``started.json``); each writes its own ``started``/``heartbeat``/``exited``
  (``layout.pool_file``), ``workers`` is their sum;
* ``beat`` / ``beat_seen``: the heartbeats' mtimes and when (on the runner's clock) one last
  changed: a clock of the runner's own, so a node's clock skew cannot make a block look dead;
* ``running``: the ticket names last seen in ``running/``;
* ``gone``: why the block is over ("" while it lives): ``exited`` (the pool said so), Slurm's
  final state, or a silent heartbeat; ``recovered`` once its leftover tickets were handled.

``wanted_blocks`` is the scaling policy (pure).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Set, Tuple

from runner import layout


@dataclass
class Block:
    run: str
    id: str
    job_id: str = ""
    host: str = ""
    workers: int = 0
    pools: int = 1
    started: bool = False
    state: str = ""  # Slurm's last answer
    reason: str = ""  # a PENDING block's reason (Resources, Priority ...)
    beat: Optional[Tuple[int, ...]] = None
    beat_seen: float = 0.0
    running: Set[str] = field(default_factory=set)
    gone: str = ""
    gone_at: float = 0.0
    recovered: bool = False

    @property
    def dir(self) -> str:
        return layout.pilot_block_dir(self.run, self.id)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def ticket_path(self, name: str) -> str:
        """Where a ticket this block took is (``running/<name>``)."""
        return os.path.join(self.dir, layout.BLOCK_RUNNING, name)

    def look(self, now: float) -> None:
        """Read what the pool wrote: its start, its heartbeat, the tickets it runs."""
        if not self.started:
            info = read_json(self.path(layout.BLOCK_STARTED))
            if info is None:
                return
            self.started = True
            self.host = str(info.get("host") or "")
            self.workers = int(info.get("workers") or 0)
            self.pools = max(1, int(info.get("pools") or 1))
            self.job_id = self.job_id or str(info.get("job_id") or "")
            self.beat_seen = now
        if self.pools > 1:  # the other pools' workers, as they start
            self.workers = sum(int((read_json(self.path(layout.pool_file(
                layout.BLOCK_STARTED, rank))) or {}).get("workers") or 0)
                for rank in range(self.pools))
        beats = []
        for rank in range(self.pools):
            try:
                beats.append(os.stat(self.path(layout.pool_file(
                    layout.BLOCK_HEARTBEAT, rank))).st_mtime_ns)
            except OSError:
                beats.append(0)
        beat = tuple(beats)
        if beat != self.beat:
            self.beat, self.beat_seen = beat, now
        self.running = self.tickets()

    def tickets(self) -> Set[str]:
        try:
            names = os.listdir(self.path(layout.BLOCK_RUNNING))
        except OSError:
            return set()
        return {n for n in names if layout.ticket_task(n) is not None}

    def exited(self) -> bool:
        """Every pool of the block said it exited (it takes no ticket any more)."""
        if self.pools == 1 and not self.started:  # a restarted runner's look: how many?
            self.pools = max(1, int((read_json(self.path(layout.BLOCK_STARTED)) or {}).get(
                "pools") or 1))
        return all(os.path.exists(self.path(layout.pool_file(layout.BLOCK_EXITED, rank)))
                   for rank in range(self.pools))

    def ask_to_stop(self) -> None:
        try:
            open(self.path(layout.BLOCK_STOP), "a").close()
        except OSError:
            pass

    def ask_to_cancel(self, ticket: str) -> None:
        found = layout.ticket_task(ticket)
        if found is None:
            return
        try:
            open(os.path.join(self.path(layout.BLOCK_CANCEL), layout.attempt_name(*found)),
                 "a").close()
        except OSError:
            pass


def read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def blocks_on_disk(run: str) -> Dict[str, Block]:
    """The blocks of a run that have not said they exited (a restarted runner's view)."""
    found: Dict[str, Block] = {}
    base = os.path.join(run, layout.PILOT_BLOCKS)
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return found
    for name in names:
        block = Block(run, name)
        info = read_json(block.path(layout.BLOCK_INFO)) or \
            read_json(block.path(layout.BLOCK_STARTED)) or {}
        block.job_id = str(info.get("job_id") or "")
        if not block.job_id or (block.exited() and not block.tickets()):
            continue  # over, or never submitted (its runner died before sbatch answered)
        found[name] = block
    return found


def wanted_blocks(tasks: int, per_block: int, min_blocks: int, max_blocks: int) -> int:
    """Blocks a run's ``tasks`` (queued or running) call for: one per ``per_block`` of them,
    at least ``min_blocks`` while there are any, at most ``max_blocks``; none without tasks."""
    if tasks <= 0:
        return 0
    return min(max_blocks, max(min_blocks, math.ceil(tasks / max(1, per_block))))
