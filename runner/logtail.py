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
from typing import Dict, Iterator, List, Optional, Set, Tuple

from runner.rundir import OutsideRunError, RunDir, RunDirError
from runner.state import FAILED

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
    ``refused``."""
    try:
        with run.open_file(log_path(run, node, stream)) as f:
            size = os.fstat(f.fileno()).st_size
            restarted = offset > size
            start = 0 if restarted else offset
            f.seek(start)
            data = f.read(limit) if size > start else b""
    except FileNotFoundError:
        return LogChunk(b"", 0, 0, restarted=offset > 0)
    except OutsideRunError as exc:
        return LogChunk(b"", offset, 0, refused=str(exc))
    except OSError as exc:
        return LogChunk(b"", offset, 0, refused=f"{exc.strerror or exc}")
    return LogChunk(data, start, max(size, start + len(data)), restarted=restarted)


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


def failed_child_tasks(run: RunDir, nodes: Optional[List[int]] = None,
                       max_depth: int = 20) -> Iterator[ChildTask]:
    """The FAILED tasks of the child runs of ``run``'s sublattice nodes (of ``nodes``, or of
    every node), at any depth, in node order. Child runs are looked up next to ``run`` (the
    same runs home); one that is absent or unreadable is skipped."""
    seen: Set[str] = {run.dispatch_id}
    yield from _failed_children(run, nodes, (), seen, max_depth)


def _failed_children(run: RunDir, nodes: Optional[List[int]], via: Tuple[int, ...],
                     seen: Set[str], depth: int) -> Iterator[ChildTask]:
    if depth <= 0:
        return
    try:
        state = run.state()
    except (RunDirError, OSError):
        return
    children: Dict[int, str] = {n: t.child for n, t in sorted(state.tasks.items())
                                if t.child and (nodes is None or n in nodes)}
    for node, child_id in children.items():
        if child_id in seen or "/" in child_id or child_id.startswith("."):
            continue
        seen.add(child_id)
        child = RunDir(run.path.parent / child_id)
        try:
            child_state = child.state()
            manifest = child.manifest
        except (RunDirError, OSError):
            continue
        for sub, task in sorted(child_state.tasks.items()):
            if task.status == FAILED and 0 <= sub < len(manifest.nodes) and not task.child:
                yield ChildTask(child, sub, manifest.node(sub).name, via + (node,))
        yield from _failed_children(child, None, via + (node,), seen, depth - 1)
