"""The node lines of ``manifest.yaml``'s fast path: one node per line (``  - {...}``, a JSON
flow mapping, which is valid YAML too), found in the text or in the file's lines and decoded a
chunk of lines at a time (``runner.manifest`` builds the nodes, ``runner.manifest_file`` reads
the file). A line of another shape raises ``NotJsonLines``: the caller reads the slow way.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Iterator, List, Tuple, Union, cast

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where the wheel has it


class NotJsonLines(Exception):
    """A node line of the one-node-per-line shape that is not one JSON object."""


def split_fast(text: str) -> Tuple[Dict[str, Any], Iterator[List[str]]]:
    """The header (through libyaml) and the node lines (``  - {...}``, not yet decoded), or
    ValueError if the text is not in the shape dispatch writes."""
    at = text.find("\nnodes:\n")
    if at < 0:
        raise ValueError("no nodes section")
    header = yaml.load(text[:at], Loader=_Loader)
    if not isinstance(header, dict):
        raise ValueError("header is not a mapping")
    return header, line_chunks(text, at + 8)


CHUNK_LINES = 2000  # node lines decoded at once: few decode calls, few dicts alive at a time


def line_chunks(text: str, start: int) -> Iterator[List[str]]:
    """The node lines from ``start`` on, ``CHUNK_LINES`` at a time; ``NotJsonLines`` at a line
    that is not of the one-node-per-line shape. No list of every line is made: at 100,000
    nodes it held 23 MB beside the text, at the runner's peak."""
    return _chunked(_lines_of(text, start), "  - {")


def _lines_of(text: str, start: int) -> Iterator[str]:
    end = len(text)
    while start < end:
        stop = text.find("\n", start)
        if stop < 0:
            stop = end
        yield text[start:stop]
        start = stop + 1


def _chunked(lines: Iterable[Any], prefix: Any) -> Iterator[List[Any]]:
    """``lines`` (text or bytes) that start with ``prefix``, ``CHUNK_LINES`` at a time; blank
    lines are skipped, any other line raises ``NotJsonLines``."""
    chunk: List[Any] = []
    for line in lines:
        if not line.startswith(prefix):
            if line.strip():
                raise NotJsonLines()
            continue
        chunk.append(line)
        if len(chunk) == CHUNK_LINES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


Lines = Union[List[str], List[bytes]]


def decode_node_lines(chunks: Iterable[Lines]) -> Iterator[Dict[str, Any]]:
    """Each line's object, ``NotJsonLines`` at the first line that is not one. A chunk of lines
    (``  - {...}``, text or bytes) is decoded in one call (half the time of a json.loads per
    line: ~0.6 s against ~1.2 s for 100,000 nodes) and turned into nodes before the next is
    decoded, so that the parse does not hold every node's dict at once (its peak was 157 MB
    for 100,000 nodes). A chunk holding a line that is more or less than one object (damage)
    changes the count, and is then decoded line by line."""
    for chunk in chunks:
        try:
            if chunk and isinstance(chunk[0], bytes):
                binary = cast(List[bytes], chunk)
                values = json.loads(b"[" + b",".join([ln[4:] for ln in binary]) + b"]")
            else:
                text = cast(List[str], chunk)
                values = json.loads("[" + ",".join([ln[4:] for ln in text]) + "]")
        except ValueError:
            values = None
        if not isinstance(values, list) or len(values) != len(chunk):
            try:
                values = [json.loads(line[4:]) for line in chunk]
            except ValueError:
                raise NotJsonLines() from None
        yield from values


def byte_line_chunks(lines: Iterator[bytes]) -> Iterator[List[bytes]]:
    """The node lines of a file's lines, ``CHUNK_LINES`` at a time; ``NotJsonLines`` at a line
    of another shape."""
    return _chunked(lines, b"  - {")
