"""The runner's per-run decisions (``runner.engine``) on literal data: no home, lock or pool.

Task states are folded from literal event lists, as the runner folds them from ``events.jsonl``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

from runner import engine
from runner.manifest import Edge, Manifest, NodeSpec
from runner.state import CANCELLED, COMPLETED, FAILED, TaskState, fold

ME = "host:100:1"
DEAD = "host:200:1"
LIVE = "other:300:1"


def alive(runner: Optional[str]) -> bool:
    return runner in (ME, LIVE)


def task(*events: Dict[str, Any]) -> TaskState:
    """Node 1's state after ``events`` (each about node 1)."""
    return fold([{"node": 1, **e} for e in events]).tasks[1]


def claim(runner: str, attempt: int = 1, **extra: Any) -> Dict[str, Any]:
    return {"ev": "claim", "attempt": attempt, "runner": runner, **extra}


def manifest() -> Manifest:
    """0 param -> 1 a (ssh executor, retries) -> 2 b (kwarg)."""
    nodes = [
        NodeSpec(0, ":parameter:x", "parameter", blob=(0, 4), value_repr="1"),
        NodeSpec(1, "a", "electron", "remote", [Edge(0, "x", "arg", 0)], blob=(4, 10)),
        NodeSpec(2, "b", "electron", None, [Edge(1, "y", "kwarg")], blob=(14, 6)),
    ]
    return Manifest(dispatch_id="id-1", root_dispatch_id="id-1", lattice_name="wf",
                    nodes=nodes, output_node=2, cwd="/work", sys_path=["/lib"],
                    executors={"local": {"type": "local"},
                               "remote": {"type": "ssh", "host": "h", "retries": 2}})


# -- end_event -----------------------------------------------------------------------------------
def test_end_event_of_a_completed_attempt():
    header = {"ok": True, "start": 10.0, "end": 12.5, "attempt": 1}
    assert engine.end_event(header, 3, 1, claimed=9.0, now=99.0) == {
        "ev": "end", "node": 3, "status": COMPLETED, "attempt": 1, "start": 10.0, "end": 12.5}


def test_end_event_of_a_cancelled_attempt_is_not_a_failure():
    header = {"ok": False, "reason": "cancelled", "error": "killed", "start": 10.0, "end": 11.0}
    assert engine.end_event(header, 3, 2, claimed=None, now=99.0) == {
        "ev": "end", "node": 3, "status": CANCELLED, "attempt": 2, "start": 10.0, "end": 11.0}


def test_end_event_of_a_task_exception_keeps_only_its_last_line():
    header = {"ok": False, "reason": "exception", "start": 10.0, "end": 11.0,
              "error": "Traceback (most recent call last):\n  File x\nValueError: bad\n"}
    assert engine.end_event(header, 3, 1, claimed=None, now=99.0) == {
        "ev": "end", "node": 3, "status": FAILED, "attempt": 1, "start": 10.0, "end": 11.0,
        "exception": "ValueError: bad"}
    empty = engine.end_event({"ok": False, "reason": "exception"}, 3, 1, None, 99.0)
    assert empty["exception"] == "" and "error" not in empty


def test_end_event_of_a_runner_failure_says_why_and_fills_missing_times():
    header = {"ok": False, "reason": "worker-died"}
    assert engine.end_event(header, 3, 1, claimed=9.0, now=99.0) == {
        "ev": "end", "node": 3, "status": FAILED, "attempt": 1, "start": 9.0, "end": 99.0,
        "error": "worker-died"}
    submit = {"ok": False, "reason": "submit", "error": "could not submit task 'a': OSError"}
    assert engine.end_event(submit, 3, 1, 9.0, 99.0)["error"] == submit["error"]


def test_end_event_of_a_sublattice_names_its_child():
    header = {"ok": True, "child": "child-id", "start": 1.0, "end": 2.0}
    assert engine.end_event(header, 4, 1, None, 99.0)["child"] == "child-id"


# -- should_retry ---------------------------------------------------------------------------------
@pytest.mark.parametrize("header, attempt, retries, expected", [
    ({"ok": False, "reason": "exception"}, 1, 2, True),
    ({"ok": False, "reason": "exception"}, 2, 2, True),
    ({"ok": False, "reason": "exception"}, 3, 2, False),  # retries used up
    ({"ok": False, "reason": "worker-died"}, 1, 1, True),
    ({"ok": False, "reason": "cancelled"}, 1, 5, False),  # a cancel is never retried
    ({"ok": True}, 1, 5, False),
    ({"ok": False, "reason": "exception"}, 1, None, False),  # no retries by default
])
def test_should_retry(header, attempt, retries, expected):
    executor = {"type": "local"} if retries is None else {"type": "local", "retries": retries}
    assert engine.should_retry(header, attempt, executor) is expected


# -- cancel_targets -------------------------------------------------------------------------------
def plan(request: Dict[str, Any], **over: Any) -> List[Any]:
    data: Dict[str, Any] = dict(unfinished=[1, 2, 3, 4, 5], finished={0: COMPLETED},
                                ours={1: "task"}, children={2: "child"}, active={1, 2, 3, 4},
                                runners={3: LIVE, 4: DEAD})
    data.update(over)
    runners = data.pop("runners")
    return engine.cancel_targets(request, runner_of=runners.get, alive=alive, **data)


def test_cancel_all_stops_ours_cancels_children_and_ends_what_no_live_runner_holds():
    # 1 ours: the backend stops it; 2 a sublattice; 3 a live runner's (it cancels it itself);
    # 4 a dead runner's and 5 not started: ended here.
    assert plan({"all": True}) == [(1, "backend"), (2, "child"), (4, "end"), (5, "end")]


def test_cancel_of_named_nodes_skips_finished_ones():
    assert plan({"nodes": [5, 0, 3, 1]}) == [(1, "backend"), (5, "end")]
    assert plan({"nodes": ["4"]}) == [(4, "end")]  # ids as text (a hand-written request)
    assert plan({}) == []


def test_cancelled_event_of_a_node_that_did_not_run_and_of_a_sublattice():
    assert engine.cancelled_event(5) == {"ev": "end", "node": 5, "status": CANCELLED}
    # a sublattice node: its child run was asked to cancel, which the node's error says
    assert engine.cancelled_event(2, child=True) == {
        "ev": "end", "node": 2, "status": CANCELLED, "error": "cancelled"}


# -- orphan_verdict -------------------------------------------------------------------------------
def verdict(state: Optional[TaskState], header: Optional[Dict[str, Any]] = None) -> engine.Verdict:
    asked: List[bool] = []

    def outcome() -> Optional[Dict[str, Any]]:
        asked.append(True)
        return header

    found = engine.orphan_verdict(state, alive, outcome)
    if found.kind in ("skip", "child"):
        assert not asked  # no outcome file is read for these
    return found


def test_orphan_of_a_live_runner_or_a_finished_node_is_left_alone():
    assert verdict(task(claim(LIVE)), {"ok": True, "attempt": 1}) == ("skip", None)
    assert verdict(task(claim(DEAD), {"ev": "end", "status": COMPLETED})) == ("skip", None)
    assert verdict(None) == ("skip", None)


def test_orphan_finished_on_disk_is_recorded_from_its_outcome():
    header = {"ok": False, "reason": "exception", "attempt": 2, "error": "E"}
    assert verdict(task(claim(DEAD, attempt=2)), header) == ("end", header)
    no_attempt = {"ok": True}  # an older worker's header: taken as this attempt's
    assert verdict(task(claim(DEAD)), no_attempt) == ("end", no_attempt)


def test_orphan_with_an_earlier_attempts_outcome_is_run_again():
    assert verdict(task(claim(DEAD, attempt=2)), {"ok": False, "attempt": 1}) == ("rerun", None)
    assert verdict(task(claim(DEAD))) == ("rerun", None)


def test_orphan_of_a_dead_runner_with_a_remote_handle_is_reattached():
    handle = {"ev": "handle", "attempt": 1, "handle": {"job_id": "42"}}
    assert verdict(task(claim(DEAD, backend="slurm"), handle)) == ("reattach", None)
    # a local worker died with its runner: nothing to re-attach to
    assert verdict(task(claim(DEAD, backend="local"), handle)) == ("rerun", None)


def test_orphan_sublattice_child():
    dispatching = task(claim(DEAD), {"ev": "dispatching", "child": "kid"})
    assert verdict(dispatching) == ("child", None)
    started = {"ok": True, "child": "kid", "attempt": 1}
    assert verdict(task(claim(DEAD)), started) == ("started", started)


# -- claimable ------------------------------------------------------------------------------------
def can_claim(state: Optional[TaskState], ours: bool = False, adopt: bool = False,
              on_disk: bool = False) -> str:
    return engine.claimable(state, ME, ours, adopt, alive, lambda attempt: on_disk)


def test_claim_filter():
    assert can_claim(None) == "yes"  # never claimed
    assert can_claim(task({"ev": "end", "status": COMPLETED})) == "no"
    assert can_claim(task(claim(LIVE))) == "no"  # a live runner's
    assert can_claim(task(claim(DEAD)), on_disk=True) == "no"  # its outcome awaits adoption
    assert can_claim(task(claim(DEAD))) == "takeover"  # fence it off first
    assert can_claim(task(claim(DEAD)), adopt=True, on_disk=True) == "takeover"
    assert can_claim(task(claim(ME)), ours=True) == "no"  # already ours
    assert can_claim(task(claim(ME))) == "yes"  # ours, lost here (a retry)


def test_claimed_elsewhere_and_claim_events():
    assert engine.claimed_elsewhere(task(claim(LIVE)), ME)
    assert not engine.claimed_elsewhere(task(claim(ME)), ME)
    assert not engine.claimed_elsewhere(None, ME)
    assert engine.claim_events(manifest(), {1: 1, 2: 3}, ME, "host", "STARTING") == [
        {"ev": "run", "status": "RUNNING", "runner": ME},
        {"ev": "claim", "node": 1, "attempt": 1, "runner": ME, "host": "host", "backend": "ssh"},
        {"ev": "claim", "node": 2, "attempt": 3, "runner": ME, "host": "host",
         "backend": "local"}]
    assert engine.claim_events(manifest(), {}, ME, "host", "STARTING") == []
    assert len(engine.claim_events(manifest(), {1: 1}, ME, "host", "RUNNING")) == 1


def test_still_applies():
    tasks = fold([{"ev": "claim", "node": 1, "attempt": 2, "runner": ME},
                  {"ev": "end", "node": 2, "status": COMPLETED}]).tasks
    assert engine.still_applies(tasks, {"ev": "run", "status": "RUNNING"})
    assert engine.still_applies(tasks, {"ev": "handle", "node": 1, "attempt": 2})
    assert not engine.still_applies(tasks, {"ev": "handle", "node": 1, "attempt": 1})
    assert not engine.still_applies(tasks, {"ev": "end", "node": 2, "status": FAILED})
    assert engine.still_applies(tasks, {"ev": "end", "node": 3, "status": FAILED})


# -- task_for -------------------------------------------------------------------------------------
def test_task_for_builds_inputs_from_blobs_and_results():
    first = engine.task_for(manifest(), 1, 2, "/home/id-1", "/home/.runners/me.fenced")
    assert (first.run, first.dispatch_id, first.node, first.name, first.attempt, first.fn) == \
        ("/home/id-1", "id-1", 1, "a", 2, (4, 10))
    assert first.inputs == [("arg", 0, ("blob", 0, 4))]
    assert first.executor == {"type": "ssh", "host": "h", "retries": 2}
    assert (first.cwd, first.sys_path, first.fence) == ("/work", ["/lib"],
                                                        "/home/.runners/me.fenced")
    second = engine.task_for(manifest(), 2, 1, "/home/id-1", "")
    assert second.inputs == [("kwarg", "y", ("result", 1))]
    assert second.executor == {"type": "local"}  # no executor named: the local one


def test_child_failed_event():
    assert engine.child_failed_event(4, 1, "kid", FAILED, "The following tasks failed") == {
        "ev": "end", "node": 4, "status": FAILED, "attempt": 1, "child": "kid",
        "error": "sublattice run kid ended FAILED: The following tasks failed"}
    assert engine.child_failed_event(4, 2, "kid", CANCELLED, None)["status"] == CANCELLED
