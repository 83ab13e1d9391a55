"""The runner's per-run decisions, as pure functions on data (no I/O, no clock).

``runner.service`` is the loop around them: it reads the event log and outcome headers, asks
these functions what to do, then writes the events they return (through ``runner.journal``)
and updates its ``Schedule`` itself. Nothing here touches a file, a lock or a process; what
needs the outside world is passed in: ``now`` as a number, and the two look-ups that cost I/O
(``alive(runner_id)``, a heartbeat read; ``outcome()``, an outcome file's header) as callables,
called only when the decision needs them, as the loop did before they moved here.

Decisions and their inputs:

=================  ============================================================================
``end_event``      an attempt's outcome header -> its ``end`` event: COMPLETED if ``ok``,
                   CANCELLED if ``reason: cancelled``, else FAILED with ``error`` (or, for the
                   task's own exception, only its last line as ``exception``, as Covalent does)
``should_retry``   a failed attempt is put back while ``attempt <= executor["retries"]``;
                   a cancelled one never
``cancel_targets`` a cancel request (``all`` or ``nodes``) -> per unfinished node what to do:
                   ``backend`` (ours: stop it), ``child`` (a sublattice: cancel the child run
                   and end the node), ``end`` (not running, or its runner is dead), or nothing
                   (a live runner's attempt: that runner cancels it)
``orphan_verdict`` a node claimed by a runner that is not us -> ``skip`` (finished, or its
                   runner lives), ``child`` (a sublattice already dispatching), ``started``
                   (the outcome says its child run started), ``end`` (the outcome of that
                   attempt is on disk), ``reattach`` (a remote handle to pick up) or ``rerun``
``claimable``      may we claim a node now: ``no``, ``yes``, or ``takeover`` (a dead runner's
                   claim, taken only once that runner is fenced off)
``task_for``       the manifest's node + attempt -> the ``Task`` handed to a backend
=================  ============================================================================
"""
from __future__ import annotations

from typing import Any, Callable, Collection, Dict, List, NamedTuple, Optional, Tuple

from runner.backends.base import Task
from runner.manifest import PARAMETER, Manifest
from runner.manifest_checks import packs_outcomes
from runner.outcome import OutcomeHeader
from runner.state import (CANCELLED, COMPLETED, DISPATCHING, FAILED, RUNNING, STARTING, Event,
                          TaskState)

Header = OutcomeHeader  # an outcome header: ok, reason, error, start ...


def end_event(header: Header, node: int, attempt: int, claimed: Optional[float],
              now: float) -> Event:
    """The ``end`` event of attempt ``attempt`` of ``node`` from its outcome ``header``;
    ``claimed`` (the start event's time, else the claim's) stands in for a missing start,
    ``now`` for a missing end.
    The caller finishes the node in its schedule with the event's ``status``."""
    if header.get("ok"):
        status = COMPLETED
    elif header.get("reason") == "cancelled":
        status = CANCELLED
    else:
        status = FAILED
    event: Event = {"ev": "end", "node": node, "status": status, "attempt": attempt,
                    "start": header.get("start") or claimed, "end": header.get("end", now)}
    if header.get("child"):
        event["child"] = header["child"]
    if type(header.get("pid")) is int:  # where it ran, for a task that ended before its start
        event["pid"] = header["pid"]    # was recorded (a short one on the local pool)
    if header.get("at"):  # format 2.0: the outcome (and logs) are in pack files, here
        event["at"] = header["at"]
    if header.get("log_at"):
        event["log_at"] = header["log_at"]
    if status == FAILED:
        if header.get("reason") == "exception":
            # Covalent keeps a task's own exception out of ``error`` (it is in stderr).
            lines = (header.get("error") or "").strip().splitlines()
            event["exception"] = lines[-1] if lines else ""
        else:
            event["error"] = header.get("error") or header.get("reason")
    return event


def should_retry(header: Header, attempt: int, executor: Dict[str, Any]) -> bool:
    """Covalent's executor ``retries``: a failed attempt (not a cancelled one) runs again
    while its number is at most ``retries``."""
    retries = int(executor.get("retries") or 0)
    return not header.get("ok") and header.get("reason") != "cancelled" and attempt <= retries


def cancel_targets(request: Dict[str, Any], unfinished: List[int], finished: Collection[int],
                   ours: Collection[int], children: Collection[int], active: Collection[int],
                   runner_of: Callable[[int], Optional[str]],
                   alive: Callable[[Optional[str]], bool]) -> List[Tuple[int, str]]:
    """What to do for each node a cancel ``request`` names, lowest id first:
    ``(node, "backend" | "child" | "end")``; nodes left to their live runner are omitted.
    ``finished``/``ours``/``children``/``active`` are collections of node ids."""
    targets = set(unfinished) if request.get("all") else \
        {int(n) for n in request.get("nodes", ())}
    plan: List[Tuple[int, str]] = []
    for node in sorted(targets):
        if node in finished:
            continue
        if node in children:  # before ``ours``: a sublattice node stays ours while its child runs
            plan.append((node, "child"))
        elif node in ours:
            plan.append((node, "backend"))
        elif node not in active or not alive(runner_of(node)):
            plan.append((node, "end"))
    return plan


def cancelled_event(node: int, child: bool = False) -> Event:
    """The ``end`` event of a node cancelled before it ran (``child``: a sublattice whose
    child run was asked to cancel)."""
    if child:
        return {"ev": "end", "node": node, "status": CANCELLED, "error": "cancelled"}
    return {"ev": "end", "node": node, "status": CANCELLED}


class Verdict(NamedTuple):
    """What to do with another runner's claim: ``kind`` and the outcome header it rests on."""

    kind: str  # skip | child | started | end | reattach | rerun
    header: Optional[Header] = None


def orphan_verdict(task: Optional[TaskState], alive: Callable[[Optional[str]], bool],
                   outcome: Callable[[], Optional[Header]]) -> Verdict:
    """The verdict on a node claimed, but not by us (``task``: its state from the log).

    ``alive(runner_id)`` is asked only of an unfinished claim, ``outcome()`` (the header of
    ``results/<node>.pkl``, None if absent or torn) only of a dead runner's one."""
    if task is None or task.finished or alive(task.runner):
        return Verdict("skip")
    if task.status == DISPATCHING and task.child:
        return Verdict("child")
    header = outcome()
    if header is not None and header.get("attempt", task.attempt) == task.attempt:
        if header.get("ok") and header.get("child"):
            # "child started" (or the child's result, not yet recorded): the node ends with
            # its child run, never with this file's header.
            return Verdict("started", header)
        return Verdict("end", header)
    if task.handle and task.backend not in (None, "local"):
        return Verdict("reattach")
    return Verdict("rerun")  # it never finished: run it again


def claimable(task: Optional[TaskState], me: str, ours: bool, adopt: bool,
              alive: Callable[[Optional[str]], bool],
              finished_on_disk: Callable[[int], bool]) -> str:
    """May runner ``me`` claim a node now (``task``: its state re-read under the lock;
    ``ours``: we hold an attempt of it; ``adopt``: we re-claim an orphan's attempt)?
    ``no``, ``yes``, or ``takeover`` (another runner's claim: fence it off first).
    ``finished_on_disk(attempt)``: that attempt's outcome is complete (it is recorded, never
    run again)."""
    if task is None:
        return "yes"
    if task.finished or (task.attempt > 0 and task.runner != me and not adopt and
                         (alive(task.runner) or finished_on_disk(task.attempt))):
        return "no"
    if task.runner == me and ours:
        return "no"
    if task.runner is not None and task.runner != me:
        return "takeover"
    return "yes"


def claimed_elsewhere(task: Optional[TaskState], me: str) -> bool:
    """A node we took but did not claim stays active here if another runner's attempt holds
    it (if that runner dies, the orphan verdict looks for its outcome first)."""
    return task is not None and not task.finished and task.attempt > 0 and task.runner != me


def claim_events(manifest: Manifest, claims: Dict[int, int], me: str, host: str,
                 run_status: str) -> List[Event]:
    """The ``claim`` events of ``claims`` (node -> attempt), behind a ``run RUNNING`` event
    when they are the run's first."""
    events: List[Event] = []
    for node, attempt in claims.items():
        config = manifest.executors.get(manifest.node(node).executor or "local", {})
        events.append({"ev": "claim", "node": node, "attempt": attempt, "runner": me,
                       "host": host, "backend": str(config.get("type", "local"))})
    if run_status == STARTING and events:
        events.insert(0, {"ev": "run", "status": RUNNING, "runner": me})
    return events


def still_applies(tasks: Dict[int, TaskState], event: Event) -> bool:
    """A pending event about a node is kept only while that node's attempt is still open."""
    if event.get("node") is None:
        return True
    claim = tasks.get(int(event["node"]))
    if claim is None:
        return True
    if claim.finished:
        return False
    return "attempt" not in event or int(event["attempt"]) == claim.attempt


def task_for(manifest: Manifest, node_id: int, attempt: int, run: str, fence: str,
             packed_at: Optional[Callable[[int], Optional[List[Any]]]] = None) -> Task:
    """The ``Task`` for attempt ``attempt`` of ``node_id`` of the run at ``run``: its inputs
    are blobs (parameters) or the outcomes of its parents (with, from ``packed_at``, where a
    packed one is: ``("result", node, location)``)."""
    node = manifest.node(node_id)
    inputs = []
    for edge in node.parents:
        parent = manifest.node(edge.node)
        if parent.kind == PARAMETER:
            assert parent.blob is not None
            source: Tuple[Any, ...] = ("blob", parent.blob[0], parent.blob[1])
        else:
            at = packed_at(edge.node) if packed_at is not None else None
            source = ("result", edge.node, at) if at else ("result", edge.node)
        key = edge.index if edge.type == "arg" else edge.param
        inputs.append((edge.type, key, source))
    assert node.blob is not None
    return Task(run=run, dispatch_id=manifest.dispatch_id, node=node.id, name=node.name,
                attempt=attempt, fn=node.blob, inputs=inputs,
                executor=manifest.executors.get(node.executor or "local", {}),
                cwd=manifest.cwd, sys_path=manifest.sys_path, fence=fence,
                files=node.files or [], pack=packs_outcomes(manifest.format_version))


def child_failed_event(node: int, attempt: int, child_id: str, status: str,
                       error: Optional[str]) -> Event:
    """The ``end`` event of a sublattice node whose child run ended ``status`` without a
    result (FAILED, or CANCELLED)."""
    message = f"sublattice run {child_id} ended {status}"
    if error:
        message += f": {error}"
    return {"ev": "end", "node": node, "status": CANCELLED if status == CANCELLED else FAILED,
            "attempt": attempt, "error": message, "child": child_id}
