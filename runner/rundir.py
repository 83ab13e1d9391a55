"""``RunDir``: reading and writing a run directory (its names are ``runner.layout``'s;
docs/run-directory.md describes it).

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
        secrets/          (0700, only when an executor has secret fields) executors.json (0600):
                          their values, by executor key; the Slurm backend's env files. No
                          reader shows it (``runner.redact``)

Single writers: dispatch writes manifest and tasks.pkl before the directory exists under its
final name; exactly one worker (the claim holder's) writes a node's result and logs; events are
appended only under the run lock.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterable, List, Optional, Tuple

from runner.fs import DIR_MODE, FILE_MODE, atomic_write, fsync_dir
from runner.layout import (CANCEL, ENV, EVENTS, EXECUTOR_SECRETS, FINAL_RESULT,  # noqa: F401
                           LOCK, LOGS, MANIFEST, PACK, REPORT, RESULTS, SECRETS, TMP_PREFIX,
                           RunPaths, creating_path, is_run_name, outcome_file, outcome_rel,
                           unreadable_dir)  # the names: re-exported for their readers here
from runner.locks import Lock, acquire_patiently, make_lock
from runner.manifest import Manifest, ManifestError, check_header
from runner.outcome import OutcomeHeader, header_problem, read_outcome_file, read_outcome_header
from runner.state import Event, EventError, RunState, check_event, fold

def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (0600, in a 0700 directory), atomically: the
    modes are the secrets' own, whatever ``FILE_MODE`` and ``DIR_MODE`` become."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path.parent, 0o700)
    atomic_write(path, data, mode=0o600)


class RunDirError(Exception):
    """A run directory that is missing or cannot be read (the message says why).

    Raised for every kind of damage found where data enters: a manifest that is not valid or
    has wrong-typed fields, an event line that is not an event, a cancel request or an outcome
    header of the wrong shape. Readers show such a run as UNREADABLE with this message; the
    runner stops serving it and goes on with the others."""


class OutsideRunError(RunDirError, PermissionError):
    """A path of a run that leads outside its directory (``..``, a symlink) or is not a regular
    file: refused, never opened (a run directory may come from someone else)."""


class RunDir(RunPaths):
    """A view of one run directory; cheap to create, reads lazily."""

    def __init__(self, path: os.PathLike | str) -> None:
        super().__init__(path)
        self._manifest: Optional[Manifest] = None
        self._events_offset = 0
        self._state: Optional[RunState] = None
        self._pack_fd: Optional[int] = None
        self._appended: Optional[List[Event]] = None
        self._lock: Optional[Lock] = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

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
        here. The directory holding the file is opened first and its real path, read back from
        the open descriptor, checked to be inside the run (so swapping a directory for a symlink
        after the check gains nothing); the file is then opened relative to it with O_NOFOLLOW
        (a symlink is refused, not followed) and O_NONBLOCK (a FIFO cannot hang the reader).
        """
        text = os.fspath(path)
        where = os.path.relpath(text, self.path) if os.path.isabs(text) else text
        parts = [p for p in where.split(os.sep) if p not in ("", ".")]
        if "\x00" in text or not parts or ".." in parts:
            raise OutsideRunError(f"{text} is not inside the run directory {self.path}")
        root = os.path.realpath(self.path)
        parent = os.path.join(root, *parts[:-1])
        dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                real = os.readlink(f"/proc/self/fd/{dfd}")
            except OSError:  # no /proc: the path resolved now
                real = os.path.realpath(parent)
            if real != root and not real.startswith(root + os.sep):
                raise OutsideRunError(f"{'/'.join(parts)} of run {self.dispatch_id} leads "
                                      f"outside its directory; not read")
            try:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                             os.O_CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise OutsideRunError(f"{'/'.join(parts)} of run {self.dispatch_id} is a "
                                          f"symbolic link; not followed") from None
                raise
        finally:
            os.close(dfd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutsideRunError(f"{'/'.join(parts)} of run {self.dispatch_id} is not a "
                                  f"regular file; not read")
        return os.fdopen(fd, "rb")

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def create(cls, home: Path, manifest: Manifest, pack: bytes,
               events: Iterable[Event] = (),
               results: Iterable[Tuple[int, Path]] = (),
               secret_values: Optional[Dict[str, Dict[str, Any]]] = None,
               env: Optional[bytes] = None) -> "RunDir":
        """Build the run under a temporary name and rename it into place: whole or absent.
        ``secret_values`` ({executor key: secret fields}) go to a 0600 file, never the manifest.

        Idempotent for a given dispatch id (a sublattice's child, re-created by a re-run of its
        building task): if the run already exists, that run is returned and nothing written."""
        home.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        final = home / manifest.dispatch_id
        # A name of its own: a creator killed half-way leaves its directory, and two creators
        # of one child run never share one.
        tmp = creating_path(home, manifest.dispatch_id, secrets.token_hex(3))
        tmp.mkdir(mode=DIR_MODE)  # the owner's only: inputs, results and logs are inside
        try:
            (tmp / RESULTS).mkdir(mode=DIR_MODE)
            (tmp / LOGS).mkdir(mode=DIR_MODE)
            for node, source in results:  # reused results of a redispatch
                dest = tmp / RESULTS / outcome_file(node)
                try:
                    os.link(source, dest)
                except OSError:
                    atomic_write(dest, Path(source).read_bytes())
            atomic_write(tmp / PACK, pack, fsync=True)
            if secret_values:
                write_private(RunPaths(tmp).executor_secrets_path,
                              json.dumps(secret_values).encode())
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
                with self.open_file(MANIFEST) as f:
                    text = f.read().decode("utf-8")
            except FileNotFoundError:
                raise RunDirError(f"{self.path} is not a run directory (no {MANIFEST})") from None
            except RunDirError:  # OutsideRunError: a symlink, not a manifest
                raise
            except OSError as exc:
                raise RunDirError(f"cannot read {self.manifest_path}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise RunDirError(f"run {self.dispatch_id}: {MANIFEST} is not text "
                                  "(binary or corrupted)") from None
            try:
                self._manifest = Manifest.from_yaml(text)
            except ManifestError as exc:
                raise RunDirError(f"run {self.dispatch_id}: {exc}") from None
        return self._manifest

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
        events = []
        for line in data[:end].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash is followed by whole ones; skip it
            try:
                events.append(check_event(event))
            except EventError as exc:  # whole but wrong: damage, reported every time it is read
                raise RunDirError(f"run {self.dispatch_id}: {EVENTS}: {exc}") from None
        self._events_offset += end
        return events

    def state(self) -> RunState:
        """The run's current state (re-reads only what was appended since the last call)."""
        new = self.read_new_events()
        if self._state is None:
            self._state = RunState()
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

    def take_appended(self) -> Optional[List[Event]]:
        """The events the last ``append_events`` folded without re-reading (else None)."""
        appended, self._appended = self._appended, None
        return appended

    # -- results -------------------------------------------------------------------------
    def outcome_header(self, node: int) -> Optional[OutcomeHeader]:
        """The outcome header of node's result file, or None if absent or incomplete;
        ``RunDirError`` if it is whole but not a header of ours. The runner's own read (it runs
        the run's code anyway); readers that show a run to someone use ``read_outcome``, which
        is contained."""
        path = str(self.result_path(node))
        try:
            header = read_outcome_header(path)
        except (TypeError, ValueError):  # a "len" that is not a number
            header = {}
        if header is None:
            return None
        problem = header_problem(header)
        if problem:
            raise RunDirError(f"run {self.dispatch_id}: {outcome_rel(node)}: {problem}")
        return header

    def read_outcome(self, node: int, payload: bool = False
                     ) -> Tuple[Optional[OutcomeHeader], Optional[bytes]]:
        """(header, pickled value) of node's outcome file (``runner.outcome``), opened through
        ``open_file``; (None, None) if absent or incomplete, the value None unless ``payload``
        and the task succeeded."""
        try:
            with self.open_file(self.result_path(node)) as f:
                header, data = read_outcome_file(f, payload)
        except FileNotFoundError:
            return None, None
        except (TypeError, ValueError):  # not JSON, or a "len" that is not a number
            return None, None
        if header is None:
            return None, None
        problem = header_problem(header)
        if problem:
            raise RunDirError(f"run {self.dispatch_id}: {outcome_rel(node)}: {problem}")
        return header, data

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

    def read_log(self, node: int, stream: str) -> str:
        """A task's stdout or stderr ("" if it wrote none), read through ``open_file``."""
        path = self.stdout_path(node) if stream == "stdout" else self.stderr_path(node)
        try:
            with self.open_file(path) as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

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


def files_stamp(path: os.PathLike | str) -> List[Optional[int]]:
    """When a run's files last changed (manifest, event log, cancel request, results)."""
    stamps: List[Optional[int]] = []
    for name in (MANIFEST, EVENTS, CANCEL, RESULTS):
        try:
            stamps.append(os.stat(os.path.join(path, name)).st_mtime_ns)
        except OSError:
            stamps.append(None)
    return stamps


def mark_unreadable(home: Path, name: str, reason: str) -> None:
    """Record why a runner stopped serving run ``name``, for readers that would not find the
    damage themselves (listings read only the manifest header). Best effort."""
    record = {"reason": reason, "stamp": files_stamp(home / name), "t": time.time()}
    try:
        unreadable_dir(home).mkdir(exist_ok=True)
        atomic_write(unreadable_dir(home) / name, json.dumps(record).encode())
    except OSError:
        pass


def clear_unreadable(home: Path, name: str) -> None:
    try:
        os.unlink(unreadable_dir(home) / name)
    except OSError:
        pass


def unreadable_reasons(home: Path) -> Dict[str, str]:
    """Runs a runner set aside, by name, with why; only while their files are as they were
    then (a repaired run is read again)."""
    try:
        names = os.listdir(unreadable_dir(home))
    except OSError:
        return {}
    found = {}
    for name in names:
        try:
            record = json.loads((unreadable_dir(home) / name).read_text())
            if record["stamp"] == files_stamp(home / name):
                found[name] = str(record["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


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
