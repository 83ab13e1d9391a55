"""``RunDir``: reading and writing a run directory (its names are ``runner.layout``'s;
docs/run-directory.md describes it).

What it holds (format 1.0): ``manifest.yaml`` (the graph), ``tasks.pkl`` (the packed code and
values), ``events.jsonl`` (the state log), ``cancel.json``, ``results/<n>.pkl`` (outcomes,
``runner.outcome``), ``logs/<n>.out|err``, ``result.pkl``, ``env.json``, ``report.html`` and
``secrets/`` (0700; no reader shows it, ``runner.redact``).

Single writers: dispatch writes manifest and tasks.pkl before the directory exists under its
final name (``runner.creation``); exactly one worker (the claim holder's) writes a node's result
and logs (a sublattice node's result: see ``runner.outcome``); events are appended only under
the run lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterable, List, Optional, Tuple, Union

from runner import derived
from runner.contained import (OutsideRunError, RunDirError, open_contained,  # noqa: F401
                              open_contained_dir, open_in)
from runner.creation import create_run_dir
from runner.fs import FILE_MODE, append_whole, atomic_write, write_private  # noqa: F401
from runner.layout import (CANCEL, ENV, EVENTS, EXECUTOR_SECRETS, FINAL_RESULT,  # noqa: F401
                           LOCK, LOGS, MANIFEST, PACK, REPORT, RESULTS, SECRETS, SNAPSHOT,
                           SOURCES, TMP_PREFIX,
                           RunPaths, is_run_name, outcome_file, outcome_rel)  # re-exported
from runner.locks import Lock, acquire_patiently, make_lock
from runner.manifest import Manifest, ManifestError, check_header
from runner.manifest_file import Identity, read_manifest
from runner.packed_reads import PackedIndex, PackScan
from runner.rundir_results import ResultReads
from runner.state import Event, EventError, RunState, check_event, fold
from runner.unreadable import (clear_unreadable, files_stamp, mark_unreadable,  # noqa: F401
                               unreadable_reasons)  # re-exported for their readers here


class RunDir(RunPaths, ResultReads):
    """A view of one run directory; cheap to create, reads lazily."""

    def __init__(self, path: os.PathLike | str) -> None:
        super().__init__(path)
        self._manifest: Optional[Manifest] = None
        self._manifest_identity: Optional[Identity] = None  # of the bytes it was parsed from
        self._events_offset = 0
        # The digest of the event-log bytes folded so far (``events_identity``)
        self._events_digest: Any = hashlib.blake2b(digest_size=20)
        self._state: Optional[RunState] = None
        self._snapshot_read = False
        self._snapshot_file: Optional[derived.Snapshot] = None
        self.began_from_snapshot = False  # whether state() began from the run's snapshot
        self._nodes_from_snapshot = False  # whether the manifest's nodes came from it
        self._pack_fd: Optional[int] = None
        self._appended: Optional[List[Event]] = None
        self._lock: Optional[Lock] = None
        self._packed = PackedIndex()  # where packed outcomes and logs are (format 2.0)
        self._pack_scan: Optional[PackScan] = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def sources(self) -> Optional[Dict[str, Any]]:
        """``sources.json`` (the code as dispatched), or None: a run made before cov captured
        it, or a file that is not such a JSON object."""
        try:
            with self.open_file(SOURCES) as f:
                data = json.loads(f.read(64 << 20))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def recorded_env(self) -> Optional[Dict[str, Any]]:
        """``{"python": ..., "environ": {...}}`` as the dispatch recorded it, or None."""
        try:
            data = json.loads(self.env_path.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("environ"), dict):
            return None
        return data

    def open_file(self, path: os.PathLike | str) -> BinaryIO:
        """Open a file of this run for reading, contained: ``path`` (relative to the run
        directory, or one of this object's paths) must stay inside the run directory, symlinks
        included, and be a regular file; else OutsideRunError (FileNotFoundError if absent).
        Every reader that shows a run (UI, report, ``cov logs``/``result``) opens its files
        here (``runner.contained`` says how)."""
        return open_contained(self.path, self.dispatch_id, path)

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def create(cls, home: Path, manifest: Manifest, pack: bytes,
               events: Iterable[Event] = (),
               results: Iterable[Tuple[int, Union[Path, bytes]]] = (),
               secret_values: Optional[Dict[str, Dict[str, Any]]] = None,
               env: Optional[bytes] = None, sources: Optional[bytes] = None) -> "RunDir":
        """The new run, built whole or not at all (``runner.creation.create_run_dir``), or the
        existing one of that dispatch id."""
        return cls(create_run_dir(home, manifest, pack, events, results, secret_values, env,
                                  sources))

    # -- manifest and pack ---------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            try:
                with self.open_file(MANIFEST) as f:
                    snap = self._snapshot()
                    found = derived.manifest_from(snap, f) if snap is not None else None
                    self._nodes_from_snapshot = found is not None
                    if found is None:
                        if snap is not None:
                            snap.forget("nodes")
                        f.seek(0)
                        with derived.gc_paused():
                            found = read_manifest(f)
                    self._manifest, self._manifest_identity = found
            except FileNotFoundError:
                raise RunDirError(f"{self.path} is not a run directory (no {MANIFEST})") from None
            except RunDirError:  # OutsideRunError: a symlink, not a manifest
                raise
            except OSError as exc:
                raise RunDirError(f"cannot read {self.manifest_path}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise RunDirError(f"run {self.dispatch_id}: {MANIFEST} is not text "
                                  "(binary or corrupted)") from None
            except ManifestError as exc:
                raise RunDirError(f"run {self.dispatch_id}: {exc}") from None
        return self._manifest

    def manifest_identity(self) -> Optional[Identity]:
        """(size, digest) of the manifest file's bytes ``manifest`` was parsed from (None for
        one handed over unparsed: ``adopt_manifest``)."""
        return self._manifest_identity

    def events_identity(self) -> Optional[Identity]:
        """(size, digest) of the event-log bytes ``state()`` has folded, as they were read or
        appended (a state begun from a snapshot: the prefix it stands for, hashed as it was
        checked, and what was read since)."""
        return self._events_offset, self._events_digest.hexdigest()

    def snapshot_is_current(self) -> bool:
        """Whether the run's snapshot stands for exactly the manifest and the events read so
        far (the manifest's nodes and ``state()`` were taken from it, nothing folded since):
        writing it again would write the same."""
        snap = self._snapshot_file
        return (self._nodes_from_snapshot and self.began_from_snapshot and snap is not None
                and self._events_offset == snap.events_id[0])

    def packed_index(self) -> Optional[PackedIndex]:
        """The packed locations noted from exactly the event-log bytes ``state()`` has
        folded (for a snapshot of that state), or None if the index noted more or less."""
        return self._packed if self._packed.offset == self._events_offset else None

    def _snapshot(self) -> Optional[derived.Snapshot]:
        """The run's snapshot (``runner.derived``), read once; None if there is none usable."""
        if not self._snapshot_read:
            self._snapshot_read = True
            self._snapshot_file = derived.load(self.open_file, SNAPSHOT)
        return self._snapshot_file

    def _state_from_snapshot(self) -> None:
        """Begin the state from the snapshot if the event log still begins with the bytes it
        was folded from; else leave it to the fold from the start."""
        snap = self._snapshot()
        if snap is None:
            return
        try:
            with open(self.events_path, "rb") as f:
                digest = derived.prefix_digest(f, snap.events_id)
        except OSError:
            digest = None
        if digest is None:
            snap.forget("state")
            return
        state = snap.state()
        if state is not None:
            self._state = state
            self._events_offset = snap.events_id[0]
            self._events_digest = digest
            self.began_from_snapshot = True
            packed = snap.packed()
            if packed is not None:
                self._packed = packed

    def adopt_manifest(self, manifest: Manifest) -> None:
        """Use ``manifest`` as this run's, unparsed: the creator's own copy of what it wrote
        (``covalent_cli.own_runs`` checks that the file is still that one)."""
        self._manifest = manifest

    def header(self) -> Dict[str, Any]:
        """The manifest's header only (no node list): cheap, for listings."""
        import yaml

        try:
            with self.open_file(MANIFEST) as f:
                head = b""
                while b"\nnodes:\n" not in head:
                    chunk = f.read(65536)
                    if not chunk:
                        break
                    head += chunk
        except FileNotFoundError:
            raise RunDirError(f"{self.path} is not a run directory (no {MANIFEST})") from None
        except OSError as exc:
            raise RunDirError(f"cannot read {self.manifest_path}: {exc.strerror}") from None
        try:
            text = head.split(b"\nnodes:\n", 1)[0].decode("utf-8")
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except (UnicodeDecodeError, yaml.YAMLError):
            data = None
        if not isinstance(data, dict) or "dispatch_id" not in data:
            raise RunDirError(f"run {self.dispatch_id}: {MANIFEST} is corrupted")
        try:
            return check_header(data)
        except ManifestError as exc:
            raise RunDirError(f"run {self.dispatch_id}: {exc}") from None

    def executor_secrets(self, key: str) -> Dict[str, Any]:
        """The secret fields of the run's executor ``key`` ({} when it has none)."""
        try:
            with open(self.executor_secrets_path, encoding="utf-8") as f:
                found = json.load(f).get(key)
        except (OSError, ValueError, AttributeError):
            return {}
        return found if isinstance(found, dict) else {}

    def read_blob(self, blob: Tuple[int, int]) -> bytes:
        """The bytes of one packed pickle."""
        if self._pack_fd is None:
            with self.open_file(PACK) as f:
                self._pack_fd = os.dup(f.fileno())
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
    def lock(self, timeout: float = 60.0) -> Lock:
        """The run lock: held while appending events or changing the cancel request. One
        object per ``RunDir``: a soft lock's contender measures how long a marker has gone
        unrenewed across its attempts, which a fresh object would start again from zero."""
        if self._lock is None:
            self._lock = make_lock(str(self.lock_path), timeout=timeout)
        self._lock.timeout = timeout
        return self._lock

    def read_new_events(self) -> List[Event]:
        """Events appended since the last call (complete lines only)."""
        try:
            if os.stat(self.events_path).st_size == self._events_offset:
                return []  # a stat is much cheaper than an open on the hot path
            with open(self.events_path, "rb") as f:
                f.seek(self._events_offset)
                data = f.read()
        except FileNotFoundError:
            return []
        except OSError as exc:  # a directory in its place, an I/O error
            raise RunDirError(f"cannot read {self.events_path}: {exc.strerror or exc}") from None
        end = data.rfind(b"\n") + 1
        lines = data[:end].splitlines()
        with derived.gc_paused():
            parsed = _decode_all(lines)
        events = []
        try:
            if parsed is not None:
                events = [check_event(event) for event in parsed]
            else:
                for line in lines:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue  # a line torn by a crash is followed by whole ones; skip it
                    events.append(check_event(event))
        except EventError as exc:  # whole but wrong: damage, reported every time it is read
            raise RunDirError(f"run {self.dispatch_id}: {EVENTS}: {exc}") from None
        self._packed.note(events, self._events_offset, self._events_offset + end)
        self._events_offset += end
        self._events_digest.update(memoryview(data)[:end])
        return events

    def state(self) -> RunState:
        """The run's current state (re-reads only what was appended since the last call; a
        finished run's snapshot stands for the events it was folded from)."""
        if self._state is None and self._events_offset == 0:
            self._state_from_snapshot()
        new = self.read_new_events()
        if self._state is None:
            self._state = RunState()
        with derived.gc_paused():
            return fold(new, self._state)

    def append_events(self, events: List[Event], fsync: bool = False) -> None:
        """Append events; the caller holds the run lock and has read every earlier event
        (``read_new_events``), so the appended ones are folded into ``state()`` directly."""
        if not events:
            return
        now = time.time()
        stamped: List[Event] = [{"t": e.pop("t", now), **e} for e in events]
        data = "".join(json.dumps(e) + "\n" for e in stamped).encode()
        fd = os.open(self.events_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            start = os.fstat(fd).st_size
            if start and start != self._events_offset and os.pread(fd, 1, start - 1) != b"\n":
                # A writer killed mid-write (or cut short by a full disk) left a torn last
                # line: end it, or our first event would fuse with it and be lost to readers.
                data = b"\n" + data
            append_whole(fd, data, start)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._packed.note(stamped, start, start + len(data))
        if start == self._events_offset:  # nobody else wrote in between: no need to re-read
            self._events_offset += len(data)
            self._events_digest.update(data)
            if self._state is not None:
                fold(stamped, self._state)
            self._appended = stamped
        else:
            self._appended = None

    def take_appended(self) -> Optional[List[Event]]:
        """The events the last ``append_events`` folded without re-reading (else None)."""
        appended, self._appended = self._appended, None
        return appended

    # -- results: runner.rundir_results (ResultReads) ---------------------------------
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
        _, payload = self.read_outcome(node, payload=True)
        if payload is None:
            raise RunDirError(f"run {self.dispatch_id}: node {node} has no complete result")
        return payload

    # -- cancel --------------------------------------------------------------------------
    def cancel_request(self) -> Optional[Dict[str, Any]]:
        """``{"all": bool, "nodes": [ids]}`` if a cancel was requested. A file that is not JSON
        is no request (the runner ignores it); JSON of another shape is ``RunDirError``."""
        try:
            with self.open_file(CANCEL) as f:
                request = json.loads(f.read())
        except (FileNotFoundError, ValueError):
            return None
        except RunDirError:  # OutsideRunError
            raise
        except OSError as exc:
            raise RunDirError(f"cannot read {self.cancel_path}: {exc.strerror}") from None
        nodes = request.get("nodes", []) if isinstance(request, dict) else None
        if not isinstance(request, dict) or not isinstance(request.get("all", False), bool) or \
                not isinstance(nodes, list) or \
                not all(isinstance(n, int) and not isinstance(n, bool) for n in nodes):
            raise RunDirError(f"run {self.dispatch_id}: {CANCEL} is not a cancel request "
                              f'(expected {{"all": true|false, "nodes": [ids]}}); remove it')
        return {**request, "all": request.get("all", False), "nodes": nodes}

    def request_cancel(self, nodes: Optional[Iterable[int]] = None, wait: float = 60.0,
                       on_busy: Optional[Callable[[str], None]] = None) -> None:
        """Record a cancel request for the whole run or for some nodes. If the run's lock is
        held, ``on_busy`` is told by whom (``pid N on HOST``) and the lock is waited for up
        to ``wait`` seconds, then ``LockBusy``."""
        lock = self.lock(timeout=wait)
        acquire_patiently(lock, str(self.lock_path), wait, on_busy)
        try:
            current = self.cancel_request() or {"all": False, "nodes": []}
            if nodes is None:
                current["all"] = True
            else:
                current["nodes"] = sorted(set(current["nodes"]) | {int(n) for n in nodes})
            current["t"] = time.time()
            atomic_write(self.cancel_path, json.dumps(current).encode())
        finally:
            lock.release()


def _decode_all(lines: List[bytes]) -> Optional[List[Any]]:
    """Every line's JSON value in one decode (a 100,000-event log: ~0.9 s against ~1.2 s one
    json.loads a line), or None if a line is not exactly one value (a torn line, a blank one):
    those logs are read line by line."""
    if len(lines) < 2:
        return None
    try:
        values = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        return None
    return values if len(values) == len(lines) else None
