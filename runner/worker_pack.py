"""A pool worker's pack files in one run (format 2.0, ``runner.outcome_pack``): it appends its
small outcomes to ``results/pack-<pid>-<random>.bin`` and its tasks' short logs to
``logs/pack-<pid>-<random>.log`` (``worker_capture``), and reads its inputs' packed records
from any worker's pack.

Stdlib only, importing nothing of cov's but the worker's modules: the pool may run in another
interpreter than the runner's, and a Slurm pilot block's workers use it on their node.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

if __package__:
    from runner import layout
    from runner.outcome import OutcomeHeader, write_outcome_when_space
    from runner.outcome_pack import (LOG_LIMIT, RECORD_LIMIT, PackWriter, encode_record,
                                     parse_record, read_at, valid_location)
else:  # shipped beside the worker to a Slurm pilot block's node (``worker.SHIPPED_BESIDE``)
    import layout  # type: ignore[no-redef,import-not-found]
    from outcome import (OutcomeHeader,  # type: ignore[no-redef,import-not-found]
                         write_outcome_when_space)
    from outcome_pack import (LOG_LIMIT, RECORD_LIMIT,  # type: ignore[no-redef,import-not-found]
                              PackWriter, encode_record, parse_record, read_at, valid_location)


class RunPacks:
    """One run's pack writers of this worker (made on their first append) and the packs it
    read from (kept open: they only grow). ``sync``: ``PackWriter``'s (a pilot block's node)."""

    def __init__(self, run: str, sync: bool = False) -> None:
        self.run = run
        self.outcomes = PackWriter(layout.results_dir(run), layout.OUTCOME_PACK_SUFFIX, sync)
        self.logs = PackWriter(layout.logs_dir(run), layout.LOG_PACK_SUFFIX, sync)
        self.readers: Dict[str, int] = {}

    def read_payload(self, node: int, at: Any) -> Optional[bytes]:
        """The pickled value of ``node``'s successful record at ``at``, or None."""
        loc = valid_location(at, layout.OUTCOME_PACK_SUFFIX)
        if loc is None:
            return None
        name, offset, length = loc
        fd = self.readers.get(name)
        if fd is None:
            if len(self.readers) > 64:
                self.close_readers()
            try:
                fd = self.readers[name] = os.open(os.path.join(layout.results_dir(self.run),
                                                               name), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        header, payload = parse_record(read_at(fd, offset, length))
        if header is None or header.get("node") != node or not header.get("ok"):
            return None
        return payload

    def write_outcome(self, node: int, header: OutcomeHeader, payload: bytes,
                      spare: Optional[Tuple[int, str]]) -> None:
        """Append the outcome as a record (``header`` gets its location, ``at``), or, for a
        large one or a sublattice's (whose file the runner replaces), write its own file."""
        header["node"] = node
        record = encode_record(header, payload)
        if len(record) > RECORD_LIMIT or header.get("child"):
            write_outcome_when_space(layout.outcome_path(self.run, node), header, payload, spare)
            return
        if spare is not None:  # made before the worker knew this run packs
            os.close(spare[0])
            try:
                os.unlink(spare[1])
            except OSError:
                pass
        header["at"] = self.outcomes.append_when_space(record)

    def close_readers(self) -> None:
        for fd in self.readers.values():
            os.close(fd)
        self.readers.clear()

    def close(self) -> None:
        self.outcomes.close()
        self.logs.close()
        self.close_readers()


def log_fits(size: int) -> bool:
    """Whether a stream's output of ``size`` bytes goes to the logs pack."""
    return 0 < size <= LOG_LIMIT


LogAt = Dict[str, List[Any]]
