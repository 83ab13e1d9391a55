"""The runner's own pack files (format 2.0, ``runner.outcome_pack``): where the runner process
itself writes outcomes and logs that came from elsewhere, instead of one file per node.

* the SSH backend's threads, which receive each task's outcome and logs over the connection
  (``backends/ssh/attempt.py``), and
* a result-cache hit brought into a run (``runner.cache_hook``).

Each run gets this process's ``worker_pack.RunPacks`` (``results/pack-<runner pid>-<r>.bin``,
``logs/pack-<runner pid>-<r>.log``): one writer per file as for the pool's workers, the
writer's threads taking turns under a lock. The locations go into the outcome header the
runner ends the attempt with, and from there into its ``end`` event (``engine.end_event``),
which is the index readers use. A runner killed between an append and that event leaves a
whole record its successor finds by scanning (``packed_reads.PackScan``), or a torn tail that
scans stop at and nothing points to.
"""
from __future__ import annotations

import threading
from typing import Dict, Optional

from runner.outcome import OutcomeHeader
from runner.outcome_pack import LOG_LIMIT, RECORD_LIMIT, Location, encode_record
from runner.worker_pack import RunPacks

_lock = threading.Lock()
_runs: Dict[str, RunPacks] = {}


def _packs(run: str) -> RunPacks:
    packs = _runs.get(run)
    if packs is None:
        packs = _runs[run] = RunPacks(run)
    return packs


def record_fits(node: int, header: OutcomeHeader, payload: bytes) -> bool:
    """Whether the outcome goes to a pack (not too large, and not a sublattice's, whose file
    the runner replaces when the child run ends)."""
    return not header.get("child") and \
        len(encode_record({**header, "node": node}, payload)) <= RECORD_LIMIT


def append_outcome(run: str, node: int, header: OutcomeHeader, payload: bytes) -> OutcomeHeader:
    """Append node's outcome (``header`` and its pickled ``payload``) to this process's pack of
    ``run``; the header with ``node`` and its location, ``at``. The caller checked
    ``record_fits``; ``header`` should name its ``attempt`` (what a successor's scan of the
    packs looks for)."""
    header = dict(header)  # type: ignore[assignment]
    header.pop("at", None)
    header["node"] = node
    record = encode_record(header, payload)
    with _lock:
        at = _packs(run).outcomes.append_when_space(record)
    header["at"] = at
    return header


def append_log(run: str, data: bytes) -> Optional[Location]:
    """Append a stream's bytes to this process's logs pack of ``run``: its location, or None
    if it is empty or too large for a pack (it then keeps a file of its own)."""
    if not data or len(data) > LOG_LIMIT:
        return None
    with _lock:
        return _packs(run).logs.append_when_space(data)


def release(run: str) -> None:
    """The run ended (or is no longer served): close its pack files."""
    with _lock:
        packs = _runs.pop(run, None)
        if packs is not None:
            packs.close()


def close_all() -> None:
    with _lock:
        for packs in _runs.values():
            packs.close()
        _runs.clear()
