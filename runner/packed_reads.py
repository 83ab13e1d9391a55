"""Finding a node's outcome and logs in a format 2.0 run, where a pool worker may have packed
them (``runner.outcome_pack``): what ``RunDir`` asks before it falls back to the per-node
files of format 1.0 (``results/<node>.pkl``, ``logs/<node>.out|err``).

The index is the event log: an ``end`` event carries ``at`` (the outcome record's location)
and ``log_at`` (the logs'). ``PackedIndex`` keeps the latest of each node, noted from the
events its ``RunDir`` reads or appends, or read on its own when a reader asks before reading
them (the UI reads results with another ``RunDir`` than the one it folds events with); it
never consumes events another reader of the same ``RunDir`` waits for. The fold
(``runner.state``) does not keep the locations: only this index does, compactly.

A runner that takes a dead runner's claims over finds an attempt whose ``end`` event was never
written by scanning the packs (``PackScan``): the worker appended the record, the runner died
before recording it, and the result must not be lost.
"""
from __future__ import annotations

import json
import os
import time
from array import array
from typing import Any, Dict, Iterable, List, Optional, Tuple

from runner import layout
from runner.outcome_pack import Location, read_at, scan, valid_location

_NONE = -1  # no packed location for this node (an array slot)


class PackedIndex:
    """The latest packed location of each node's outcome and streams, from a run's ``end``
    events. Kept in arrays indexed by node id (a pack name is stored once): a runner serving a
    100,000-task run holds ~3 MB here, where a dict of lists took ~25 MB."""

    KINDS = ("at", "out", "err")

    def __init__(self) -> None:
        self.offset = 0  # bytes of events.jsonl noted
        self.names: List[str] = []
        self._name_ids: Dict[str, int] = {}
        # per kind: the pack name's id, the offset and the length, indexed by node
        self._name = {k: array("i") for k in self.KINDS}
        self._at = {k: array("q") for k in self.KINDS}
        self._len = {k: array("i") for k in self.KINDS}

    def note(self, events: Iterable[Any], start: int, end: int) -> None:
        """``events``: those of bytes ``start`` to ``end`` of the log (read or appended)."""
        if start != self.offset:
            return  # not contiguous with what was noted: ``refresh`` reads it itself
        for event in events:
            if type(event) is dict and event.get("ev") == "end":
                self._note(event)
        self.offset = end

    def _note(self, event: Dict[str, Any]) -> None:
        node = event.get("node")
        if type(node) is not int or node < 0:
            return
        at, log_at = event.get("at"), event.get("log_at")
        if at is None and log_at is None:
            # a completed end without one: the outcome is a file of its own now (a cache
            # hit, a sublattice's); a failure without one leaves what an earlier attempt
            # wrote, as its outcome file would stay in format 1.0
            if event.get("status") == "COMPLETED" and node < len(self._name["at"]):
                for kind in self.KINDS:
                    self._name[kind][node] = _NONE
            return
        logs = log_at if isinstance(log_at, dict) else {}
        for kind, where in (("at", at), ("out", logs.get("out")), ("err", logs.get("err"))):
            self._set(kind, node, where)

    def _set(self, kind: str, node: int, where: Any) -> None:
        names, offsets, lengths = self._name[kind], self._at[kind], self._len[kind]
        if node >= len(names):
            grow = node + 1 - len(names)
            names.extend([_NONE] * grow)
            offsets.extend([0] * grow)
            lengths.extend([0] * grow)
        if not (isinstance(where, list) and len(where) == 3 and isinstance(where[0], str)
                and type(where[1]) is int and type(where[2]) is int
                and 0 <= where[1] < 1 << 62 and 0 <= where[2] < 1 << 31):
            names[node] = _NONE if where is None else -2  # -2: damage, reported when read
            return
        name_id = self._name_ids.get(where[0])
        if name_id is None:
            name_id = self._name_ids[where[0]] = len(self.names)
            self.names.append(where[0])
        names[node], offsets[node], lengths[node] = name_id, where[1], where[2]

    def refresh(self, events_path: "os.PathLike[str] | str") -> None:
        """Note the events appended since what was noted (a ``stat`` when nothing was)."""
        try:
            if os.stat(events_path).st_size == self.offset:
                return
            with open(events_path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            if b'"end"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn line: readers skip it
            if type(event) is dict and event.get("ev") == "end":
                self._note(event)
        self.offset += end

    def _get(self, kind: str, node: int) -> Optional[List[Any]]:
        names = self._name[kind]
        if node < 0 or node >= len(names) or names[node] == _NONE:
            return None
        if names[node] < 0:
            return ["(not a location)", -1, -1]  # damage: the reader's check names it
        return [self.names[names[node]], self._at[kind][node], self._len[kind][node]]

    def outcome_at(self, node: int) -> Optional[List[Any]]:
        """``[pack name, offset, length]`` of node's packed outcome record, or None."""
        return self._get("at", node)

    def log_at(self, node: int, stream: str) -> Optional[List[Any]]:
        """``stream``: ``out`` or ``err``."""
        return self._get(stream, node)


class PackTail:
    """The whole records appended to a run's outcome packs since the last look (packs are
    append-only, so each is read from where the last look stopped, and a torn tail is read
    again once it is whole). What a Slurm pilot backend learns its tasks' ends from: the
    blocks' workers append them on their nodes."""

    RELIST = 1.0  # seconds between two listings of results/ (new packs: a new worker's)

    def __init__(self, results: str) -> None:
        self.results = results
        self.scanned: Dict[str, int] = {}  # pack name -> bytes scanned
        self.listed_at = -self.RELIST

    def new_records(self, relist: bool = True) -> List[Tuple[Dict[str, Any], Location]]:
        """(header, location) of each record appended since the last call, whose header
        names its ``node`` and ``attempt``. ``relist=False``: the packs known, and a new
        listing of ``results/`` only ``RELIST`` seconds after the last (on NFS a listing is
        a round trip to the metadata server; the packs' growth is not)."""
        found: List[Tuple[Dict[str, Any], Location]] = []
        now = time.monotonic()
        if relist or now - self.listed_at >= self.RELIST:
            try:
                for name in os.listdir(self.results):
                    if layout.is_pack_name(name, layout.OUTCOME_PACK_SUFFIX):
                        self.scanned.setdefault(name, 0)
            except OSError:
                return found
            self.listed_at = now
        for name in list(self.scanned):
            try:  # opened anew each time: on NFS an open revalidates the file's size
                fd = os.open(os.path.join(self.results, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                done = self.scanned.get(name, 0)
                for offset, length, header in scan(fd, done):
                    node, attempt = header.get("node"), header.get("attempt")
                    if type(node) is int and type(attempt) is int:
                        found.append((header, [name, offset, length]))
                    done = offset + length
                self.scanned[name] = done
            finally:
                os.close(fd)
        return found


class PackScan(PackTail):
    """The records of a run's outcome packs by (node, attempt), read incrementally: a dead
    runner's attempts whose end was never recorded."""

    def __init__(self, results: str) -> None:
        super().__init__(results)
        self.found: Dict[Tuple[int, int], Tuple[Dict[str, Any], Location]] = {}

    def find(self, node: int, attempt: int) -> Optional[Tuple[Dict[str, Any], Location]]:
        """(header, location) of the last whole record of ``node``'s ``attempt``, or None."""
        for header, at in self.new_records():
            self.found[(header["node"], header["attempt"])] = (header, at)
        return self.found.get((node, attempt))


def checked_location(at: Any, suffix: str, what: str) -> Tuple[str, int, int]:
    """``at`` as (name, offset, length), or ``ValueError`` naming ``what`` (damage)."""
    found = valid_location(at, suffix)
    if found is None:
        raise ValueError(f"{what} has an invalid pack location {at!r}")
    return found


def read_region(fd: int, offset: int, length: int) -> Optional[bytes]:
    """The ``length`` bytes at ``offset``, or None if the file is shorter (a pack cut short
    by a machine crash: what pointed there counts as absent)."""
    data = read_at(fd, offset, length)
    return data if len(data) == length else None
