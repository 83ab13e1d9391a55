"""``Result`` and ``get_result``: a run directory read back with Covalent's accessors."""
from __future__ import annotations

import os
import pickle
import time
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from covalent_cli import own_runs
from covalent_cli.errors import RunNotFound, RunUnreadable, UserError
from covalent_cli.result_graph import TransportGraph, covalent_status, read_nodes, utc  # noqa: F401
from covalent_cli.status import RESULT_STATUS, Status
from covalent_cli.transport import TransportableObject
from runner.config import runs_home
from runner.daemon import Keeper, RunnerUnavailable
from runner.rundir import MANIFEST, RunDir, RunDirError, is_run_name
from runner.state import COMPLETED, TERMINAL, RunState


class Result:
    """The state and outputs of one run: a snapshot read from its run directory when made
    (``result_graph`` says what it holds), so it still answers after the directory is gone."""

    NEW_OBJECT = RESULT_STATUS.NEW_OBJECT
    COMPLETED = RESULT_STATUS.COMPLETED
    POSTPROCESSING = RESULT_STATUS.POSTPROCESSING
    PENDING_POSTPROCESSING = RESULT_STATUS.PENDING_POSTPROCESSING
    POSTPROCESSING_FAILED = RESULT_STATUS.POSTPROCESSING_FAILED
    FAILED = RESULT_STATUS.FAILED
    RUNNING = RESULT_STATUS.RUNNING
    CANCELLED = RESULT_STATUS.CANCELLED
    DISPATCHING = RESULT_STATUS.DISPATCHING

    def __init__(self, rundir: RunDir, *, workflow_output: bool = True,
                 intermediate_outputs: bool = True, sublattice_results: bool = True) -> None:
        """``workflow_output``, ``intermediate_outputs``, ``sublattice_results``: Covalent's
        ``get_result`` flags: load the run's output, every node's output, the sublattices'
        child ``Result`` objects (what is not loaded answers None)."""
        self._dir = rundir
        own_runs.adopt(rundir)  # the dispatching process: its manifest, not parsed again
        try:
            self._manifest = rundir.manifest
            self._state: RunState = rundir.state()
            # Both blobs read now: this also opens the pack, kept open for task metadata.
            self._inputs = rundir.read_blob(self._manifest.blobs["inputs"])
            self._workflow = rundir.read_blob(self._manifest.blobs["workflow"])
            self._output: Optional[bytes] = None
            if workflow_output and self._state.status == COMPLETED:
                self._output = rundir.output_bytes(self._manifest.output_node)
            self._nodes = read_nodes(rundir, self._manifest, self._state, intermediate_outputs)
        except RunDirError as exc:
            rundir.close()
            raise RunUnreadable(str(exc)) from None
        weakref.finalize(self, rundir.close)
        self._children: Dict[int, Result] = {}
        if sublattice_results:
            for node in self._nodes:
                if node.child:
                    try:
                        self._children[node.id] = Result(
                            resolve_run(node.child, rundir.path.parent),
                            workflow_output=workflow_output,
                            intermediate_outputs=intermediate_outputs)
                    except (RunNotFound, RunUnreadable):
                        continue
        self._lattice: Any = None

    def __getstate__(self) -> Dict[str, Any]:
        # A pickled Result (Covalent's can be) carries its snapshot, not the open pack file.
        state = dict(self.__dict__)
        state["_dir"] = str(self._dir.path)
        state["_lattice"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._dir = RunDir(state["_dir"])  # task metadata: read from the run, if it still exists

    # -- run-level -----------------------------------------------------------------------
    @property
    def dispatch_id(self) -> str:
        return self._manifest.dispatch_id

    @property
    def root_dispatch_id(self) -> str:
        return self._manifest.root_dispatch_id

    @property
    def status(self) -> Status:
        return Status(self._state.status)

    @property
    def result(self) -> Any:
        """The lattice's output once COMPLETED (and loaded), else None."""
        encoded = self.encoded_result
        return None if encoded is None else encoded.get_deserialized()

    @property
    def encoded_result(self) -> Optional[TransportableObject]:
        if self._output is None:
            return None
        if not hasattr(self, "_encoded"):
            self._encoded = TransportableObject.from_pickle(self._output)
        return self._encoded

    @property
    def error(self) -> Optional[str]:
        return self._state.error

    @property
    def start_time(self) -> Optional[datetime]:
        return utc(self._state.started)

    @property
    def end_time(self) -> Optional[datetime]:
        return utc(self._state.ended)

    @property
    def inputs(self) -> TransportableObject:
        """``{"args": (...), "kwargs": {...}}`` as a TransportableObject (args a tuple, as
        Covalent keeps them)."""
        inputs = dict(pickle.loads(self._inputs))
        inputs["args"] = tuple(inputs.get("args") or ())
        return TransportableObject(inputs)

    @property
    def lattice(self) -> Any:
        """The dispatched ``Lattice``; its ``transport_graph`` is this run's graph."""
        if self._lattice is None:
            self._lattice = pickle.loads(self._workflow)
            self._lattice.transport_graph = TransportGraph(self)
        return self._lattice

    @property
    def results_dir(self) -> str:
        return str(self._dir.path)

    @property
    def run_dir(self) -> Path:
        return self._dir.path

    # -- node-level ----------------------------------------------------------------------
    def _node_output(self, node_id: int) -> Optional[TransportableObject]:
        data = self._nodes[node_id].output
        return None if data is None else TransportableObject.from_pickle(data)

    def get_node_result(self, node_id: int) -> Dict[str, Any]:
        """Covalent's node dict: node_id, node_name, start_time, end_time, status, output,
        error, sublattice_result, stdout, stderr. Unknown id: KeyError."""
        if not isinstance(node_id, int) or not 0 <= node_id < len(self._nodes):
            raise KeyError(node_id)
        node = self._nodes[node_id]
        return {
            "node_id": node_id,
            "node_name": node.name,
            "start_time": utc(node.start),
            "end_time": utc(node.end),
            "status": node.status,
            "output": self._node_output(node_id),
            "error": node.error,
            "sublattice_result": self._children.get(node_id),
            "stdout": node.stdout,
            "stderr": node.stderr,
        }

    def get_all_node_results(self) -> List[Dict[str, Any]]:
        return [self.get_node_result(n.id) for n in self._nodes]

    def get_all_node_outputs(self) -> Dict[str, Any]:
        """``{"<name>(<id>)": TransportableObject}`` for every node, parameters included."""
        return {f"{n.name}({n.id})": self._node_output(n.id) for n in self._nodes}

    def post_process(self) -> Any:
        return self.result

    def __str__(self) -> str:
        lines = [
            "Lattice Result", "=" * 14,
            f"status: {self.status}",
            f"result: {self.result!r}",
            f"input args: {self._manifest.inputs.get('args')}",
            f"input kwargs: {self._manifest.inputs.get('kwargs')}",
            f"error: {self.error}", "",
            f"start_time: {self.start_time}", f"end_time: {self.end_time}", "",
            f"results_dir: {self.results_dir}", f"dispatch_id: {self.dispatch_id}", "",
            "Node Outputs", "-" * 12,
        ]
        for key, value in self.get_all_node_outputs().items():
            lines.append(f"{key}: {value.object_string if value is not None else None}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Result {self.dispatch_id} {self.status}>"


def resolve_run(run_id: str, home: Optional[Path] = None) -> RunDir:
    """A run by full id, unique prefix, or ``latest``."""
    home = home or runs_home()
    run_id = str(run_id).strip()
    if not run_id or "/" in run_id or not is_run_name(run_id):
        raise RunNotFound(f"malformed run id {run_id!r}", "run `cov runs` to see ids")
    direct = home / run_id
    if run_id != "latest" and RunDir(direct).exists():
        return RunDir(direct)
    try:
        names = [n for n in os.listdir(home) if is_run_name(n)]
    except FileNotFoundError:
        names = []
    if run_id == "latest":
        return _latest(home, names)
    matches = [n for n in names if n.startswith(run_id)]
    if len(matches) == 1:
        return RunDir(home / matches[0])
    if not matches:
        raise RunNotFound(f"no run matches '{run_id}' under {home}", "run `cov runs` to see ids")
    raise RunNotFound(f"'{run_id}' is ambiguous: {len(matches)} runs start with it "
                      f"({', '.join(sorted(matches)[:3])}...)", "give more characters")


def _latest(home: Path, names: List[str]) -> RunDir:
    """The newest top-level run (a sublattice's child run is never "latest")."""
    stamped = []
    for name in names:
        try:
            stamped.append((os.stat(home / name / MANIFEST).st_mtime, name))
        except OSError:
            continue
    for _, name in sorted(stamped, reverse=True):
        run = RunDir(home / name)
        try:
            if not run.header().get("parent"):
                return run
        except RunDirError:
            return run  # unreadable: the command reading it says why
    raise RunNotFound(f"no runs under {home}", "dispatch one with `cov dispatch`")


def get_result(dispatch_id: str, wait: bool = False, dispatcher_addr: Optional[str] = None,
               status_only: bool = False, *, results_dir: Optional[str] = None,
               workflow_output: bool = True, intermediate_outputs: bool = True,
               sublattice_results: bool = True, timeout: Optional[float] = None
               ) -> Union[Result, Dict[str, str]]:
    """The run's ``Result`` (or ``{"id", "status"}`` with ``status_only``). ``wait=True`` blocks
    until the run is COMPLETED, FAILED or CANCELLED. Unknown id: ``MissingLatticeRecordError``
    (a KeyError). An unfinished run no live runner serves gets one (see ``keep_served``)."""
    rundir = resolve_run(dispatch_id, Path(results_dir) if results_dir else None)
    if wait:
        wait_for_run(rundir, timeout)
    else:
        keep_served(rundir)
    if status_only:
        try:
            return {"id": rundir.dispatch_id, "status": str(rundir.state().status)}
        except RunDirError as exc:
            raise RunUnreadable(str(exc)) from None
    return Result(rundir, workflow_output=workflow_output,
                  intermediate_outputs=intermediate_outputs,
                  sublattice_results=sublattice_results)


def keep_served(rundir: RunDir, keeper: Optional[Keeper] = None) -> None:
    """For a reader of a run: if it is unfinished and no live runner serves it, start one
    (one line on stderr). ``keeper``: a waiter's own (strict) one, checked once per second;
    without one, a reader's check: a failure to start is a warning line, not an error."""
    try:
        if keeper is None:
            if rundir.state().status in TERMINAL:
                return
            keeper = Keeper(rundir.path)
        keeper.check()
    except RunDirError as exc:
        raise RunUnreadable(str(exc)) from None
    except RunnerUnavailable as exc:
        raise UserError(str(exc), exc.hint) from None


def wait_for_run(rundir: RunDir, timeout: Optional[float] = None,
                 keeper: Optional[Keeper] = None) -> RunState:
    """Block until the run ends (or ``timeout`` seconds pass); returns its last state.

    Polls the event log cheaply: a ``stat``, and when it grew, a look at its last line only
    (the run's final event is always the last one written). The interval grows from 1 ms to
    2 ms in the first half second, 5 ms until 1 s, 20 ms until 10 s, then 0.25 s, so short runs
    return promptly (a small run's end was seen up to 20 ms late, a tenth of its wait; then up
    to 5 ms) and a long wait costs next to nothing; and the waiter does not compete with the
    workers for the CPU (a stat every 2 ms is ~1 % of a core).
    While it waits, ``keeper`` (by default a strict one of its own) makes sure a live runner
    serves the run: a runner that dies is replaced; one that cannot start is a ``UserError``.
    """
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    delay = 0.001
    last_size = -1
    keeper = keeper or Keeper(rundir.path, strict=True)
    try:
        state = rundir.state()
        while state.status not in TERMINAL:
            keep_served(rundir, keeper)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return rundir.state()
            time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - now)))
            delay = min(delay * 1.5, 0.002 if now - start < 0.5 else 0.005 if now - start < 1
                        else 0.02 if now - start < 10 else 0.25)
            try:
                size = rundir.events_path.stat().st_size
            except FileNotFoundError:
                continue
            if size != last_size:
                last_size = size
                if _ends_with_run_end(rundir, size):
                    state = rundir.state()
    except RunDirError as exc:
        raise RunUnreadable(str(exc)) from None
    return state


def _ends_with_run_end(rundir: RunDir, size: int) -> bool:
    try:
        with open(rundir.events_path, "rb") as f:
            f.seek(max(0, size - 512))
            tail = f.read()
    except OSError:
        return False
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return b'"ev": "run"' in last and any(s.encode() in last for s in TERMINAL)
