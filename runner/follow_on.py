"""Follow-on tasks: a task queued in a pool worker right behind the one parent it waits for.

A dependent task normally costs a round trip through the runner after its parent ends: the
worker reports, the runner records the end, claims the child, sends it, and the worker (or the
other one) picks it up: ~0.4 ms of the runner's and ~0.3 ms of the worker's time per hop on
two cores, most of a chain's per-hop cost. A node whose only unfinished dependency is a task
being submitted to the local pool now goes to the same worker with it, marked ``after`` that
parent's attempt; the worker runs it once that attempt succeeded there (its input is then in
the worker's memory), and otherwise answers ``after_failed`` without running it.

Its claim is not written before its parent's end: the runner writes the parent's ``end`` and
the follow-on's ``claim`` in one append under the run's lock, when the parent's completion
arrives (a completion of the follow-on itself that arrives first waits for that). No other
runner can claim it in between: a node is claimable only once its parents' ends are in the log,
and this parent's end appears there only beside our claim. A runner that dies meanwhile takes
its workers with it; the parent's outcome is adopted by whoever serves the run next, and the
follow-on, never claimed, runs from there like any ready node.

A runner taken for dead (stopped past the stale limit, or killed) may have left a follow-on
that ran, or still runs, in its worker, never claimed. Whoever claims such a node first looks
for its outcome (``orphan_possible``): a complete attempt-1 outcome is recorded, not run again;
otherwise it claims attempt 2, so that an attempt 1 still running in a fenced worker (which
writes nothing once fenced) is never the same attempt as the new one, as for any taken-over
claim.

Here: which nodes may follow a task, and which may have been a dead runner's follow-on (pure:
the schedule, the manifest and the folded state, no I/O).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from runner.manifest import ATTRIBUTE, COLLECTION, ELECTRON, OPERATOR, POSTPROCESS, Manifest
from runner.scheduler import Schedule
from runner.state import RunState

# Follow-ons per submitted task, at most: a chain is fed a few hops ahead, not claimed whole.
MAX_CHAIN = 8
# What may be a link of a chain: tasks, and the helper nodes between them (a list or dict of
# results, an attribute, an item, an operator): these only reshape values the worker already
# holds. Never a sublattice (it dispatches a child run) or the lattice's result node.
LINKS = frozenset({ELECTRON, COLLECTION, ATTRIBUTE, OPERATOR})


def follow_ons(schedule: Schedule, manifest: Manifest, parent: int, room: int,
               eligible: Callable[[int], bool]) -> List[Tuple[int, int]]:
    """The chain that may follow ``parent`` into its worker, as ``(node, the node it waits
    for)`` in the order to queue them: the one consumer of ``parent``, if its one unfinished
    dependency is ``parent``, then that one's, and so on, at most ``room``; tasks and helper
    nodes only (``LINKS``). Children that could run side by side (the fan-out a task's end
    releases) go to whichever worker is free when it ends, never all behind it in one queue.
    A helper node's consumer follows it: W3's dense layers are a list of the layer's results
    per next-layer task, which then runs behind its list in the same worker, one round trip
    through the runner per layer instead of two. ``eligible(node)``: the runner's own
    conditions (never claimed, not ours, the same pool, not cached)."""
    chosen: List[Tuple[int, int]] = []
    node = parent
    while len(chosen) < min(room, MAX_CHAIN):
        children = [c for c in schedule.children.get(node, ())  # the lattice's result
                    if manifest.node(c).kind != POSTPROCESS]   # node reads every task
        if manifest.node(node).kind not in LINKS or len(children) != 1 or \
                not _may_follow(schedule, manifest, children[0], eligible):
            break  # only a task's one consumer follows it: a fan-out goes to free workers
        child = children[0]
        chosen.append((child, node))
        node = child
    return chosen


def _may_follow(schedule: Schedule, manifest: Manifest, child: int,
                eligible: Callable[[int], bool]) -> bool:
    if schedule.waiting.get(child) != 1 or child in schedule.finished or \
            child in schedule.blocked or child in schedule.active:
        return False
    spec = manifest.node(child)
    return spec.kind in LINKS and eligible(child)


def orphan_possible(manifest: Manifest, state: RunState, node: int, me: str,
                    alive: Callable[[Optional[str]], bool]) -> bool:
    """A node never claimed may have run as a follow-on of a runner that is gone: one of its
    dependencies was claimed by a runner that is neither ``me`` nor alive."""
    spec = manifest.node(node)
    for dep in [edge.node for edge in spec.parents] + list(spec.waits):
        task = state.tasks.get(dep)
        if task is not None and task.runner not in (None, me) and not alive(task.runner):
            return True
    return False
