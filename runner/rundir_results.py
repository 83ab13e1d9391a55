"""``RunDir``'s reads of outcomes and logs: the one place that resolves a node's outcome (and
its stdout/stderr) from either where format 2.0 may have packed it (``runner.outcome_pack``,
found through ``runner.packed_reads``) or its own file (``results/<node>.pkl``,
``logs/<node>.out|err``, format 1.0 and large outcomes). Every reader of a run's outcomes and
logs goes through these methods: the runner, backends shipping inputs, the cache, ``cov``
and the UI.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Dict, Iterable, List, Optional, Tuple

from runner import layout
from runner.contained import RunDirError, open_contained_dir, open_in
from runner.outcome import OutcomeHeader, header_problem, read_outcome_file, read_outcome_header
from runner.outcome_pack import parse_record
from runner.packed_reads import PackedIndex, PackScan, checked_location, read_region

_STREAM = {"stdout": "out", "stderr": "err", "out": "out", "err": "err"}


class ResultReads:
    """Mixed into ``RunDir`` (which provides the paths, ``open_file`` and the event reads
    that feed ``_packed``)."""

    path: Path
    _packed: PackedIndex
    _events_offset: int  # bytes of events.jsonl this RunDir has read or appended
    _pack_scan: Optional[PackScan]

    if TYPE_CHECKING:  # provided by RunDir / RunPaths
        @property
        def dispatch_id(self) -> str: ...
        def open_file(self, path: "os.PathLike[str] | str") -> BinaryIO: ...
        def result_path(self, node: int) -> Path: ...
        @property
        def events_path(self) -> Path: ...
        def stdout_path(self, node: int) -> Path: ...
        def stderr_path(self, node: int) -> Path: ...

    # -- where ------------------------------------------------------------------------------
    def outcome_location(self, node: int, refresh: bool = True
                         ) -> Optional[Tuple[str, int, int]]:
        """(pack file name in ``results/``, offset, length) of node's packed outcome record
        as the event log records it, or None: its own file (``results/<node>.pkl``), if any.
        ``refresh``: look for events appended since (a ``stat``)."""
        if refresh:
            self._packed.refresh(self.events_path)
        at = self._packed.outcome_at(node)
        if at is None:
            return None
        try:
            return checked_location(at, layout.OUTCOME_PACK_SUFFIX, f"node {node}'s end event")
        except ValueError as exc:
            raise RunDirError(f"run {self.dispatch_id}: {layout.EVENTS}: {exc}") from None

    def packed_at(self, node: int) -> Optional[List[Any]]:
        """``outcome_location`` unchecked, as a list (what the runner hands a pool worker for
        an input; the worker checks it). The runner asks for every input of every task it
        hands out: while the index has noted every event this ``RunDir`` read or appended, it
        holds the input's end already, and no ``stat`` is needed."""
        if self._packed.offset != self._events_offset:
            self._packed.refresh(self.events_path)
        return self._packed.outcome_at(node)

    def log_location(self, node: int, stream: str) -> Optional[Tuple[Path, int, int]]:
        """(pack file, offset, length) of ``node``'s packed ``stream`` (stdout|stderr), or
        None: its own file (``logs/<node>.out|err``), if any, holds it."""
        self._packed.refresh(self.events_path)
        at = self._packed.log_at(node, _STREAM[stream])
        if at is None:
            return None
        try:
            name, offset, length = checked_location(at, layout.LOG_PACK_SUFFIX,
                                                    f"node {node}'s end event")
        except ValueError as exc:
            raise RunDirError(f"run {self.dispatch_id}: {layout.EVENTS}: {exc}") from None
        return self.path / layout.LOGS / name, offset, length

    def _packed_record(self, node: int, loc: Tuple[str, int, int], fd: Optional[int] = None
                       ) -> Tuple[Optional[OutcomeHeader], bytes]:
        """(header, payload) of the record at ``loc`` (read contained, or from ``fd``, the
        pack already open); (None, b"") if absent, cut short, or another node's."""
        name, offset, length = loc
        if fd is None:
            try:
                with self.open_file(Path(layout.RESULTS) / name) as f:
                    data = read_region(f.fileno(), offset, length)
            except FileNotFoundError:
                return None, b""
        else:
            data = read_region(fd, offset, length)
        if data is None:
            return None, b""
        header, payload = parse_record(data)
        if header is None or header.get("node") != node:
            return None, b""
        problem = header_problem(header)
        if problem:
            raise RunDirError(f"run {self.dispatch_id}: {layout.RESULTS}/{name}: {problem}")
        header["at"] = list(loc)
        return header, payload  # type: ignore[return-value]  # checked: header_problem

    # -- outcomes -----------------------------------------------------------------------------
    def outcome_header(self, node: int, attempt: Optional[int] = None
                       ) -> Optional[OutcomeHeader]:
        """The header of node's complete outcome (with ``at`` when it is packed), or None;
        ``RunDirError`` if it is whole but not a header of ours. ``attempt``: that attempt's
        (a dead runner's, whose end was never recorded: the packs are scanned for it). The
        runner's own read (it runs the run's code anyway); readers that show a run to someone
        use ``read_outcome``, which is contained."""
        loc = self.outcome_location(node)
        if loc is not None:
            header: Optional[OutcomeHeader] = self._packed_record(node, loc)[0]
        else:
            try:
                header = read_outcome_header(str(self.result_path(node)))
            except (TypeError, ValueError):  # a "len" that is not a number
                header = {}
            if header is not None:
                problem = header_problem(header)
                if problem:
                    raise RunDirError(f"run {self.dispatch_id}: {layout.outcome_rel(node)}: "
                                      f"{problem}")
        if attempt is not None and (header is None or header.get("attempt", attempt) != attempt):
            if self._pack_scan is None:
                self._pack_scan = PackScan(str(self.path / layout.RESULTS))
            found = self._pack_scan.find(node, attempt)
            if found is not None:
                record = self._packed_record(node, (found[1][0], found[1][1], found[1][2]))[0]
                if record is not None:
                    return record
        return header

    def read_outcome(self, node: int, payload: bool = False
                     ) -> Tuple[Optional[OutcomeHeader], Optional[bytes]]:
        """(header, pickled value) of node's outcome (``runner.outcome``), opened through
        ``open_file``; (None, None) if absent or incomplete, the value None unless ``payload``
        and the task succeeded."""
        loc = self.outcome_location(node)
        if loc is not None:
            header, data = self._packed_record(node, loc)
            if header is None:
                return None, None
            return header, (data if payload and header.get("ok") else None)
        try:
            with self.open_file(self.result_path(node)) as f:
                header, found = read_outcome_file(f, payload)
        except FileNotFoundError:
            return None, None
        if header is None:
            return None, None
        problem = header_problem(header)
        if problem:
            raise RunDirError(f"run {self.dispatch_id}: {layout.outcome_rel(node)}: {problem}")
        return header, found

    def outcome_bytes(self, node: int, at: Optional[List[Any]] = None) -> Optional[bytes]:
        """The whole outcome of ``node`` as an outcome file's bytes (header line and pickle),
        if complete and successful: what ``result.pkl``, the result cache and a redispatch's
        reuse copy of a packed one (of a file of its own they make a hard link). ``at``: its
        location, when the caller knows it before the event log does (the runner ending it)."""
        if at is not None:
            try:
                loc: Optional[Tuple[str, int, int]] = checked_location(
                    at, layout.OUTCOME_PACK_SUFFIX, f"node {node}'s outcome")
            except ValueError as exc:
                raise RunDirError(f"run {self.dispatch_id}: {exc}") from None
        else:
            loc = self.outcome_location(node)
        if loc is not None:
            header, data = self._packed_record(node, loc)
            if header is None or not header.get("ok"):
                return None
            name, offset, length = loc
            with self.open_file(Path(layout.RESULTS) / name) as f:
                return read_region(f.fileno(), offset, length)
        header, payload = self.read_outcome(node, payload=True)
        if header is None or payload is None:
            return None
        with self.open_file(self.result_path(node)) as f:
            return f.read()

    def outcome_is_packed(self, node: int) -> bool:
        """Whether ``node``'s recorded outcome is in a pack (else its own file, if any)."""
        return self.outcome_location(node) is not None

    def read_outputs(self, nodes: Iterable[int]) -> Dict[int, bytes]:
        """The pickled outputs of the tasks among ``nodes`` that completed, read as
        ``read_outcome`` reads one (contained, same checks) but with the results directory
        (and each pack) opened and checked once: what a ``Result`` snapshot of a large run
        reads."""
        found: Dict[int, bytes] = {}
        try:
            dfd = open_contained_dir(self.path, self.dispatch_id, [layout.RESULTS])
        except FileNotFoundError:
            return found
        packs: Dict[str, int] = {}
        self._packed.refresh(self.events_path)  # once for them all
        try:
            for node in nodes:
                loc = self.outcome_location(node, refresh=False)
                if loc is not None:
                    fd = packs.get(loc[0])
                    if fd is None:
                        try:
                            fd = packs[loc[0]] = open_in(dfd, self.dispatch_id,
                                                         [layout.RESULTS, loc[0]])
                        except FileNotFoundError:
                            continue
                    header, payload = self._packed_record(node, loc, fd)
                    if header is not None and header.get("ok"):
                        found[node] = payload
                    continue
                try:
                    f = os.fdopen(open_in(dfd, self.dispatch_id,
                                          [layout.RESULTS, layout.outcome_file(node)]), "rb")
                except FileNotFoundError:
                    continue
                with f:
                    header, data = read_outcome_file(f, payload=True)
                if header is not None:
                    problem = header_problem(header)
                    if problem:
                        raise RunDirError(f"run {self.dispatch_id}: {layout.outcome_rel(node)}: "
                                          f"{problem}")
                if data is not None:
                    found[node] = data
        finally:
            for fd in packs.values():
                os.close(fd)
            os.close(dfd)
        return found

    # -- logs ---------------------------------------------------------------------------------
    def read_log(self, node: int, stream: str) -> str:
        """A task's stdout or stderr ("" if it wrote none), read through ``open_file``."""
        return self.read_log_bytes(node, stream).decode("utf-8", "replace")

    def read_log_bytes(self, node: int, stream: str, offset: int = 0,
                       limit: Optional[int] = None) -> bytes:
        """Bytes of a task's ``stream`` from ``offset`` (at most ``limit``), packed or in its
        own file; b"" if it wrote none. ``OutsideRunError`` for a file leading outside."""
        return self.log_chunk(node, stream, offset, limit)[0]

    def log_chunk(self, node: int, stream: str, offset: int = 0, limit: Optional[int] = None
                  ) -> Tuple[bytes, int]:
        """(bytes from ``offset``, at most ``limit``; the stream's whole size) of a task's
        ``stream``; (b"", 0) if it wrote none."""
        packed = self.log_location(node, stream)
        if packed is not None:
            path, start, length = packed
            want = max(0, length - offset) if limit is None else max(0, min(limit, length - offset))
            try:
                with self.open_file(path) as f:
                    data = read_region(f.fileno(), start + offset, want) if want else b""
            except FileNotFoundError:
                return b"", 0
            return (data or b""), length
        path = self.stdout_path(node) if _STREAM[stream] == "out" else self.stderr_path(node)
        try:
            with self.open_file(path) as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(offset)
                return (f.read() if limit is None else f.read(limit)), size
        except FileNotFoundError:
            return b"", 0
