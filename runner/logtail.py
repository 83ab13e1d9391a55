"""Reading tasks' stdout and stderr while they grow: what ``cov logs [-f]`` and the web UI's
live task view read. Read-only, and contained (``RunDir.open_file``): the run may be someone
else's.

A task's ``logs/<node>.out``/``.err`` grows while the task runs (docs/run-directory.md, "Live
output"): the local pool links a task's capture file there once the task has run a moment, an
SSH task's output is streamed into it, a Slurm or shared-filesystem SSH task writes it
directly. When the task ends the file is whole. A file that got shorter than what a reader
already read was restarted (a new attempt): the reader starts again from its beginning.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from runner.query_failures import failed_tasks
from runner.rundir import OutsideRunError, RunDir, RunDirError

STREAMS = ("stdout", "stderr")
READ_LIMIT = 1 << 20  # bytes returned by one read: a follower catches up in steps


@dataclass
class LogChunk:
    """Bytes of a task's stream from ``offset``; ``size``: the file's size when read."""

    data: bytes
    offset: int
    size: int
    restarted: bool = False  # the file was shorter than the offset asked for: read from 0
    refused: Optional[str] = None  # why it was not read (it leads outside the run)

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


def log_path(run: RunDir, node: int, stream: str) -> Path:
    """``logs/<node>.out`` or ``.err``."""
    return run.stdout_path(node) if stream == "stdout" else run.stderr_path(node)


def read_log(run: RunDir, node: int, stream: str, offset: int = 0,
             limit: int = READ_LIMIT) -> LogChunk:
    """What ``node``'s ``stream`` holds from ``offset`` (at most ``limit`` bytes); an absent
    file is empty. Never raises for the file itself: a file that leads outside the run is
    ``refused``. A packed log (format 2.0: a finished task's short output) is read from its
    place in the logs pack, as if it were a file of its own."""
    try:
        packed = run.log_location(node, stream)
    except RunDirError as exc:
        return LogChunk(b"", offset, 0, refused=str(exc))
    if packed is not None:
        return _guarded(offset, lambda: _read_packed(run, packed, offset, limit))
    return _guarded(offset, lambda: _read_file(run, log_path(run, node, stream), offset, limit))


def _guarded(offset: int, read: Callable[[], LogChunk]) -> LogChunk:
    """``read()``, with an absent file read as empty and an unreadable one ``refused``."""
    try:
        return read()
    except FileNotFoundError:
        return LogChunk(b"", 0, 0, restarted=offset > 0)
    except OutsideRunError as exc:
        return LogChunk(b"", offset, 0, refused=str(exc))
    except OSError as exc:
        return LogChunk(b"", offset, 0, refused=f"{exc.strerror or exc}")


def _read_file(run: RunDir, path: Path, offset: int, limit: int) -> LogChunk:
    with run.open_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        restarted = offset > size
        start = 0 if restarted else offset
        f.seek(start)
        data = f.read(limit) if size > start else b""
    return LogChunk(data, start, max(size, start + len(data)), restarted=restarted)


def _read_packed(run: RunDir, packed: Tuple[Path, int, int], offset: int,
                 limit: int) -> LogChunk:
    path, start, size = packed
    restarted = offset > size
    begin = 0 if restarted else offset
    with run.open_file(path) as f:
        data = os.pread(f.fileno(), min(limit, size - begin), start + begin) \
            if size > begin and limit > 0 else b""
    return LogChunk(data, begin, size, restarted=restarted)


def read_tail(run: RunDir, node: int, stream: str, limit: int) -> LogChunk:
    """The last ``limit`` bytes of ``node``'s ``stream``."""
    first = read_log(run, node, stream, 0, 0)
    if first.refused:
        return first
    return read_log(run, node, stream, max(0, first.size - limit), limit)


@dataclass(frozen=True)
class ChildTask:
    """A task of a sublattice's child run, reached from a node of the run shown."""

    run: RunDir
    node: int
    name: str
    via: Tuple[int, ...]  # the sublattice nodes leading to it, outermost first


def failed_child_tasks(run: RunDir, nodes: Optional[List[int]] = None) -> Iterator[ChildTask]:
    """The tasks whose own failure made the child runs of ``run``'s failed sublattice nodes
    (of ``nodes``, or of every node) fail, at any depth, in node order
    (``query_failures.failed_tasks``: child runs are looked up beside ``run``, by a plain run
    name only)."""
    try:
        failed = failed_tasks(run)
    except (RunDirError, OSError):
        return
    for entry in failed:
        if nodes is None or entry["node"] in nodes:
            yield from _leaves(run, entry, (entry["node"],))


def _leaves(run: RunDir, entry: Dict[str, Any], via: Tuple[int, ...]) -> Iterator[ChildTask]:
    for inner in entry["inner"]:
        if inner["inner"]:
            yield from _leaves(run, inner, via + (inner["node"],))
        else:
            yield ChildTask(RunDir(run.path.parent / inner["dispatch_id"]), inner["node"],
                            inner["name"], via)
