"""Sublattice nodes: the runner follows the child run a sublattice task dispatched, and ends
the node with it (its output the child's result), or cancels the child with the node.

Part of ``Runner`` (``runner.runner_base`` says how it is cut).
"""
from __future__ import annotations

from runner import engine, outcome
from runner.journal import ActiveRun
from runner.outcome import OutcomeHeader
from runner.rundir import RunDir, RunDirError
from runner.runner_base import RunnerBase
from runner.state import COMPLETED


class Sublattices(RunnerBase):
    """The runner's handling of sublattice nodes and their child runs."""

    def _cancel_child(self, child_id: str) -> None:
        child = RunDir(self.home / child_id)
        if child.exists():
            child.request_cancel()

    def _follow_child(self, run: ActiveRun, node: int, child_id: str) -> None:
        """Sublattice ``node`` started its child run: record it, and serve the child."""
        run.children[node] = child_id
        run.pending.append({"ev": "dispatching", "node": node, "child": child_id})
        child = str(self.home / child_id)
        if child not in self.active:
            self._activate(child)

    def _check_children(self, run: ActiveRun) -> None:
        for node, child_id in list(run.children.items()):
            child = self.active.get(str(self.home / child_id))
            if child is not None and not child.state.finished:
                continue
            self._resolve_child(run, node, child_id)

    def _resolve_child(self, run: ActiveRun, node: int, child_id: str) -> None:
        """A sublattice node ends with its child run: its output is the child's result."""
        child = RunDir(self.home / child_id)
        try:
            state = child.state()
        except (RunDirError, OSError):
            return
        if not state.finished:
            return
        run.children.pop(node, None)
        run.ours.pop(node, None)
        attempt = run.state.tasks[node].attempt if node in run.state.tasks else 1
        header: OutcomeHeader = {"ok": False, "child": child_id, "start": state.started,
                                  "end": state.ended, "attempt": attempt}
        if state.status == COMPLETED:
            payload = outcome.read_outcome_payload(str(child.final_result_path)) or \
                child.read_outcome(child.manifest.output_node, payload=True)[1]
            if payload is not None:
                preview = (child.outcome_header(child.manifest.output_node) or {}).get("preview")
                header["ok"] = True
                if preview:
                    header["preview"] = preview
                # The runner writes it (runner.outcome says why that is safe).
                outcome.write_outcome(str(run.dir.result_path(node)), header, payload)
                self._end(run, node, attempt, header)
                return
        event = engine.child_failed_event(node, attempt, child_id, state.status, state.error)
        run.pending.append(event)
        run.schedule.finish(node, event["status"])
