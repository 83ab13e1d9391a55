"""Read-only browsing of a run directory: listings, text, pickles as reprs, downloads.

Paths come in relative to the run directory and go through ``security.inside``; anything it
refuses is the caller's 404. Pickles are never sent as bytes: a node's outcome file
(``results/<n>.pkl``, ``result.pkl``) is shown as its JSON header and the repr of its value, the
packed ``tasks.pkl`` as the list of what it packs; any other ``.pkl`` as the repr of what it
loads to. Other files are shown as text when they decode as UTF-8, else offered as a download.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Dict, List, Optional

from covalent_cli.inspect import format_time
from runner.manifest import PARAMETER

from webui import security, values
from webui.live import LiveRun

TEXT_LIMIT = 1024 * 1024  # bytes of a text file shown in the page
SNIFF = 8192


def listing(root: Path, directory: Path) -> List[Dict[str, Any]]:
    """A directory's entries (directories first), skipping symlinks that lead out of ``root``."""
    real_root = os.path.realpath(root)
    rows = []
    for entry in sorted(os.scandir(directory), key=lambda e: (not e.is_dir(), e.name)):
        rel = os.path.relpath(entry.path, real_root)
        if security.inside(Path(real_root), rel) is None:
            continue
        try:
            st = entry.stat()
        except OSError:
            continue
        rows.append({"name": entry.name, "path": rel.replace(os.sep, "/"),
                     "dir": stat.S_ISDIR(st.st_mode), "size": st.st_size,
                     "size_text": values.human_size(st.st_size), "mtime": st.st_mtime,
                     "mtime_text": format_time(st.st_mtime)})
    return rows


def kind_of(path: Path) -> str:
    """``dir``, ``pickle``, ``text`` or ``binary``."""
    if path.is_dir():
        return "dir"
    if path.suffix == ".pkl":
        return "pickle"
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF)
    except OSError:
        return "binary"
    if b"\x00" in head:
        return "binary"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the sniff boundary
            return "binary"
    return "text"


def text_of(path: Path) -> Dict[str, Any]:
    """The start of a text file: ``{"text", "size", "truncated"}``."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(TEXT_LIMIT)
    return {"text": data.decode("utf-8", "replace"), "size": size, "truncated": size > TEXT_LIMIT}


def pickle_view(live: LiveRun, rel: str, path: Path) -> Dict[str, Any]:
    """What a pickle in the run directory holds, as text: never its bytes."""
    data = live.data
    parts = rel.split("/")
    if rel == "tasks.pkl":
        manifest = data.manifest
        lines = [f"tasks.pkl packs {len(manifest.nodes)} nodes' functions and parameter values "
                 "and the workflow with its inputs:"]
        for node in manifest.nodes:
            if node.blob:
                what = f"value {node.value_repr}" if node.kind == PARAMETER else "function"
                lines.append(f"  node {node.id} {node.name}: {what} ({node.blob[1]} bytes)")
        for name, blob in manifest.blobs.items():
            lines.append(f"  {name}: {blob[1]} bytes")
        return {"header": None, "value": None, "text": "\n".join(lines)}
    node = None
    if len(parts) == 2 and parts[0] == "results" and parts[1][:-4].isdigit():
        node = int(parts[1][:-4])
    elif rel == "result.pkl":
        node = data.manifest.output_node
    if node is not None and node < len(data.manifest.nodes):
        from runner import worker

        header = worker.read_outcome_header(str(path))
        if header is None:
            return {"header": None, "value": None,
                    "text": "an incomplete outcome file (the task may still be writing it)"}
        value = None
        if header.get("ok"):
            payload = worker.read_outcome_payload(str(path))
            value = values.pickled_value(payload) if payload is not None else None
        return {"header": header, "value": value, "text": None}
    if path.stat().st_size > values.MAX_UNPICKLE:
        return {"header": None, "text": None,
                "value": {"repr": "<not loaded: too big>", "size": path.stat().st_size}}
    return {"header": None, "value": values.pickled_value(path.read_bytes()), "text": None}


def header_json(header: Optional[Dict[str, Any]]) -> str:
    return json.dumps(header, indent=2, default=str) if header else ""
