"""Slurm pilot mode: a few allocations ("blocks") each run a pool that takes many tasks.

``SlurmExecutor(pilot={...})`` (``pilot_settings``). The runner stays the only scheduler and
claim holder; blocks only run what it queued (``runner.pilot_pool`` has the node's side).

Policy:

* ``submit`` queues the attempt; at ``flush`` (the end of the runner's round) each one becomes a
  *ticket* (its bundle plus the claim's fence) in the run's ``slurm/pilot/queue/``. The handle
  ``{"pilot": true}`` goes into the event log, so a restarted runner re-attaches (``reattach``).
* Blocks scale with the run's tasks out (queued or running): ``wanted_blocks`` — one per
  ``workers`` tasks, between ``min_blocks`` and ``max_blocks`` (for all runs of the executor).
  A block exits by itself after ``idle_timeout`` seconds without work, or when the run ends
  (``release`` asks it to). The runner never waits for a block to start: tickets wait in the
  queue, and whichever block runs first takes them.
* Completion comes from outcome files, as for job arrays (``SharedSite.outcomes``).
* A block is gone when it says so (``exited``), when Slurm reports it ended (one ``squeue`` for
  all blocks every ``poll_freq`` seconds, at most ``QUERY_EVERY``), or when its heartbeat has
  not moved for ``HEARTBEAT_STALE`` seconds (then it is also scancelled). ``LOST_GRACE``
  seconds later, each ticket left in its ``running/`` is settled: a task whose outcome is there
  is finished; any other goes back into the queue (re-written with the current fence) and runs
  again in another block, up to ``MAX_LOSSES`` times, after which it fails. Nothing finished
  is re-run. ``BLOCK_FAILURES`` blocks in a row gone without starting (a bad partition, a
  Python that does not start) fail the run's queued tasks with the block's output.
* ``cancel`` takes a queued ticket back, or asks the block running it to kill it.
* Tickets and block files move only through ``self.files`` (``pilot_files.PilotFiles``: the
  shared run directory; ``pilot_remote.RemotePilotFiles``: through SSH without a shared
  filesystem, the cluster's copy of the run, mirrored back by a look every 0.25 s that runs in
  a thread of its own). The backend's other work is the runner's thread's, through SSH too.

State (all in the runner's thread): ``outstanding`` (key -> the attempt out), ``fresh`` (no
ticket yet), ``blocks`` (id -> ``Block``), ``losses`` (key -> times lost with a block),
``cancelling`` (keys whose cancel is not yet delivered), ``failures`` (run -> blocks gone
unstarted in a row).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional

from runner import layout
from runner.backends.base import Completion, Task
from runner.backends.slurm.client import FINAL_STATES, lookup
from runner.backends.slurm.pilot_base import QUERY_EVERY, PilotBase, unlink_quietly
from runner.backends.slurm.pilot_blocks import Block
from runner.backends.slurm.pilot_files import Ticket
from runner.backends.slurm.settings import SettingsError
from runner.backends.slurm.site import local_identity
from runner.outcome import header_problem, read_outcome_header
from runner.redact import has_mask, task_secrets

log = logging.getLogger("cov.slurm")

QUEUE_DEPTH = 1000  # tickets out at once per executor (the runner refills as they finish)
TICK = 0.1  # seconds between two looks at outcomes and blocks while tasks are out
HEARTBEAT_STALE = 30.0
LOST_GRACE = 2.0
MAX_LOSSES = 3
BLOCK_FAILURES = 3


class PilotBackend(PilotBase):
    """Runs a Slurm executor's tasks in pilot blocks (``SlurmBackend`` routes here when the
    executor has ``pilot``); shares the Slurm backend's settings, site and commands."""

    # -- the backend contract --------------------------------------------------------------
    def submit(self, task: Task) -> None:
        if self.error:
            raise SettingsError(self.error)
        key = (task.run, task.node)
        if task.attempt > 1:
            self.stale[key] = local_identity(task.run, task.node)
        if self.settings.over_ssh and self._login_secrets is None:
            self._login_secrets = task_secrets(task.run, task.node) if has_mask(self.config) \
                else {}
        self.outstanding[key] = task
        self.fresh.append(task)

    def flush(self) -> None:
        if self.error or not self._connect():
            return
        self._write_tickets()
        self._scale()
        assert self.files is not None
        self.files.sweep()
        self._deliver_handles()

    def poll(self) -> List[Completion]:
        self._deliver_handles()
        self._drop_live_copies()  # those found at the last poll: their end events are written
        if not self.error and self._connect():
            try:
                self._pilot_step()
            except Exception as exc:  # noqa: BLE001 - never kill the runner's loop over it
                log.warning("slurm pilot: %s: %s", type(exc).__name__, exc, exc_info=True)
        self._deliver_handles()
        return self._take_done()

    def next_poll_in(self) -> Optional[float]:
        if self._done or self._handles:
            return 0.0
        return TICK if self.outstanding else None

    def capacity(self) -> int:
        return max(0, QUEUE_DEPTH - len(self.outstanding))

    def busy(self) -> bool:
        return bool(self.outstanding or self._done)

    def cancel(self, run: str, node: int) -> None:
        key = (run, node)
        task = self.outstanding.get(key)
        if task is None:
            return
        if task in self.fresh:
            self.fresh.remove(task)
            self._end(key, Completion.cancelled(task, "cancelled before it was queued").header)
            return
        self.cancelling.add(key)
        self._deliver_cancels()

    def drop(self, task: Task) -> None:
        key = (task.run, task.node)
        if self.outstanding.get(key) is task:
            self._forget(key)
            if task in self.fresh:
                self.fresh.remove(task)
            elif self.files is not None:
                try:
                    self.files.take_back(task.run, [self._name(task)])
                except Exception as exc:  # noqa: BLE001 - its outcome is then not waited for
                    log.warning("slurm pilot: cannot take %s back: %s", task.name, exc)

    def release(self, run: str) -> None:
        """The run ended: its running blocks stop, those still in Slurm's queue are
        scancelled."""
        self._drop_unstarted(run, 0)
        self._drop_live_copies(run)
        if self.files is not None and self._live(run):
            self.files.stop(self._live(run))
        if not any(key[0] == run for key in self.outstanding):
            self.known_runs.discard(run)
            if self.files is not None:
                self.files.forget(run)
            for block_id in [b.id for b in self.blocks.values() if b.run == run]:
                del self.blocks[block_id]

    def reattach(self, task: Task, handle: Dict[str, Any]) -> bool:
        """An attempt a previous runner queued: found in the queue (its ticket is re-written
        with our fence), in a block, as an outcome, or else queued again (at the next round,
        once connected: ``_take_reattached``)."""
        if not handle.get("pilot") or self.error:
            return False
        self.services.record_handle(task, dict(handle))
        self.outstanding[(task.run, task.node)] = task
        self.reattached.append(task)
        return True

    def _close_idle_runs(self) -> None:
        busy = {key[0] for key in self.outstanding} | {b.run for b in self.blocks.values()}
        for run in [r for r in self._rundirs if r not in busy]:
            self._rundirs.pop(run).close()

    # -- one round -------------------------------------------------------------------------
    def _pilot_step(self) -> None:
        assert self.files is not None
        if self.reattached:
            self._take_reattached()
        self._write_tickets()
        self.files.refresh(self._runs_out())
        self._collect_outcomes()
        now = time.monotonic()
        for block in self._live():
            self._watch(block, now)
        if now >= self.query_at and any(b.job_id for b in self._live()):
            self._query()
        self._recover(now)
        self._deliver_cancels()
        self._scale()
        if self.site is not None and self.site.live and now >= self.live_at:
            self._fetch_live(now)
        self.files.sweep()
        self._close_idle_runs()

    # -- outcomes ---------------------------------------------------------------------------
    def _collect_outcomes(self, force: bool = False) -> None:
        assert self.site is not None
        by_run: Dict[str, List[int]] = {}
        for run, node in self.outstanding:
            by_run.setdefault(run, []).append(node)
        for run, nodes in by_run.items():
            assert self.files is not None
            self._collect_packed(run, force)
            found = self.files.outcomes(run, nodes, force=force)
            for node, identity in (found or {}).items():
                key = (run, node)
                task = self.outstanding.get(key)
                if task is None or identity == self.stale.get(key):
                    continue
                header = read_outcome_header(task.outcome_path)
                if header is not None:
                    header.setdefault("attempt", task.attempt)
                    self._end(key, header)
                    if header.get("ok") and self.settings.cleanup and self.site.live:
                        # the cluster's copies of its outcome and logs (with the round's sweep)
                        self.site.remove_task_files(run, node, task.attempt, "")

    def _collect_packed(self, run: str, force: bool) -> None:
        """The ends the run's blocks appended to their packs (format 2.0): each record is an
        outcome, ``at`` its location, which goes into the ``end`` event."""
        assert self.files is not None
        for header, at in self.files.packed(run, force=force):
            key = (run, header["node"])
            task = self.outstanding.get(key)
            if task is None or header["attempt"] != task.attempt or header_problem(header):
                continue
            header["at"] = at
            self._end(key, header)  # type: ignore[arg-type]  # checked: header_problem
            for stream in header.get("live_packed") or ():
                if stream in layout.STREAMS:  # its live copy: once its end event is written
                    self.live_copies.append((run, key[1], layout.log_path(run, key[1], stream)))

    def _drop_live_copies(self, run: Optional[str] = None) -> None:
        """The live ``logs/<node>.out|err`` of packed streams whose end events are written now
        (collected at an earlier poll; ``run``: that run's, at its end), unless the node runs
        again (a new attempt's live copy has the same name)."""
        due = [c for c in self.live_copies if run is None or c[0] == run]
        self.live_copies = [c for c in self.live_copies if c not in due]
        for run_path, node, path in due:
            if (run_path, node) not in self.outstanding:
                unlink_quietly(path)

    # -- blocks -----------------------------------------------------------------------------
    def _watch(self, block: Block, now: float) -> None:
        assert self.files is not None
        block.look(now)
        if not self.files.current(block.run):
            block.beat_seen = now  # no news through SSH is not a silent block
        if block.exited():
            self._gone(block, "exited", now)
            return
        if block.started:
            self.failures[block.run] = 0
            if now - block.beat_seen > HEARTBEAT_STALE:
                self._gone(block, f"its heartbeat stopped for {HEARTBEAT_STALE:g} s", now)
                if block.job_id and self.client is not None:
                    self.client.scancel([block.job_id])
                return
        for name in block.running:
            found = layout.ticket_task(name)
            if found is None:
                continue
            key = (block.run, found[0])
            task = self.outstanding.get(key)
            if task is not None and task.attempt == found[1] and key not in self.started_keys:
                self.started_keys.add(key)
                if block.job_id:  # cov status shows the block's job id for the task
                    self._emit_handle(task, {"pilot": True, "host": block.host or self.host,
                                             "job_id": block.job_id, "block": block.id})
                self._emit_news(task, "start", start=time.time(), host=block.host or self.host)

    def _query(self) -> None:
        assert self.client is not None
        live = [b for b in self._live() if b.job_id]
        infos = self.client.squeue([b.job_id for b in live])
        now = time.monotonic()
        self.query_at = now + min(self.settings.poll_freq, QUERY_EVERY)
        if infos is None:
            return  # the controller did not answer: ask again later
        unknown = [b.job_id for b in live if lookup(infos, b.job_id) is None]
        if unknown:
            infos.update(self.client.history(unknown))
        for block in live:
            info = lookup(infos, block.job_id)
            state = info.state if info is not None else "VANISHED"
            block.state, block.reason = state, info.reason if info is not None else ""
            if state in FINAL_STATES or state == "VANISHED":
                if block.exited():
                    self._gone(block, "exited", now)
                else:
                    self._gone(block, f"Slurm job {block.job_id} ended {state}", now)
        self._tell_waiting()

    def _tell_waiting(self) -> None:
        """While no block of a run has started, its queued tasks say why (``cov status``):
        the first pending block's job id and Slurm's reason (Priority, Resources ...)."""
        why: Dict[str, str] = {}
        for block in self._live():
            if block.started:
                why[block.run] = ""
            elif block.state == "PENDING" and block.run not in why:
                reason = block.reason if block.reason not in ("", "None", "(null)") else ""
                why[block.run] = f"waiting for pilot block job {block.job_id}" + \
                    (f" ({reason})" if reason else "")
        for key, task in self.outstanding.items():
            reason = why.get(key[0], "")
            if reason and key not in self.started_keys and self.told.get(key) != reason:
                self.told[key] = reason
                self._emit_news(task, "pending", reason=reason)

    def _gone(self, block: Block, why: str, now: float) -> None:
        block.gone, block.gone_at = why, now
        if why != "exited":
            log.info("slurm pilot: block %s (job %s) is gone: %s", block.id, block.job_id, why)
        if block.started or why == "exited":
            return
        self.failures[block.run] = self.failures.get(block.run, 0) + 1
        if self.failures[block.run] >= BLOCK_FAILURES:
            self.failures[block.run] = 0
            assert self.files is not None
            where, tail = self.files.log_tail(block)
            tail = tail.strip()
            self._fail_queued(block.run, f"{BLOCK_FAILURES} pilot blocks ended without "
                                         f"starting (last: {why})" +
                              (f"; end of its output:\n{tail}" if tail else
                               f"; its output would be in {where}"))

    def _recover(self, now: float) -> None:
        """Settle the tickets left in the blocks gone ``LOST_GRACE`` seconds ago."""
        for block in [b for b in self.blocks.values() if b.gone and not b.recovered]:
            if now - block.gone_at < LOST_GRACE:
                continue
            assert self.files is not None
            self._collect_outcomes(force=True)  # a last look: what finished is never re-run
            again: List[Ticket] = []
            drop: List[str] = []
            for name in sorted(block.tickets()):
                ticket = self._settle_lost(block, name)
                if ticket is None:
                    drop.append(name)
                else:
                    again.append(ticket)
            self.files.requeue(block, again)
            self.files.discard(block, drop)
            block.recovered = True
            del self.blocks[block.id]

    def _settle_lost(self, block: Block, name: str) -> Optional[Ticket]:
        """What becomes of a ticket left in a gone block: queued again (the ticket returned)
        or removed (None: finished, not this runner's attempt, or lost too often)."""
        found = layout.ticket_task(name)
        task = self.outstanding.get((block.run, found[0])) if found else None
        if task is None or found is None or task.attempt != found[1]:
            return None  # finished, or not this runner's attempt any more
        key = (task.run, task.node)
        self.losses[key] = losses = self.losses.get(key, 0) + 1
        self.started_keys.discard(key)
        where = f"pilot block {block.id} (Slurm job {block.job_id or '?'}) {block.gone}"
        if losses > MAX_LOSSES:
            self._end(key, Completion.failed(
                task, "lost", f"task '{task.name}' was lost {losses} times with its pilot "
                f"block; last: {where}", host=block.host or self.host,
                job_id=block.job_id or None).header)
            return None
        log.warning("slurm pilot: task %s lost with %s: queued again", task.name, where)
        return name, self._ticket(task)

    def _deliver_cancels(self) -> None:
        """Take the cancelled tasks' tickets back from the queue (one ``take_back`` per run);
        those a block took are killed there (its pool writes "cancelled")."""
        if not self.cancelling or self.files is None:
            return
        by_run: Dict[str, List[Task]] = {}
        for key in list(self.cancelling):
            task = self.outstanding.get(key)
            if task is None:
                self.cancelling.discard(key)
            elif task not in self.fresh:
                by_run.setdefault(task.run, []).append(task)
        for run, tasks in by_run.items():
            taken = self.files.take_back(run, [self._name(t) for t in tasks])
            for task in tasks:
                key, name = (task.run, task.node), self._name(task)
                if name in taken:
                    self._end(key, Completion.cancelled(task, "cancelled while queued").header)
                    continue
                for block in self._live(run):
                    if name in block.tickets():
                        self.files.cancel(block, name)
                        self.cancelling.discard(key)
                        break


__all__: List[str] = ["PilotBackend"]
