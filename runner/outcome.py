"""The outcome file ``results/<node>.pkl``: its only writer and reader (format 1.0).

An outcome file is one JSON header line followed by the pickled value::

    {"ok": true, "len": 1234, "start": ..., "end": ..., "host": "...", "pid": 12}\\n<pickle>
    {"ok": false, "error": "Traceback ...", "reason": "exception", ...}\\n

It is written to a temporary name and renamed into place, so a reader that finds it finds it
whole; ``len`` lets a reader tell a file cut short by a machine crash.

Writers: the worker running the node's attempt (the claim holder's), and, for a sublattice node,
the runner holding its claim once the child run has ended (``runner.service``): that node's
worker wrote only ``{"ok": true, "child": ID}`` and its attempt is over, so the two never write
at once, and the file the runner writes is made of the finished child run alone (its output,
its times), so a second runner that took the claim over writes the same file (whole: a rename);
and a backend whose file transfer for an attempt failed (``backends.base.transfer_failed``),
for that attempt, once its worker (if it ran) has ended.

Stdlib only, importing nothing of cov's: ``runner/worker.py`` imports it, and it is shipped
beside the worker to hosts without cov (``worker.shipped_files``).
"""
from __future__ import annotations

import errno
import json
import os
import reprlib
import secrets
import time
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Tuple, TypedDict

FILE_MODE = 0o600  # outcomes are the owner's only (runner/fs.py FILE_MODE)


class OutcomeHeader(TypedDict, total=False):
    """An outcome file's header line (the module docstring), also the header of an attempt
    that ended without a file of its own (``Completion.failed``); every field is optional (a
    reader gets only the keys the writer set)."""

    ok: bool
    len: int  # bytes of pickle after the line
    start: Optional[float]
    end: Optional[float]
    host: str
    pid: int
    attempt: int
    child: str  # a sublattice task's child dispatch id
    preview: Dict[str, str]  # value_preview
    error: str
    reason: str  # why it failed: "exception", "load", "fenced", "worker", ...
    job_id: Optional[str]  # the Slurm job of an attempt that ended without an outcome
    # Format 2.0 packs (runner/outcome_pack.py): a record names its node; ``log_at`` where
    # its logs were packed; ``at`` where the record is (added by its writer and readers,
    # never in the record itself).
    node: int
    log_at: Dict[str, List[Any]]
    live_packed: List[str]  # streams packed whose live ``logs/<node>.out|err`` the runner removes
    at: List[Any]


# -- writing --------------------------------------------------------------------------------------
def make_temporary(path: str) -> Tuple[int, str]:
    """A new empty file beside ``path`` under a temporary name (``<path>.tmp-<pid>-<random>``,
    which no reader takes for an outcome): its descriptor and name."""
    tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), tmp


def write_outcome(path: str, header: Mapping[str, Any], payload: bytes = b"",
                  spare: Optional[Tuple[int, str]] = None) -> None:
    """Write an outcome file atomically (temporary name, then rename). ``spare``: an empty
    temporary file of ``make_temporary`` in the same directory, made ahead (creating a file is
    most of an outcome's cost on a busy file system); it is used, or removed, either way."""
    data = json.dumps({**header, "len": len(payload)}).encode() + b"\n"
    fd, tmp = spare if spare is not None else (-1, "")
    try:
        if spare is None:
            fd, tmp = make_temporary(path)
        with open(fd, "wb") as f:
            f.write(data)
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0 and tmp:
            try:  # a full disk: what was written of it would only hold space
                os.unlink(tmp)
            except OSError:
                pass
        raise


def write_outcome_when_space(path: str, header: Mapping[str, Any], payload: bytes = b"",
                             spare: Optional[Tuple[int, str]] = None) -> None:
    """``write_outcome``, waiting for space while the disk (or quota) is full: the value is in
    memory, so a full disk delays the run instead of failing a task that did its work.
    ``spare``: as for ``write_outcome``, used by the first try only."""
    delay = 0.2
    while True:
        try:
            write_outcome(path, header, payload, spare)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
        spare = None
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


PREVIEW_CHARS = 300
_PREVIEW = reprlib.Repr()
_PREVIEW.maxstring = _PREVIEW.maxother = _PREVIEW.maxlong = PREVIEW_CHARS
_PREVIEW.maxlist = _PREVIEW.maxtuple = _PREVIEW.maxset = _PREVIEW.maxfrozenset = 20
_PREVIEW.maxdict = _PREVIEW.maxdeque = _PREVIEW.maxarray = 20


def value_preview(value: Any) -> Dict[str, str]:
    """``{"type", "repr"}`` for the outcome header: what viewers show without unpickling (which
    would run the value's code on the viewer's account). The repr is reprlib's (containers
    abbreviated, long strings cut), at most ``PREVIEW_CHARS`` characters; a failing
    ``__repr__`` gives a note instead of an error."""
    cls = type(value)
    module = getattr(cls, "__module__", "?")
    name = getattr(cls, "__qualname__", "?")
    try:
        text = _PREVIEW.repr(value)
    except Exception as exc:  # noqa: BLE001 - a user's __repr__ may raise anything
        text = f"<{name} object: repr failed: {type(exc).__name__}>"
    if len(text) > PREVIEW_CHARS:
        text = text[:PREVIEW_CHARS - 1] + "…"
    return {"type": name if module == "builtins" else f"{module}.{name}", "repr": text}


# -- reading --------------------------------------------------------------------------------------
def read_outcome_header(path: str) -> Optional[OutcomeHeader]:
    """The header of a complete outcome file, or None (absent, torn, or cut short);
    ``TypeError``/``ValueError`` if its ``len`` is not a number."""
    try:
        with open(path, "rb") as f:
            line = f.readline()
            if not line.endswith(b"\n"):
                return None
            header = json.loads(line)
            size = os.fstat(f.fileno()).st_size
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or size != len(line) + int(header.get("len", 0)):
        return None
    return header  # type: ignore[return-value]  # its fields' types: header_problem


def read_outcome_payload(path: str) -> Optional[bytes]:
    """The pickled value of a complete, successful outcome file."""
    try:
        with open(path, "rb") as f:
            line = f.readline()
            header = json.loads(line)
            payload = f.read()
    except (OSError, ValueError):
        return None
    if not header.get("ok") or len(payload) != int(header.get("len", -1)):
        return None
    return payload


def read_outcome_file(f: BinaryIO, payload: bool = False
                      ) -> Tuple[Optional[OutcomeHeader], Optional[bytes]]:
    """(header, pickled value) of the outcome file open as ``f``; (None, None) if incomplete
    or not one (not JSON, a ``len`` that is not a number); the value None unless ``payload``
    and the task succeeded."""
    try:
        line = f.readline()
        size = os.fstat(f.fileno()).st_size
        header = json.loads(line) if line.endswith(b"\n") else None
        if not isinstance(header, dict) or size != len(line) + int(header.get("len", 0)):
            return None, None
    except (TypeError, ValueError):
        return None, None
    data = f.read() if payload and header.get("ok") else None
    return header, data  # type: ignore[return-value]  # its fields' types: header_problem


_HEADER_TYPES: Dict[str, tuple] = {
    "ok": (bool,), "attempt": (int,), "len": (int,), "reason": (str, type(None)),
    "error": (str, type(None)), "child": (str, type(None)),
    "start": (int, float, type(None)), "end": (int, float, type(None)),
}


def header_problem(header: Any) -> str:
    """What is wrong with an outcome header read from a file ("" if nothing): the fields cov
    acts on must have their types (a run directory may come from someone else)."""
    if not isinstance(header, dict) or not header:
        return "the outcome header is not a JSON object of ours"
    for name, types in _HEADER_TYPES.items():
        value = header.get(name)
        if name in header and (not isinstance(value, types) or
                               (isinstance(value, bool) and bool not in types)):
            return f"the outcome header has {name}={value!r} (wrong type)"
    return ""
