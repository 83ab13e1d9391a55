"""Pack files (format 2.0): many small outcomes and logs in a few append-only files, so a run
of 10,000 short tasks makes a handful of files instead of 20,000 (on Lustre/NFS every file
create is a metadata-server round trip, and users have inode quotas).

``results/pack-<token>.bin`` holds outcome records, each exactly an outcome file's bytes
(``runner.outcome``: one JSON header line with ``len``, then ``len`` bytes of pickle) whose
header also names its ``node`` and ``attempt`` (and ``log_at``, where its logs are).
``logs/pack-<token>.log`` holds the logs' bytes, with no framing: only the locations in an
outcome header or an ``end`` event point into it.

One writer per file (a pool worker, which creates it with ``O_EXCL`` under a name of its own),
so appends need no lock; a record is written with one ``pwrite`` at the writer's own end of
file, and what a failed write (a full disk) left is cut off again. A writer killed mid-append
leaves a torn last record: its header line is not whole JSON, or its file ends before ``len``
bytes; scans stop there and readers never see it, since its location is only published (in
the worker's reply, then the ``end`` event) after the write. No process appends to another's
file, so a dead writer's torn tail is never followed by anything.

A location is ``[file name, offset, length]``: the record's (or log's) bytes, the file named
within ``results/`` (outcomes) or ``logs/`` (logs); readers check the name is a pack's.

A record larger than ``RECORD_LIMIT`` (or a log larger than ``LOG_LIMIT``) is written as the
classic per-node file instead; readers accept both in one run.

Stdlib only, importing nothing of cov's but the layout: the pool worker imports it, and it is
shipped to Slurm pilot blocks (``worker.SHIPPED_BESIDE``).
"""
from __future__ import annotations

import errno
import json
import os
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

if __package__:
    from runner import layout
else:  # shipped beside the worker to a Slurm pilot block's node (``worker.SHIPPED_BESIDE``)
    import layout  # type: ignore[no-redef,import-not-found]

RECORD_LIMIT = 64 * 1024  # an outcome larger than this gets its own file
LOG_LIMIT = 64 * 1024  # a stream's output larger than this gets its own file
FILE_MODE = 0o600

Location = List[Any]  # [pack file name, offset, length]


def encode_record(header: Mapping[str, Any], payload: bytes) -> bytes:
    """An outcome record: exactly the bytes of an outcome file with this header and payload."""
    return json.dumps({**header, "len": len(payload)}).encode() + b"\n" + payload


class PackWriter:
    """Appends to one pack file of this process, created on the first append. ``sync``: each
    append is flushed to the file's storage before it returns (``fdatasync``): a writer on
    another machine than its readers (a Slurm pilot block's node) keeps its file open, and on
    NFS what it wrote would otherwise stay in its own cache until it closed the file, where a
    reader elsewhere cannot see it."""

    def __init__(self, folder: str, suffix: str, sync: bool = False) -> None:
        self.folder = folder
        self.suffix = suffix
        self.sync = sync
        self.fd = -1
        self.name = ""
        self.size = 0

    def _open(self) -> None:
        while True:
            name = layout.pack_file(f"{os.getpid()}-{os.urandom(3).hex()}", self.suffix)
            try:
                self.fd = os.open(os.path.join(self.folder, name),
                                  os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            except FileExistsError:  # never append to another process's file
                continue
            self.name, self.size = name, 0
            return

    def append(self, data: bytes) -> Location:
        """Write ``data`` whole at this file's end (or nothing: a failed write is cut off
        again and raises); its location."""
        if self.fd < 0:
            self._open()
        start = self.size
        try:
            view = memoryview(data)
            offset = start
            while view:
                done = os.pwrite(self.fd, view, offset)
                view, offset = view[done:], offset + done
            if self.sync:
                os.fdatasync(self.fd)
        except BaseException:
            try:
                os.ftruncate(self.fd, start)
            except OSError:
                pass
            raise
        self.size = start + len(data)
        return [self.name, start, len(data)]

    def append_when_space(self, data: bytes) -> Location:
        """``append``, waiting while the disk (or quota) is full: the bytes are in memory, so a
        full disk delays the run instead of failing a task that did its work."""
        delay = 0.2
        while True:
            try:
                return self.append(data)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.name, self.size = -1, "", 0


# -- reading ---------------------------------------------------------------------------------
def valid_location(at: Any, suffix: str) -> Optional[Tuple[str, int, int]]:
    """``at`` as (name, offset, length) if it is a location in a pack file of ``suffix``
    (a plain name: never a path), else None."""
    if not isinstance(at, (list, tuple)) or len(at) != 3:
        return None
    name, offset, length = at
    if not isinstance(name, str) or not layout.is_pack_name(name, suffix) or \
            type(offset) is not int or type(length) is not int or offset < 0 or length < 0:
        return None
    return name, offset, length


def parse_record(data: bytes) -> Tuple[Optional[Dict[str, Any]], bytes]:
    """(header, payload) of one record's bytes; (None, b"") if they are not a whole record."""
    end = data.find(b"\n")
    if end < 0:
        return None, b""
    try:
        header = json.loads(data[:end])
        length = int(header.get("len", 0))
    except (ValueError, TypeError, AttributeError):
        return None, b""
    if not isinstance(header, dict) or len(data) != end + 1 + length:
        return None, b""
    return header, data[end + 1:]


def read_at(fd: int, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of ``fd`` (fewer if the file is shorter)."""
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def scan(fd: int, start: int = 0) -> Iterator[Tuple[int, int, Dict[str, Any]]]:
    """(offset, length, header) of each whole record of the pack open as ``fd`` from
    ``start``; stops at the first torn one (a writer killed mid-append: only ever the last)."""
    size = os.fstat(fd).st_size
    offset = start
    while offset < size:
        head = read_at(fd, offset, min(65536, size - offset))
        end = head.find(b"\n")
        while end < 0 and offset + len(head) < size:  # a header longer than one read
            more = read_at(fd, offset + len(head), 65536)
            if not more:
                break
            head += more
            end = head.find(b"\n")
        if end < 0:
            return
        try:
            header = json.loads(head[:end])
            length = end + 1 + int(header.get("len", 0))
        except (ValueError, TypeError, AttributeError):
            return
        if not isinstance(header, dict) or offset + length > size:
            return
        yield offset, length, header
        offset += length
