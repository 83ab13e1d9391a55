"""Which nodes of a run can run now: pure bookkeeping, no I/O.

State per run (built from the manifest and the folded event log):

``waiting[n]``   number of n's inputs and waits not yet COMPLETED (parameters count as done)
``children[p]``  nodes that consume p's output or wait on it (none kept for a p that was
                 COMPLETED from the start: it never finishes again)
``ready``        executing nodes with nothing to wait for, not yet claimed or finished
``blocked``      nodes that can never run because an ancestor failed or was cancelled

Policy: ready nodes are handed out lowest id first (creation order), which is Covalent's order
for independent tasks and keeps fan-outs breadth-first. A run is over when nothing is ready,
running or dispatching; it is FAILED if any node failed, else CANCELLED if any was cancelled,
else COMPLETED.
"""
from __future__ import annotations

import heapq
from typing import Dict, Iterable, List, Optional, Set, Tuple

from runner.manifest import Manifest
from runner.state import CANCELLED, COMPLETED, FAILED, RunState, TERMINAL


class Schedule:
    """Ready/waiting/finished bookkeeping for one run."""

    def __init__(self, manifest: Manifest, state: RunState) -> None:
        self.manifest = manifest
        self.children: Dict[int, List[int]] = {}
        self.waiting: Dict[int, int] = {}
        self.ready: List[int] = []  # a heap
        self._in_ready: Set[int] = set()
        self.blocked: Set[int] = set()
        self.finished: Dict[int, str] = {}
        self.active: Set[int] = set()  # claimed, running or dispatching (any runner)
        for node in manifest.nodes:
            if not node.executes:
                self.finished[node.id] = COMPLETED
                continue
            task = state.tasks.get(node.id)
            if task is not None and task.status in TERMINAL:
                self.finished[node.id] = task.status
        for node in manifest.nodes:
            if not node.executes:
                continue
            waiting = 0
            for dep in {e.node for e in node.parents} | set(node.waits):
                if self.finished.get(dep) == COMPLETED:
                    # A dep COMPLETED already (a parameter, a resumed run's task) never
                    # finishes again (``finish`` ignores it): no child list is kept for it
                    # (50,000 parameters' lists took 6.5 MB of a 100,000-node runner).
                    continue
                self.children.setdefault(dep, []).append(node.id)
                waiting += 1
            self.waiting[node.id] = waiting
        for node in manifest.nodes:  # failures reach downstream nodes
            if node.executes and self.finished.get(node.id) in (FAILED, CANCELLED):
                self._block_downstream(node.id)
        for node in manifest.nodes:
            if node.executes and node.id not in self.finished and node.id not in self.blocked:
                task = state.tasks.get(node.id)
                if task is not None and task.status not in TERMINAL and task.attempt > 0:
                    self.active.add(node.id)
                elif self.waiting[node.id] == 0:
                    self._push(node.id)

    def _push(self, node: int) -> None:
        if node not in self._in_ready:
            self._in_ready.add(node)
            heapq.heappush(self.ready, node)

    def take_ready(self, limit: Optional[int] = None) -> List[int]:
        """Up to ``limit`` ready nodes, lowest id first; they become active."""
        taken: List[int] = []
        while self.ready and (limit is None or len(taken) < limit):
            node = heapq.heappop(self.ready)
            self._in_ready.discard(node)
            if node in self.finished or node in self.blocked or node in self.active:
                continue
            self.active.add(node)
            taken.append(node)
        return taken

    def put_back(self, nodes: Iterable[int]) -> None:
        """Nodes taken but not claimed (another runner had them, or no capacity)."""
        for node in nodes:
            self.active.discard(node)
            if node not in self.finished and node not in self.blocked:
                self._push(node)

    def mark_active(self, node: int) -> None:
        """Another runner (or an adopted attempt) runs it."""
        self.active.add(node)
        self._in_ready.discard(node)

    def finish(self, node: int, status: str) -> List[int]:
        """Record a node's end; returns nodes that became ready."""
        if node in self.finished:
            return []
        self.finished[node] = status
        self.active.discard(node)
        self._in_ready.discard(node)
        newly: List[int] = []
        if status == COMPLETED:
            for child in self.children.get(node, ()):
                self.waiting[child] -= 1
                if self.waiting[child] == 0 and child not in self.finished \
                        and child not in self.blocked:
                    self._push(child)
                    newly.append(child)
        else:
            self._block_downstream(node)
        return newly

    def _block_downstream(self, node: int) -> None:
        stack = list(self.children.get(node, ()))
        while stack:
            child = stack.pop()
            if child in self.blocked or child in self.finished:
                continue
            self.blocked.add(child)
            self._in_ready.discard(child)
            stack.extend(self.children.get(child, ()))

    def unfinished(self) -> List[int]:
        """Executing nodes that have not ended (blocked ones included)."""
        return [n.id for n in self.manifest.nodes if n.executes and n.id not in self.finished]

    @property
    def over(self) -> bool:
        """Nothing ready, nothing running: the run can end."""
        return not self.active and not self._in_ready

    def outcome(self) -> Tuple[str, List[Tuple[int, str]]]:
        """The run's final status and the failed nodes (id, name)."""
        failed = [(n, self.manifest.node(n).name) for n, s in sorted(self.finished.items())
                  if s == FAILED]
        if failed:
            return FAILED, failed
        if any(s == CANCELLED for s in self.finished.values()) or self.blocked:
            return CANCELLED, []
        if self.finished.get(self.manifest.output_node) == COMPLETED:
            return COMPLETED, []
        return CANCELLED, []
