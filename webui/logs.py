"""``GET /api/runs/<id>/tasks/<node>/logs?stdout=N&stderr=M``: what a task's stdout and stderr
gained past byte offsets N and M, for the task view's live tail (``run.js`` polls it while the
task runs). Reads through ``runner.logtail`` (contained: only the run's own log files)."""
from __future__ import annotations

import time
from typing import Any, Dict, Mapping, Optional

from runner.logtail import STREAMS, read_log, read_tail
from runner.rundir import RunDir
from webui.values import LOG_LIMIT


def _whole_chars(data: bytes) -> bytes:
    """``data`` without an unfinished UTF-8 character at its end (it comes whole next time)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # the lead byte of the last character: is it complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= need else data[:-back]
    return data


def task_logs(run: RunDir, node: int, offsets: Mapping[str, Optional[int]]) -> Dict[str, Any]:
    """Per stream ``{"offset", "end", "text", "size", "restarted", "skipped"}``: the text
    from ``offset`` (a stream without an offset: its last ``LOG_LIMIT`` bytes) up to ``end``.
    More than ``LOG_LIMIT`` new bytes: only the last ones (``skipped``). A file that got
    shorter than the offset was restarted (a new attempt): ``restarted``, text from 0."""
    out: Dict[str, Any] = {"now": time.time()}
    for stream in STREAMS:
        offset = offsets.get(stream)
        skipped = False
        if offset is None or offset < 0:
            chunk = read_tail(run, node, stream, LOG_LIMIT)
        else:
            chunk = read_log(run, node, stream, offset, 0)  # only the size
            start = chunk.offset
            if chunk.size - start > LOG_LIMIT:
                start, skipped = chunk.size - LOG_LIMIT, True
            restarted = chunk.restarted
            chunk = read_log(run, node, stream, start, LOG_LIMIT)
            chunk.restarted = chunk.restarted or restarted
        data = _whole_chars(chunk.data)
        out[stream] = {"offset": chunk.offset, "end": chunk.offset + len(data),
                       "text": data.decode("utf-8", "replace"), "size": chunk.size,
                       "restarted": chunk.restarted, "skipped": skipped,
                       **({"refused": chunk.refused} if chunk.refused else {})}
    return out
