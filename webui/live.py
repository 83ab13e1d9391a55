"""The runs as the UI process keeps them: each event log folded once, then only its new lines.

A ``LiveRun`` holds one run's manifest header, its ``RunState`` and, for each node, the index
of the last event that changed it. That index is the *version* the browser sends back
(``/api/runs/<id>/state?since=N``) so a refresh returns only the tasks that changed: one request
per refresh whatever the run's size, and its cost proportional to what happened. The log is
append-only, so event indexes are the same for every reader, across UI restarts too.

The manifest (the node list) and the laid-out graphs are loaded only for runs someone opens, and
only the ``HEAVY_RUNS`` most recently opened keep them.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional

from runner.query import iter_runs, run_summary
from runner.daemon import Keeper
from runner.manifest import Manifest
from runner.rundir import MANIFEST, RunDir, RunDirError
from runner.state import RunState, apply

from webui import security

HEAVY_RUNS = 8
MAX_LAYOUTS = 6  # laid-out variants kept per run


class LiveRun:
    """One run directory, read incrementally. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rundir = RunDir(path)  # reads the event log
        self._data: Optional[RunDir] = None  # reads manifest, pack and results; droppable
        self.lock = threading.RLock()
        self.state = RunState()
        self.version = 0  # events folded so far
        self.changed: Dict[int, int] = {}  # node -> version after its last change
        self._header: Optional[Dict[str, Any]] = None
        self._stamp = _stamp(path)
        self._layouts: Dict[Any, Dict[str, Any]] = {}
        # node -> (host, pid) from a finished task's outcome header (never changes once written)
        self.workers: Dict[int, Any] = {}
        # Starts a runner if none serves this run while unfinished; says so once per run.
        self._keeper = Keeper(path, interval=2.0, once=True)

    @property
    def dispatch_id(self) -> str:
        return self.path.name

    def stale(self) -> bool:
        """True if the directory was removed or replaced since this object was made."""
        return _stamp(self.path) != self._stamp

    def header(self) -> Dict[str, Any]:
        if self._header is None:
            self._header = self.rundir.header()
        return self._header

    @property
    def data(self) -> RunDir:
        """The ``RunDir`` to read the manifest, the packed pickles and the results with."""
        with self.lock:
            if self._data is None:
                self._data = RunDir(self.path)
            return self._data

    @property
    def manifest(self) -> Manifest:
        return self.data.manifest

    def refresh(self) -> RunState:
        """Fold the events appended since the last call."""
        with self.lock:
            for event in self.rundir.read_new_events():
                apply(self.state, event)
                self.version += 1
                node = event.get("node")
                if node is not None:
                    try:
                        self.changed[int(node)] = self.version
                    except (TypeError, ValueError):
                        pass
            if not self.state.finished:
                self._keeper.check()
            return self.state

    def changed_since(self, version: int) -> List[int]:
        """Nodes changed by events after ``version``."""
        return [node for node, v in self.changed.items() if v > version]

    def summary(self) -> Dict[str, Any]:
        """``runner.query.run_summary`` from the folded state."""
        with self.lock:
            return run_summary(self, self.refresh())

    def layout(self, parameters: bool, force: bool,
               expand: FrozenSet[str] = frozenset()) -> Dict[str, Any]:
        """The laid-out graph (computed once per variant: parameters shown or not, the groups
        expanded; the few most recent variants are kept)."""
        from webui.layout import layout

        with self.lock:
            key = (parameters, frozenset(expand))
            found = self._layouts.pop(key, None)
            if found is None or (force and not found["laid_out"]):
                found = layout(self.manifest, parameters, force, frozenset(expand))
            self._layouts[key] = found  # newest last
            while len(self._layouts) > MAX_LAYOUTS:
                del self._layouts[next(iter(self._layouts))]
            return found

    def drop_heavy(self) -> Optional[RunDir]:
        """Forget the manifest and layouts (they are read again when needed); returns the
        ``RunDir`` that held them, for the caller to close once no request can be using it."""
        with self.lock:
            self._layouts.clear()
            self.workers.clear()
            data, self._data = self._data, None
            return data


class RunCache:
    """Every run of a home, by dispatch id."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._runs: Dict[str, LiveRun] = {}
        self._heavy: "OrderedDict[str, None]" = OrderedDict()
        self._retired: List[RunDir] = []
        self._lock = threading.Lock()

    def get(self, run_id: str) -> Optional[LiveRun]:
        """The run with this exact id, or None (bad id, missing, unreadable, outside the home)."""
        path = security.run_path(self.home, run_id)
        if path is None:
            return None
        with self._lock:
            live = self._runs.get(run_id)
            if live is None or live.stale() or live.path != path:
                live = self._runs[run_id] = LiveRun(path)
        try:
            live.header()
        except RunDirError:
            return None
        return live

    def open(self, run_id: str) -> Optional[LiveRun]:
        """Like ``get``, for a run whose manifest will be read: keeps it among the heavy ones."""
        live = self.get(run_id)
        if live is None:
            return None
        with self._lock:
            self._heavy[run_id] = None
            self._heavy.move_to_end(run_id)
            while len(self._heavy) > HEAVY_RUNS:
                old, _ = self._heavy.popitem(last=False)
                if old in self._runs:
                    # Close what the previous eviction retired: a request still reading
                    # through a just-dropped RunDir keeps a working file descriptor.
                    for retired in self._retired:
                        retired.close()
                    dropped = self._runs[old].drop_heavy()
                    self._retired = [dropped] if dropped is not None else []
        return live

    def all(self) -> List[LiveRun]:
        """Every run directory of the home, refreshed; forgets runs that were removed."""
        seen = {}
        real_home = os.path.realpath(self.home)
        for rundir in iter_runs(self.home):
            run_id = rundir.dispatch_id
            if not security.valid_run_id(run_id):
                continue
            if not os.path.realpath(rundir.path).startswith(real_home + os.sep):
                continue  # a symlink out of the home
            with self._lock:
                live = self._runs.get(run_id)
                if live is None or live.stale():
                    live = self._runs[run_id] = LiveRun(Path(os.path.realpath(rundir.path)))
            seen[run_id] = live
        with self._lock:
            for run_id in list(self._runs):
                if run_id not in seen:
                    del self._runs[run_id]
                    self._heavy.pop(run_id, None)
        return list(seen.values())


def _stamp(path: Path) -> Any:
    try:
        st = os.stat(path / MANIFEST)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)
