"""Claiming and submitting ready nodes, and the claims of others: fencing (a runner stopped
past the stale limit must not run what others took over), adopting dead runners' attempts,
cancel requests.

Part of ``Runner`` (``runner.runner_base`` says how it is cut).
"""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Set, Tuple

from runner import engine, follow_on
from runner.backends import Backend, Task
from runner.cache import cacheable
from runner.cache_hook import CacheHook
from runner.journal import ActiveRun
from runner.liveness import HOST, RunnerRegistry, fence_path
from runner.outcome import OutcomeHeader
from runner.state import CANCELLED
from runner.sublattices import Sublattices


_MAX_HIT_ROUNDS = 50  # rounds of cache hits in one step: the loop's other work waits no longer


class Claims(Sublattices, CacheHook):
    """The runner's claims: taking them, losing them, taking over a dead runner's."""

    # -- claiming and submitting -----------------------------------------------------------
    def _schedule_all(self) -> None:
        if self.claims_paused:  # a runner job hands over: follow-ons never claimed go too
            for run in self.active.values():
                for node, task in list(run.ours.items()):
                    if task.speculative:
                        self._backend(task.executor, run.env).drop(task)
                        del run.ours[node]
            return
        if self.journal.stalled():
            return  # a claim is an event: none can be written now
        for run in list(self.active.values()):
            if run.state.finished or not run.schedule.ready or run.busy():
                continue
            with self._run_boundary(run.path):
                self._schedule(run)

    def _schedule(self, run: ActiveRun) -> None:
        """Claim as many ready nodes as the backends take now, lowest id first; again while
        cache hits make more ready (a layered graph of hits in one step, not one per layer)."""
        for _ in range(_MAX_HIT_ROUNDS):
            if not self._schedule_round(run) or run.busy() or self.journal.stalled():
                break

    def _schedule_round(self, run: ActiveRun) -> int:
        """One round of ``_schedule``; returns how many nodes the result cache finished."""
        chosen: List[Tuple[int, Backend]] = []
        hits: Dict[int, str] = {}  # node -> its key in the result cache: claimed, not run
        skipped: List[int] = []
        room: Dict[int, int] = {}
        full: Set[int] = set()
        due: List[int] = []  # follow-ons whose parent completed: their claim is due
        while True:
            taken = run.schedule.take_ready(1)
            if not taken:
                break
            node_id = taken[0]
            queued = run.ours.get(node_id)
            if queued is not None and queued.speculative:
                due.append(node_id)  # already in its worker: claimed, never submitted again
                continue
            key_found = self._cache_key(run, node_id)
            if key_found is not None:
                hits[node_id] = key_found  # takes no room in a backend
                continue
            config = run.manifest.executors.get(run.manifest.node(node_id).executor or "local",
                                                {"type": "local"})
            backend = self._backend(config, run.env)
            key = id(backend)
            left = room[key] if key in room else backend.capacity()
            if left <= 0:
                skipped.append(node_id)
                full.add(key)
                if len(full) >= len(self.backends) or len(skipped) > 64:
                    break
                continue
            room[key] = left - 1
            chosen.append((node_id, backend))
        run.schedule.put_back(skipped)
        if not chosen and not hits and not due:
            return 0
        orphaned: Dict[int, OutcomeHeader] = {}
        claimed = self._claim(run, [n for n, _ in chosen] + list(hits) + due, left=orphaned)
        for node_id, header in orphaned.items():  # a gone runner's follow-on ran: recorded
            self._end(run, node_id, claimed[node_id], header)
            hits.pop(node_id, None)
        chosen = [(n, b) for n, b in chosen if n not in orphaned]
        finished = self._claimed_follow_ons(run, due, claimed)
        for node_id, cache_key in hits.items():
            if node_id not in claimed:
                continue
            if self._take_cached(run, node_id, claimed[node_id], cache_key):
                finished += 1
            else:
                config = run.manifest.executors.get(run.manifest.node(node_id).executor or "local",
                                                    {"type": "local"})
                chosen.append((node_id, self._backend(config, run.env)))  # gone since: run it
        for node_id in [n for n in hits if n not in claimed] + \
                [n for n, _ in chosen if n not in claimed]:
            if engine.claimed_elsewhere(run.state.tasks.get(node_id), self.id):
                run.schedule.mark_active(node_id)
            else:
                run.schedule.put_back([node_id])
        for node_id, backend in chosen:
            if node_id not in claimed:
                continue
            spec = engine.task_for(run.manifest, node_id, claimed[node_id], run.path, self.fence,
                                   run.dir.packed_at)
            run.ours[node_id] = spec
            try:
                backend.submit(spec)
            except Exception as exc:  # noqa: BLE001 - a backend failing to submit fails the task
                del run.ours[node_id]
                self._end(run, node_id, spec.attempt, {
                    "ok": False, "reason": "submit", "start": time.time(),
                    "error": f"could not submit task '{spec.name}': {type(exc).__name__}: {exc}"})
                continue
            self._queue_follow_ons(run, spec, backend)
        for backend in {id(b): b for _, b in chosen}.values():
            backend.flush()
        return finished

    # -- follow-ons (runner.follow_on) -------------------------------------------------------
    def _queue_follow_ons(self, run: ActiveRun, parent: Task, backend: Backend) -> None:
        """Queue behind ``parent``, in its worker, the nodes that wait only for it."""
        submit_after = getattr(backend, "submit_after", None)
        if submit_after is None or parent.followed or \
                os.environ.get("COV_FOLLOW_ONS") == "0":
            return

        def eligible(node: int) -> bool:
            if node in run.ours or run.state.tasks.get(node) is not None:
                return False  # claimed before (a retry, another runner's): the usual way
            spec = run.manifest.node(node)
            if cacheable(spec):
                return False
            for dep in [edge.node for edge in spec.parents] + list(spec.waits):
                if dep in run.schedule.finished and run.manifest.node(dep).executes:
                    task = run.state.tasks.get(dep)
                    if task is None or not task.finished:
                        return False  # its end, with where its output is, is not written yet
            config = run.manifest.executors.get(run.manifest.node(node).executor or "local",
                                                {"type": "local"})
            return self._backend(config, run.env) is backend

        attempts = {parent.node: parent.attempt}
        tasks = {parent.node: parent}
        for node, waits_for in follow_on.follow_ons(run.schedule, run.manifest, parent.node,
                                                     backend.capacity(), eligible):
            # its parent's output is in the worker's memory; the packed others', where they are
            spec = engine.task_for(run.manifest, node, 1, run.path, self.fence,
                                   run.dir.packed_at)
            spec.after = [(waits_for, attempts[waits_for])]
            spec.speculative = True
            spec.queued_at = time.time()
            if not submit_after(spec, tasks[waits_for]):
                break
            tasks[waits_for].followed = True
            run.ours[node] = spec
            attempts[node], tasks[node] = 1, spec

    def _claimed_follow_ons(self, run: ActiveRun, due: List[int], claimed: Dict[int, int]) -> int:
        """Follow-ons whose claim was due: claimed, they are ordinary attempts of ours (their
        start and an early completion are let through now); not claimed, they wait for a
        later step (the lock was busy) or, claimed by someone else, are dropped. Returns how
        many completed."""
        finished = 0
        extended = {}
        for node in due:
            spec = run.ours[node]
            if claimed.get(node) == spec.attempt:
                spec.speculative = False
                if not spec.followed:  # the chain's end: it goes on a few hops ahead
                    backend = self._backend(spec.executor, run.env)
                    self._queue_follow_ons(run, spec, backend)
                    extended[id(backend)] = backend
                if spec.early_start is not None:
                    run.pending.append(spec.early_start)
                    spec.early_start = None
                early, spec.early_done = spec.early_done, []
                for done in early:
                    self._on_completion(done)
                    finished += 1
            elif run.state.tasks.get(node) is None:
                run.schedule.put_back([node])
            else:
                self._backend(spec.executor, run.env).drop(spec)
                del run.ours[node]
                if engine.claimed_elsewhere(run.state.tasks.get(node), self.id):
                    run.schedule.mark_active(node)
                else:
                    run.schedule.put_back([node])  # claimed, not run: the usual way now
        for backend in extended.values():
            backend.flush()
        return finished

    def _claim(self, run: ActiveRun, nodes: List[int], attempt: Optional[int] = None,
               adopt: bool = False,
               left: Optional[Dict[int, OutcomeHeader]] = None) -> Dict[int, int]:
        """Claim nodes under the run lock after re-reading the log; returns node -> attempt.
        ``left``: filled with the outcome headers a gone runner's follow-ons left (those nodes
        are claimed to be recorded, not run; ``runner.follow_on``)."""
        claimed: Dict[int, int] = {}
        with self.journal.locked(run) as held:
            if not held:
                return {}  # nothing is claimed; the nodes are taken again on a later step
            run.catch_up()
            for node in nodes:
                task = run.state.tasks.get(node)
                verdict = engine.claimable(
                    task, self.id, node in run.ours, adopt, self.registry.alive,
                    lambda number: self._finished_on_disk(run, node, number))
                if verdict == "no":
                    continue
                if verdict == "takeover":
                    assert task is not None and task.runner is not None
                    if not self.fences.fence_off(task.runner):
                        continue  # a dead runner's claim, taken over only once it is fenced off
                claimed[node] = attempt if attempt is not None else \
                    (task.attempt + 1 if task else 1)
                if task is None and left is not None and node not in run.ours and \
                        follow_on.orphan_possible(
                        run.manifest, run.state, node, self.id, self.registry.alive):
                    header = run.dir.outcome_header(node, attempt=1)
                    if header is not None and header.get("attempt", 1) == 1:
                        left[node] = header
                    else:
                        claimed[node] = 2  # never the attempt a fenced worker may still run
            events = engine.claim_events(run.manifest, claimed, self.id, HOST, run.state.status)
            for event in events:
                # A follow-on was handed to its worker when it was queued, before the parent's
                # end that its claim is written with (and it may have started since): its claim
                # carries that moment, so that claimed <= started as for every task.
                queued = run.ours.get(event.get("node", -1))
                if queued is not None and queued.speculative and queued.queued_at is not None:
                    event["t"] = queued.queued_at
            if not self.journal.append(run, run.pending + events):
                return {}  # nothing was written: nothing is claimed
            run.pending = []
        return claimed

    # -- fencing: a runner stopped past the stale limit must not run what others took over ----
    def _check_fenced(self) -> None:
        """If another runner fenced us off, drop every attempt we hold and go on under a new
        id: the claims of the old one are a dead runner's, adopted from their outcomes (by
        whichever runner gets there first, us included) or run again."""
        if not os.path.exists(self.fence):
            return
        old = self.id
        self._log(f"runner {old} was taken for dead (stopped or stalled past the stale limit) "
                  "and its claims taken over; dropping the attempts it held")
        for run in self.active.values():
            run.catch_up()
            for node, task in list(run.ours.items()):
                self._backend(task.executor, run.env).drop(task)
                del run.ours[node]
            run.pending = [e for e in run.pending if engine.still_applies(run.state.tasks, e)]
        self.id = f"{HOST}:{os.getpid()}:{int(time.time() * 1000)}"
        self.registry = RunnerRegistry(self.home, self.id)
        self.fence = str(fence_path(self.home, self.id))
        self._beat_written = False
        self._write_heartbeat()

    def _drop_lost_claims(self, run: ActiveRun) -> None:
        """Attempts we hold whose claim is now another runner's (read from the log)."""
        for node, task in list(run.ours.items()):
            claim = run.state.tasks.get(node)
            if claim is not None and not claim.finished and (
                    claim.runner != self.id or claim.attempt != task.attempt):
                self._backend(task.executor, run.env).drop(task)
                del run.ours[node]

    @staticmethod
    def _finished_on_disk(run: ActiveRun, node: int, attempt: int) -> bool:
        """A dead runner's attempt whose outcome is complete: ``_adopt_orphans`` records it;
        it is never run again."""
        header = run.dir.outcome_header(node, attempt)
        return header is not None and header.get("attempt", attempt) == attempt

    # -- other runners' claims and cancel requests ------------------------------------------
    def _adopt_orphans(self, run: ActiveRun) -> None:
        """Nodes claimed by runners that died: finish them from their outcome, or rerun."""
        self._drop_lost_claims(run)
        for node in list(run.schedule.active):
            if node in run.ours:
                continue
            task = run.state.tasks.get(node)
            verdict = engine.orphan_verdict(task, self.registry.alive,
                                            lambda: run.dir.outcome_header(
                                                node, task.attempt if task else None))
            if verdict.kind == "skip":
                continue
            assert task is not None
            if verdict.kind == "child":
                assert task.child is not None
                run.children[node] = task.child
            elif verdict.kind == "started":
                assert verdict.header is not None
                self._follow_child(run, node, verdict.header["child"])
            elif verdict.kind == "end":
                assert verdict.header is not None
                self._end(run, node, task.attempt, verdict.header)
            elif verdict.kind == "reattach":
                handle = dict(task.handle or {})  # the re-claim below clears task.handle
                spec = engine.task_for(run.manifest, node, task.attempt, run.path, self.fence,
                                       run.dir.packed_at)
                backend = self._backend(spec.executor, run.env)
                claimed = self._claim(run, [node], attempt=task.attempt, adopt=True)
                if run.busy():
                    continue  # its lock is held elsewhere: a later pass adopts it
                if claimed and backend.reattach(spec, handle):
                    run.ours[node] = spec
                    continue
                run.schedule.put_back([node])  # it never finished: run it again
            else:
                run.schedule.put_back([node])  # it never finished: run it again

    def _check_cancel(self, run: ActiveRun) -> None:
        try:
            stamp = run.dir.cancel_path.stat().st_mtime
        except FileNotFoundError:
            return
        if stamp == run.cancel_stamp:
            return
        run.cancel_stamp = stamp
        plan = engine.cancel_targets(
            run.dir.cancel_request() or {}, run.schedule.unfinished(), run.schedule.finished,
            run.ours, run.children, run.schedule.active,
            lambda n: getattr(run.state.tasks.get(n), "runner", None), self.registry.alive)
        for node, action in plan:
            if action == "backend":
                self._backend(run.ours[node].executor, run.env).cancel(run.path, node)
                continue
            if action == "child":
                self._cancel_child(run.children.pop(node))
                run.ours.pop(node, None)  # its build task is long done; the child is cancelled
            run.pending.append(engine.cancelled_event(node, child=action == "child"))
            run.schedule.finish(node, CANCELLED)
