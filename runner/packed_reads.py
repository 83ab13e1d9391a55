"""Finding a node's outcome and logs in a format 2.0 run, where a pool worker may have packed
them (``runner.outcome_pack``): what ``RunDir`` asks before it falls back to the per-node
files of format 1.0 (``results/<node>.pkl``, ``logs/<node>.out|err``).

The index is the event log: an ``end`` event carries ``at`` (the outcome record's location)
and ``log_at`` (the logs'). ``PackedIndex`` keeps the latest of each node, noted from the
events its ``RunDir`` reads or appends, or read on its own when a reader asks before reading
them (the UI reads results with another ``RunDir`` than the one it folds events with); it
never consumes events another reader of the same ``RunDir`` waits for.

A runner that takes a dead runner's claims over finds an attempt whose ``end`` event was never
written by scanning the packs (``PackScan``): the worker appended the record, the runner died
before recording it, and the result must not be lost.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

from runner import layout
from runner.outcome_pack import Location, read_at, scan, valid_location

_Entry = Tuple[Optional[List[Any]], Optional[Dict[str, Any]], bool]  # at, log_at, completed


class PackedIndex:
    """The latest ``at``/``log_at`` of each node that has any, from a run's ``end`` events."""

    def __init__(self) -> None:
        self.located: Dict[int, _Entry] = {}
        self.offset = 0  # bytes of events.jsonl noted

    def note(self, events: Iterable[Any], start: int, end: int) -> None:
        """``events``: those of bytes ``start`` to ``end`` of the log (read or appended)."""
        if start != self.offset:
            return  # not contiguous with what was noted: ``refresh`` reads it itself
        for event in events:
            self._note(event)
        self.offset = end

    def _note(self, event: Any) -> None:
        if not isinstance(event, dict) or event.get("ev") != "end":
            return
        node = event.get("node")
        if type(node) is not int:
            return
        at, log_at = event.get("at"), event.get("log_at")
        known = self.located.get(node)
        completed = event.get("status") == "COMPLETED"
        if known is not None and known[2] and not completed:
            return  # a finished result is never replaced by a later failure (state.apply)
        if at is None and log_at is None and known is None:
            return  # per-node files: nothing to remember (a 1.0 run costs no memory)
        self.located[node] = (at if isinstance(at, list) else None,
                              log_at if isinstance(log_at, dict) else None, completed)

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
                self._note(json.loads(line))
            except ValueError:
                continue  # a torn line: readers skip it
        self.offset += end

    def outcome_at(self, node: int) -> Optional[List[Any]]:
        entry = self.located.get(node)
        return entry[0] if entry else None

    def log_at(self, node: int, stream: str) -> Optional[List[Any]]:
        """``stream``: ``out`` or ``err``."""
        entry = self.located.get(node)
        found = entry[1].get(stream) if entry and entry[1] else None
        return found if isinstance(found, list) else None


class PackScan:
    """The records of a run's outcome packs by (node, attempt), read incrementally (packs are
    append-only): a dead runner's attempts whose end was never recorded."""

    def __init__(self, results: str) -> None:
        self.results = results
        self.scanned: Dict[str, int] = {}  # pack name -> bytes scanned
        self.found: Dict[Tuple[int, int], Tuple[Dict[str, Any], Location]] = {}

    def find(self, node: int, attempt: int) -> Optional[Tuple[Dict[str, Any], Location]]:
        """(header, location) of the last whole record of ``node``'s ``attempt``, or None."""
        self._scan()
        return self.found.get((node, attempt))

    def _scan(self) -> None:
        try:
            names = [n for n in os.listdir(self.results)
                     if layout.is_pack_name(n, layout.OUTCOME_PACK_SUFFIX)]
        except OSError:
            return
        for name in names:
            try:
                fd = os.open(os.path.join(self.results, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                done = self.scanned.get(name, 0)
                for offset, length, header in scan(fd, done):
                    node, attempt = header.get("node"), header.get("attempt")
                    if type(node) is int and type(attempt) is int:
                        self.found[(node, attempt)] = (header, [name, offset, length])
                    done = offset + length
                self.scanned[name] = done
            finally:
                os.close(fd)


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
