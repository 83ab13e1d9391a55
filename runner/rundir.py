"""``RunDir``: the only code that knows the run directory's layout (docs/run-directory.md).

Layout (format 1)::

    <home>/<dispatch_id>/
        manifest.yaml     the graph; written once by dispatch
        tasks.pkl         cloudpickled functions, parameter values, workflow and inputs, packed;
                          offsets in manifest.yaml; written once by dispatch
        events.jsonl      append-only state log; written by runners, under ``run.lock``
        run.lock          the run's lock file (never deleted)
        cancel.json       cancel request; written by ``cov cancel``/``ct.cancel`` under the lock
        results/<n>.pkl   node n's outcome (JSON header line + pickle); written by the worker
        logs/<n>.out|err  node n's stdout/stderr; written by the worker
        result.pkl        the lattice's outcome (a hard link to the output node's result)
        env.json          the dispatch's interpreter and environment variables (mode 0600;
                          optional: runs without it run in the runner's environment)
        report.html       a static report; written (and rewritten) only by ``cov report``

Single writers: dispatch writes manifest and tasks.pkl before the directory exists under its
final name; exactly one worker (the claim holder's) writes a node's result and logs; events are
appended only under the run lock.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from runner import worker
from runner.fs import atomic_write, fsync_dir
from runner.locks import make_lock
from runner.manifest import Manifest, ManifestError
from runner.state import RunState, fold

MANIFEST = "manifest.yaml"
PACK = "tasks.pkl"
EVENTS = "events.jsonl"
LOCK = "run.lock"
CANCEL = "cancel.json"
RESULTS = "results"
LOGS = "logs"
FINAL_RESULT = "result.pkl"
REPORT = "report.html"
ENV = "env.json"
TMP_PREFIX = ".tmp-"


class RunDirError(Exception):
    """A run directory that is missing or cannot be read."""


class RunDir:
    """A view of one run directory; cheap to create, reads lazily."""

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = Path(path)
        self._manifest: Optional[Manifest] = None
        self._events_offset = 0
        self._state: Optional[RunState] = None
        self._pack_fd: Optional[int] = None
        self._appended: Optional[List[Dict[str, Any]]] = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- paths ---------------------------------------------------------------------------
    @property
    def dispatch_id(self) -> str:
        return self.path.name

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def pack_path(self) -> Path:
        return self.path / PACK

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    @property
    def cancel_path(self) -> Path:
        return self.path / CANCEL

    @property
    def results_dir(self) -> Path:
        return self.path / RESULTS

    @property
    def logs_dir(self) -> Path:
        return self.path / LOGS

    @property
    def final_result_path(self) -> Path:
        return self.path / FINAL_RESULT

    @property
    def report_path(self) -> Path:
        return self.path / REPORT

    @property
    def env_path(self) -> Path:
        return self.path / ENV

    def recorded_env(self) -> Optional[Dict[str, Any]]:
        """``{"python": ..., "environ": {...}}`` as the dispatch recorded it, or None."""
        try:
            data = json.loads(self.env_path.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("environ"), dict):
            return None
        return data

    def result_path(self, node: int) -> Path:
        return self.results_dir / f"{node}.pkl"

    def stdout_path(self, node: int) -> Path:
        return self.logs_dir / f"{node}.out"

    def stderr_path(self, node: int) -> Path:
        return self.logs_dir / f"{node}.err"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def create(cls, home: Path, manifest: Manifest, pack: bytes,
               events: Iterable[Dict[str, Any]] = (),
               results: Iterable[Tuple[int, Path]] = (),
               env: Optional[bytes] = None) -> "RunDir":
        """Build the run under a temporary name and rename it into place: whole or absent.

        Idempotent for a given dispatch id (a sublattice's child, re-created by a re-run of its
        building task): if the run already exists, that run is returned and nothing written."""
        home.mkdir(parents=True, exist_ok=True)
        final = home / manifest.dispatch_id
        # A name of its own: a creator killed half-way leaves its directory, and two creators
        # of one child run never share one.
        tmp = home / f"{TMP_PREFIX}{manifest.dispatch_id}.{secrets.token_hex(3)}"
        tmp.mkdir()
        try:
            (tmp / RESULTS).mkdir()
            (tmp / LOGS).mkdir()
            for node, source in results:  # reused results of a redispatch
                dest = tmp / RESULTS / f"{node}.pkl"
                try:
                    os.link(source, dest)
                except OSError:
                    atomic_write(dest, Path(source).read_bytes())
            atomic_write(tmp / PACK, pack, fsync=True)
            if env is not None:  # secrets may be in it: readable by the user only
                fd = os.open(tmp / ENV, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    _append_whole(fd, env, 0)
                finally:
                    os.close(fd)
            lines = "".join(json.dumps(e) + "\n" for e in events)
            atomic_write(tmp / EVENTS, lines.encode(), fsync=bool(lines))
            atomic_write(tmp / MANIFEST, manifest.to_yaml().encode(), fsync=True)
            fsync_dir(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / MANIFEST).is_file():
                    raise
                _remove_tree(tmp)  # another creator of this run won: it is whole
                return cls(final)
            fsync_dir(home)
        except BaseException:
            _remove_tree(tmp)
            raise
        return cls(final)

    # -- manifest and pack ---------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            try:
                text = self.manifest_path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise RunDirError(f"{self.path} is not a run directory (no {MANIFEST})") from None
            except OSError as exc:
                raise RunDirError(f"cannot read {self.manifest_path}: {exc.strerror}") from None
            try:
                self._manifest = Manifest.from_yaml(text)
            except ManifestError as exc:
                raise RunDirError(f"run {self.dispatch_id}: {exc}") from None
        return self._manifest

    def header(self) -> Dict[str, Any]:
        """The manifest's header only (no node list): cheap, for listings."""
        import yaml

        from runner.manifest import check_format_version

        try:
            with open(self.manifest_path, "rb") as f:
                head = b""
                while b"\nnodes:\n" not in head:
                    chunk = f.read(65536)
                    if not chunk:
                        break
                    head += chunk
        except FileNotFoundError:
            raise RunDirError(f"{self.path} is not a run directory (no {MANIFEST})") from None
        text = head.split(b"\nnodes:\n", 1)[0].decode("utf-8", "replace")
        try:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            data = None
        if not isinstance(data, dict) or "dispatch_id" not in data:
            raise RunDirError(f"run {self.dispatch_id}: manifest.yaml is corrupted")
        try:
            check_format_version(str(data.get("format_version", "")))
        except ManifestError as exc:
            raise RunDirError(f"run {self.dispatch_id}: {exc}") from None
        return data

    def read_blob(self, blob: Tuple[int, int]) -> bytes:
        """The bytes of one packed pickle."""
        if self._pack_fd is None:
            self._pack_fd = os.open(self.pack_path, os.O_RDONLY)
        offset, length = blob
        data = os.pread(self._pack_fd, length, offset)
        if len(data) != length:
            raise RunDirError(f"run {self.dispatch_id}: {PACK} is truncated")
        return data

    def close(self) -> None:
        if self._pack_fd is not None:
            os.close(self._pack_fd)
            self._pack_fd = None

    # -- events and state ----------------------------------------------------------------
    def lock(self, timeout: float = 60.0):
        """The run lock: held while appending events or changing the cancel request."""
        return make_lock(str(self.lock_path), timeout=timeout)

    def read_new_events(self) -> List[Dict[str, Any]]:
        """Events appended since the last call (complete lines only)."""
        try:
            if os.stat(self.events_path).st_size == self._events_offset:
                return []  # a stat is much cheaper than an open on the hot path
            with open(self.events_path, "rb") as f:
                f.seek(self._events_offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        events = []
        for line in data[:end].splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a line torn by a crash is followed by whole ones; skip it
        self._events_offset += end
        return events

    def state(self) -> RunState:
        """The run's current state (re-reads only what was appended since the last call)."""
        new = self.read_new_events()
        if self._state is None:
            self._state = RunState()
        return fold(new, self._state)

    def append_events(self, events: List[Dict[str, Any]], fsync: bool = False) -> None:
        """Append events; the caller holds the run lock and has read every earlier event
        (``read_new_events``), so the appended ones are folded into ``state()`` directly."""
        if not events:
            return
        now = time.time()
        stamped = [{"t": e.pop("t", now), **e} for e in events]
        data = "".join(json.dumps(e) + "\n" for e in stamped).encode()
        fd = os.open(self.events_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(fd).st_size
            if start and start != self._events_offset and os.pread(fd, 1, start - 1) != b"\n":
                # A writer killed mid-write (or cut short by a full disk) left a torn last
                # line: end it, or our first event would fuse with it and be lost to readers.
                data = b"\n" + data
            _append_whole(fd, data, start)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if start == self._events_offset:  # nobody else wrote in between: no need to re-read
            self._events_offset += len(data)
            if self._state is not None:
                fold(stamped, self._state)
            self._appended = stamped
        else:
            self._appended = None

    def take_appended(self) -> Optional[List[Dict[str, Any]]]:
        """The events the last ``append_events`` folded without re-reading (else None)."""
        appended, self._appended = self._appended, None
        return appended

    # -- results -------------------------------------------------------------------------
    def outcome_header(self, node: int) -> Optional[Dict[str, Any]]:
        """The outcome header of node's result file, or None if absent or incomplete."""
        return worker.read_outcome_header(str(self.result_path(node)))

    def load_output(self, node: int) -> Any:
        """The deserialized output of a node (parameter value or task result)."""
        import cloudpickle  # noqa: F401  (by-value objects need it importable)
        import pickle

        return pickle.loads(self.output_bytes(node))

    def output_bytes(self, node: int) -> bytes:
        """The pickled output of a node."""
        spec = self.manifest.node(node)
        if spec.kind == "parameter":
            assert spec.blob is not None
            return self.read_blob(spec.blob)
        payload = worker.read_outcome_payload(str(self.result_path(node)))
        if payload is None:
            raise RunDirError(f"run {self.dispatch_id}: node {node} has no complete result")
        return payload

    def read_log(self, node: int, stream: str) -> str:
        path = self.stdout_path(node) if stream == "stdout" else self.stderr_path(node)
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # -- cancel --------------------------------------------------------------------------
    def cancel_request(self) -> Optional[Dict[str, Any]]:
        """``{"all": bool, "nodes": [ids]}`` if a cancel was requested."""
        try:
            return json.loads(self.cancel_path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def request_cancel(self, nodes: Optional[Iterable[int]] = None) -> None:
        """Record a cancel request for the whole run or for some nodes."""
        with self.lock():
            current = self.cancel_request() or {"all": False, "nodes": []}
            if nodes is None:
                current["all"] = True
            else:
                current["nodes"] = sorted(set(current["nodes"]) | {int(n) for n in nodes})
            current["t"] = time.time()
            atomic_write(self.cancel_path, json.dumps(current).encode())


def _append_whole(fd: int, data: bytes, start: int) -> None:
    """Append all of ``data`` or nothing: what a failed write (a full disk) left is cut off
    again, so the log never keeps half an event. The caller holds the run lock."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.ftruncate(fd, start)
        raise


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
