"""Where the pilot mode's queue and blocks' files are, and the few moves made on them.

``PilotFiles``: in the run directory itself, on the filesystem the compute nodes share (the
login-node mode, and SSH with ``shared_filesystem``). ``pilot_remote.RemotePilotFiles`` keeps
the same files in the cluster's copy of the run directory, through SSH. The pilot backend only
moves tickets through these verbs, so that taking a ticket back stays a single ``unlink`` or
``rename`` wherever it is: it succeeds only if no block took the ticket first.

The runner reads its blocks (``pilot_blocks.Block``) from the local run directory in both
cases: through SSH, ``refresh`` first copies what the blocks wrote there (a mirror).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from runner import layout
from runner.backends.slurm.client import read_tail
from runner.backends.slurm.pilot_blocks import Block
from runner.backends.slurm.site import Identity, SharedSite
from runner.fs import atomic_write
from runner.outcome_pack import Location
from runner.packed_reads import PackTail

Ticket = Tuple[str, bytes]  # (file name <node>.<attempt>.pkl, the ticket's bytes)


class PilotFiles:
    """The queue and the blocks' files in the run directory (shared with the nodes)."""

    packs = True  # a format 2.0 run's blocks pack outcomes and logs (``packed``)

    def __init__(self, site: SharedSite) -> None:
        self.site = site
        self._tails: Dict[str, PackTail] = {}

    def prepare(self, run: str) -> None:
        """The run's first task: the shipped worker and pool files, and the queue."""
        self.site.prepare(run)
        os.makedirs(layout.pilot_queue_dir(run), exist_ok=True)

    def put(self, run: str, tickets: Sequence[Ticket]) -> None:
        """Tickets into the queue, each written under a temporary name and renamed there."""
        for name, data in tickets:
            atomic_write(os.path.join(layout.pilot_queue_dir(run), name), data)

    def take_back(self, run: str, names: Iterable[str]) -> Set[str]:
        """Remove tickets from the queue; the names removed (the others a block took)."""
        taken: Set[str] = set()
        for name in names:
            try:
                os.unlink(os.path.join(layout.pilot_queue_dir(run), name))
                taken.add(name)
            except FileNotFoundError:
                pass
        return taken

    def requeue(self, block: Block, tickets: Sequence[Ticket]) -> None:
        """Tickets of a block that is gone back into the queue (re-written: the fence may
        have changed), then out of its ``running/``."""
        for name, data in tickets:
            atomic_write(os.path.join(layout.pilot_queue_dir(block.run), name), data)
            _unlink(block.ticket_path(name))

    def discard(self, block: Block, names: Iterable[str]) -> None:
        for name in names:
            _unlink(block.ticket_path(name))

    def new_block(self, block: Block) -> None:
        """A block's directory, before its job is submitted (its output goes there)."""
        os.makedirs(block.path(layout.BLOCK_RUNNING))
        os.makedirs(block.path(layout.BLOCK_CANCEL))

    def stop(self, blocks: Sequence[Block]) -> None:
        for block in blocks:
            block.ask_to_stop()

    def cancel(self, block: Block, name: str) -> None:
        block.ask_to_cancel(name)

    def reattach(self, run: str, ticket: Ticket, placed: Callable[[], bool]) -> None:
        """An attempt a previous runner queued: if still queued it is taken back and written
        again (with this runner's fence); if it is nowhere (``placed``: no block runs it and
        no outcome is there) it is queued again."""
        name, data = ticket
        queued = os.path.join(layout.pilot_queue_dir(run), name)
        held = f"{queued}.held-{os.getpid()}"
        try:
            os.rename(queued, held)  # taken back from the queue: no block can take it now
        except OSError:
            held = ""
        if held or not placed():
            atomic_write(queued, data)
        if held:
            _unlink(held)

    def refresh(self, runs: Dict[str, List[int]], force: bool = False) -> None:
        """Bring the blocks' files and the outcomes up to date (here: they are in place)."""

    def current(self, run: str) -> bool:
        """Whether the run's block files are as the blocks left them (the last refresh
        worked): while not, a silent heartbeat means nothing."""
        return True

    def outcomes(self, run: str, nodes: Iterable[int], force: bool = False
                 ) -> Optional[Dict[int, Identity]]:
        return self.site.outcomes(run, nodes, force=force)

    def packed(self, run: str, force: bool = False) -> List[Tuple[Dict[str, Any], Location]]:
        """(header, location) of the outcome records the run's blocks appended to their
        packs since the last look (format 2.0); ``force``: list ``results/`` for new packs
        now."""
        tail = self._tails.get(run)
        if tail is None:
            tail = self._tails[run] = PackTail(layout.results_dir(run))
        return tail.new_records(relist=force)

    def forget(self, run: str) -> None:
        """The run is no longer served: its scan state goes."""
        self._tails.pop(run, None)

    def log_tail(self, block: Block) -> Tuple[str, str]:
        """(where, the end of) the block job's own output."""
        path = block.path(layout.BLOCK_LOG)
        return path, read_tail(path)

    def sweep(self) -> None:
        """Moves gathered during a round, in one go (through SSH; here they were made)."""
        self.site.sweep()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
