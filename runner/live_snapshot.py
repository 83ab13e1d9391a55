"""When a runner snapshots a run that is still running (``runner.derived``), for its readers.

Without a snapshot a reader of a live run parses the whole manifest and folds the whole event
log: ~4 s of CPU for a ``cov status --json`` of a 100,000-node run, against ~1 s with one.
With a snapshot it folds only the events appended since. But a snapshot costs the runner what
it saves a reader (~1.5 s at 100,000 nodes on a loaded machine), and the runner's time is the
run's. So, checked once per heartbeat for each run served:

* a snapshot is *due* when the run's log has grown by ``GROWTH`` of what the last one stands
  for, and by at least ``MIN_BYTES`` (a run whose log never reaches that is never snapshotted
  live: it reads fast without, its readers fold the little there is);
* a due snapshot is written at once if the run is *quiet* (its log did not grow since the
  previous heartbeat: the runner waits for long tasks, and the write takes nothing from
  them), else once the runner has spent at most ``SHARE`` of its time on writing since the
  last write: no sooner than ``1 / SHARE`` times the last one's duration after it (before the
  first, after serving the run for as long; its duration estimated from the node count);
* a quiet run's snapshot is also brought up to date when it is behind by less than is due,
  at most ``QUIET_SHARE`` of the time (a run waiting on its last tasks is then read whole
  from its snapshot, whatever was appended since the last one was due).

A finished run is snapshotted when the runner retires it, as before; a failed write (a
read-only run directory, a full disk) is logged by the writer and not tried again until the
log has grown again.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, Optional

from runner.journal import ActiveRun

GROWTH = 0.10  # of the log a snapshot stands for: a reader folds at most ~10 % of the log
MIN_BYTES = 256 * 1024  # ~1,500 events
SHARE = 0.025  # of the runner's time, at most, for snapshots of runs not quiet
QUIET_SHARE = 0.10  # ... and for bringing a quiet run's snapshot up to date
SECONDS_PER_NODE = 15e-6  # a snapshot's cost before one was measured (1.5 s at 100,000)


class _Progress:
    """What the policy remembers of one run."""

    def __init__(self, now: float, nodes: int) -> None:
        self.covered = 0  # log bytes the last snapshot stands for (0: none written)
        self.seen: Optional[int] = None  # log bytes at the previous heartbeat
        self.written_at = now  # end of the last write (or when the run was first seen)
        self.cost = nodes * SECONDS_PER_NODE  # duration of the last write (or its estimate)


class LiveSnapshots:
    """The policy's memory of the runs one runner serves."""

    def __init__(self) -> None:
        self._runs: Dict[str, _Progress] = {}

    def tick(self, runs: Iterable[ActiveRun], write: Callable[[ActiveRun], None],
             now: Optional[float] = None) -> None:
        """Write (``write(run)``) the snapshots that are due among ``runs`` (those served);
        forget the runs no longer served."""
        now = time.monotonic() if now is None else now
        served = {}
        for run in runs:
            progress = self._runs.get(run.path) or _Progress(now, len(run.manifest.nodes))
            served[run.path] = progress
            if run.state.finished:
                continue  # retired (and snapshotted) by the runner
            identity = run.dir.events_identity()
            if identity is None:
                continue
            size = identity[0]
            quiet = progress.seen == size
            progress.seen = size
            grown = size - progress.covered
            if grown <= 0 or (progress.covered == 0 and grown < MIN_BYTES):
                continue
            due = grown >= MIN_BYTES and grown >= GROWTH * progress.covered
            since = now - progress.written_at
            if not (due and (quiet or since >= progress.cost / SHARE)
                    or quiet and since >= progress.cost / QUIET_SHARE):
                continue
            start = time.monotonic()
            write(run)
            progress.written_at = time.monotonic()
            progress.cost = progress.written_at - start
            progress.covered = size
            now = progress.written_at
        self._runs = served
