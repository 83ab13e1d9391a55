"""A Slurm pilot block's workers in a format 2.0 run (``runner.pilot_pool`` runs them): their
tasks' outcomes and short logs go to pack files of their own (``runner.worker_pack``), their
output through the local pool's capture (``runner.worker_capture``, which also keeps what a
worker that died had printed); and whether such a worker had packed its task's outcome.

Shipped beside ``worker.py`` with the pool (``worker.SHIPPED_BESIDE``): stdlib only, importing
nothing of cov's but shipped modules.
"""
from __future__ import annotations

import os
from typing import Any, Callable, List, Tuple

if __package__:
    from runner import layout
    from runner.outcome_pack import scan
    from runner.worker_capture import Capture
    from runner.worker_pack import RunPacks
else:  # ``python pilot_pool.py ...`` on a node: shipped beside it
    import layout  # type: ignore[no-redef,import-not-found]
    from outcome_pack import scan  # type: ignore[no-redef,import-not-found]
    from worker_capture import Capture  # type: ignore[no-redef,import-not-found]
    from worker_pack import RunPacks  # type: ignore[no-redef,import-not-found]


class PackedSlot:
    """A worker's tasks of a format 2.0 run: their output goes to the worker's capture files
    (``worker_capture.Capture``, as in the local pool: linked to ``logs/<node>.out|err`` once
    a task has printed for a while, so that ``cov logs -f`` follows it), short logs and small
    outcomes are appended to the worker's own pack files (``worker_pack.RunPacks``), flushed
    at each append so that the runner on another machine sees them. The record's header says
    where its logs are (``log_at``): the runner reads it from the pack."""

    def __init__(self, root: str, pipes: List[Tuple[int, int]],
                 run_bundle: Callable[[str, int, int], Tuple[Any, bytes]],
                 before: Callable[[], None]) -> None:
        """``run_bundle`` and ``before``: the worker's (``worker.run_bundle``,
        ``worker.watch_time_limit``), passed in by the pool, which imports the worker."""
        self.run_bundle, self.before = run_bundle, before
        self.logs = layout.logs_dir(root)
        self.packs = RunPacks(root, sync=True)
        self.capture = Capture(pipes)  # the pool holds their read ends too

    def run(self, path: str, node: int, attempt: int) -> None:
        self.capture.point_at(self.logs)
        self.before()
        self.capture.begin(node)
        header, payload = self.run_bundle(path, 1, 2)
        log_at = self.capture.finish(node, self.packs.logs, pack_live=True)
        header["attempt"] = attempt
        if log_at:
            header["log_at"] = log_at
        if self.capture.live_packed:  # their live names: the runner removes them
            header["live_packed"] = self.capture.live_packed
        self.packs.write_outcome(node, header, payload, None)

    def close(self) -> None:
        self.capture.close()
        self.packs.close()


def packed_by(root: str, pid: int, node: int, attempt: int) -> bool:
    """Whether the worker ``pid`` appended a whole record of ``node``'s ``attempt`` to its
    outcome pack (it died after that, before it answered)."""
    results = layout.results_dir(root)
    prefix = layout.pack_file(f"{pid}-", "")
    try:
        names = [n for n in os.listdir(results) if n.startswith(prefix)
                 and layout.is_pack_name(n, layout.OUTCOME_PACK_SUFFIX)]
    except OSError:
        return False
    for name in names:
        try:
            fd = os.open(os.path.join(results, name), os.O_RDONLY)
        except OSError:
            continue
        try:
            if any(h.get("node") == node and h.get("attempt") == attempt
                   for _, _, h in scan(fd)):
                return True
        finally:
            os.close(fd)
    return False
