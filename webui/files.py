"""Read-only browsing of a run directory: listings, text, pickles described, downloads.

Paths come in relative to the run directory and go through ``security.inside``; anything it
refuses is the caller's 404. Files are opened through ``RunDir.open_file`` (contained: a symlink
swapped in after the check is not followed). Pickles are never sent as bytes nor unpickled: a
node's outcome file (``results/<n>.pkl``, ``result.pkl``) is shown as its JSON header, with the
value's recorded preview; the packed ``tasks.pkl`` as the list of what it packs; an outcome
pack (format 2.0, ``results/pack-*.bin``) as the list of its records, and a packed outcome
under its 1.0 name ``results/<n>.pkl`` as that file would be; any other ``.pkl`` as its size.
Other files are shown as text when they decode as UTF-8, else offered as a download.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Dict, List, Optional

from bottle import HTTPResponse

from runner import layout
from runner.outcome_pack import scan
from runner.query import format_time
from runner.manifest import PARAMETER
from runner.rundir import FINAL_RESULT, PACK, RESULTS, RunDir, RunDirError

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


def kind_of(run: RunDir, rel: str, path: Path) -> str:
    """``dir``, ``pickle``, ``text`` or ``binary``, for ``rel`` (resolved: ``path``) of ``run``."""
    if path.is_dir():
        return "dir"
    if path.suffix == ".pkl" or _is_outcome_pack(rel):  # never sent as bytes
        return "pickle"
    with run.open_file(rel) as f:
        head = f.read(SNIFF)
    if b"\x00" in head:
        return "binary"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the sniff boundary
            return "binary"
    return "text"


def _is_outcome_pack(rel: str) -> bool:
    parts = rel.strip("/").split("/")
    return len(parts) == 2 and parts[0] == RESULTS and \
        layout.is_pack_name(parts[1], layout.OUTCOME_PACK_SUFFIX)


def _outcome_number(rel: str) -> Optional[int]:
    """The node of ``results/<n>.pkl`` (None: another path)."""
    parts = rel.strip("/").split("/")
    if len(parts) == 2 and parts[0] == RESULTS and parts[1].endswith(".pkl") and \
            parts[1][:-4].isdigit():
        return int(parts[1][:-4])
    return None


def packed_outcome_path(live: LiveRun, rel: str) -> Optional[Path]:
    """``results/<n>.pkl`` of a node whose outcome is packed (no such file: format 2.0), as a
    path the pickle view takes; None for anything else."""
    number = _outcome_number(rel)
    if number is None:
        return None
    try:
        if live.data.outcome_location(number) is None:
            return None
    except RunDirError:
        return None
    return live.path / RESULTS / layout.outcome_file(number)


def _pack_listing(data: RunDir, rel: str) -> str:
    """An outcome pack's records, one line each: node, attempt, outcome, preview."""
    lines = [f"{rel} packs small outcomes (format 2.0); one record each, whole ones only:"]
    with data.open_file(rel) as f:
        for offset, length, header in scan(f.fileno()):
            found = header.get("preview")
            preview: Dict[str, Any] = found if isinstance(found, dict) else {}
            what = (f"ok {preview.get('type', '?')}: {preview.get('repr', '')}"
                    if header.get("ok") else f"failed ({header.get('reason')})")
            lines.append(f"  node {header.get('node')} attempt {header.get('attempt')}: "
                         f"{what}  [{length} bytes at {offset}]")
            if len(lines) > 10_000:
                lines.append("  ...")
                break
    return "\n".join(lines)


def text_of(run: RunDir, rel: str) -> Dict[str, Any]:
    """The start of a text file: ``{"text", "size", "truncated"}``."""
    with run.open_file(rel) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(TEXT_LIMIT)
    return {"text": data.decode("utf-8", "replace"), "size": size, "truncated": size > TEXT_LIMIT}


def size_of(run: RunDir, rel: str) -> int:
    with run.open_file(rel) as f:
        return os.fstat(f.fileno()).st_size


def download(run: RunDir, rel: str) -> HTTPResponse:
    """The file as an attachment (``application/octet-stream``: never rendered), streamed from
    the descriptor ``open_file`` checked."""
    f = run.open_file(rel)
    size = os.fstat(f.fileno()).st_size
    name = rel.rsplit("/", 1)[-1].replace('"', "_").replace("\r", "_").replace("\n", "_")
    return HTTPResponse(f, headers={"Content-Type": "application/octet-stream",
                                    "Content-Length": str(size),
                                    "Content-Disposition": f'attachment; filename="{name}"'})


def pickle_view(live: LiveRun, rel: str) -> Dict[str, Any]:
    """What a pickle in the run directory holds, as text: never its bytes, never unpickled."""
    data = live.data
    parts = rel.split("/")
    if rel == PACK:
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
    if _is_outcome_pack(rel):
        return {"header": None, "value": None, "text": _pack_listing(data, rel)}
    number: Optional[int] = None
    if len(parts) == 2 and parts[0] == RESULTS and parts[1][:-4].isdigit():
        number = int(parts[1][:-4])
    elif rel == FINAL_RESULT:
        number = data.manifest.output_node
    if number is not None and number < len(data.manifest.nodes):
        header, _ = data.read_outcome(number)
        if header is None:
            return {"header": None, "value": None,
                    "text": "an incomplete outcome file (the task may still be writing it)"}
        return {"header": header, "value": values.outcome_preview(header), "text": None}
    size = size_of(data, rel)
    return {"header": None, "value": None,
            "text": f"a pickle of {values.human_size(size)}, not loaded: unpickling runs code "
                    "from the run"}


def header_json(header: Optional[Dict[str, Any]]) -> str:
    return json.dumps(header, indent=2, default=str) if header else ""
