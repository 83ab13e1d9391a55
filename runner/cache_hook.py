"""Where the runner consults the result cache (``runner.cache``): when it is about to claim a
ready cache-enabled task (a hit is recorded completed, its result linked in, nothing run), and
when such a task completes (its result enters the cache). A format 2.0 run's hit is appended to
the runner's pack of the run (``runner.runner_packs``), as the SSH backend's outcomes are; a
format 1.0 run's (or one over the pack's record limit) is linked in as its own file.

Part of ``Runner`` (``runner.runner_base`` says how it is cut). A fault of the cache (a full
disk, a torn entry) is a miss or an entry not added, never a failed task.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

from runner import runner_packs
from runner.cache import cacheable
from runner.journal import ActiveRun
from runner.manifest_checks import packs_outcomes
from runner.runner_base import RunnerBase
from runner.state import COMPLETED, Event


class CacheHook(RunnerBase):
    """The runner's side of the result cache."""

    def _cache_key(self, run: ActiveRun, node_id: int) -> Optional[str]:
        """The key of a ready cache-enabled node that the cache holds, else None."""
        if not cacheable(run.manifest.node(node_id)):
            return None
        try:
            parts = self.cache.key_parts(run.dir, run.manifest, node_id)
            if parts is None:
                return None
            key = parts.key()
            return key if self.cache.has(key) else None
        except OSError:
            return None

    def _take_cached(self, run: ActiveRun, node_id: int, attempt: int, key: str) -> bool:
        """Finish the claimed ``node_id`` with the cached result ``key`` (False on a miss:
        the entry went meanwhile, and the node must run)."""
        at: Optional[List[Any]] = None
        try:
            entry = None
            if packs_outcomes(run.manifest.format_version):
                at, entry = self._take_packed(run, node_id, attempt, key)
            if entry is None:
                entry = self.cache.take(key, run.dir.result_path(node_id))
        except OSError:
            entry = None
        if entry is None:
            return False
        now = time.time()  # a cached node starts and ends at once, as a reused one does
        event: Event = {"ev": "end", "node": node_id, "status": COMPLETED, "attempt": attempt,
                        "start": now, "end": now, "reused": True,
                        "reused_from": str(entry.get("run")),
                        "cached_from": f"{entry.get('run')}/{entry.get('node')}"}
        if at is not None:
            event["at"] = at
        run.schedule.finish(node_id, COMPLETED)
        run.pending.append(event)
        self.wake()  # its children may be ready now: no file changes to wake the loop for them
        return True

    def _take_packed(self, run: ActiveRun, node_id: int, attempt: int, key: str
                     ) -> Tuple[Optional[List[Any]], Optional[Dict[str, Any]]]:
        """A format 2.0 run: the entry's record appended to the runner's pack of the run
        (``runner_packs``: no file per hit); (its location, the entry's index), or (None,
        None) for a miss or a record too large for a pack (then linked in as a file)."""
        found = self.cache.take_record(key)
        if found is None:
            return None, None
        entry, header, payload = found
        for field in ("at", "log_at", "node"):  # the entry's run's, not this one's
            header.pop(field, None)
        header["attempt"] = attempt
        if not runner_packs.record_fits(node_id, header, payload):  # type: ignore[arg-type]
            return None, None
        packed = runner_packs.append_outcome(run.path, node_id, header,  # type: ignore[arg-type]
                                             payload)
        self.cache.note_value(run.path, node_id, payload)  # its end event is not written yet
        return packed["at"], entry

    def _cache_result(self, run: ActiveRun, node: int, status: str,
                      at: Optional[List[Any]] = None) -> None:
        """A cache-enabled node that ran and completed: its result enters the cache."""
        spec = run.manifest.node(node)
        if status != COMPLETED or not cacheable(spec):
            return
        try:
            parts = self.cache.key_parts(run.dir, run.manifest, node)
            if parts is not None:
                # a packed one (format 2.0) becomes an entry of its own
                source = run.dir.outcome_bytes(node, at) if at else run.dir.result_path(node)
                if source is not None:
                    self.cache.add(parts, source, run.manifest.dispatch_id, node)
        except OSError as exc:
            self._log(f"run {run.manifest.dispatch_id}: node {node}'s result not cached: {exc}")
