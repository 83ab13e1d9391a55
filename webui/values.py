"""Values shown to people: previews, reprs cut to size, log tails, tracebacks, sources.

Unpickling a value runs code: the value's classes', or anything a crafted pickle asks for, on
the viewer's account. So viewing never unpickles: a task's value is shown as the preview its
worker recorded in the outcome header (``outcome_preview``), a parameter as the repr recorded at
dispatch. Only an explicit "load" (``pickled_value``, behind the UI's load endpoints, and
``cov result``) unpickles, which trusts the run; never for a pickle over ``MAX_UNPICKLE`` bytes.
"""
from __future__ import annotations

import inspect
import os
import pickle
import reprlib
import textwrap
from typing import Any, Dict, Optional

from runner.outcome import OutcomeHeader
from runner.rundir import OutsideRunError, RunDir, RunDirError

REPR_LIMIT = 4000  # characters of a value's repr shown
LOG_LIMIT = 256 * 1024  # bytes of a log shown (its end)
MAX_UNPICKLE = 64 * 1024 * 1024  # bigger pickles are described, not loaded
BIG_PICKLE = 1024 * 1024  # bigger ones get an abbreviated repr
TRACEBACK_START = "Traceback (most recent call last):"
NOT_RECORDED = "(preview not recorded; load value)"


def human_size(size: Optional[int]) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def shown_repr(value: Any, limit: int = REPR_LIMIT, big: bool = False) -> Dict[str, Any]:
    """``{"repr", "type", "truncated", "length"}``: the repr cut at ``limit`` characters.

    For a ``big`` value (a large pickle) the repr is built by ``reprlib``, which abbreviates
    containers instead of spelling out millions of items; ``length`` is then unknown.
    """
    try:
        if big:
            short = reprlib.Repr()
            short.maxstring = short.maxother = short.maxlong = limit
            short.maxlist = short.maxtuple = short.maxdict = short.maxset = 100
            text = short.repr(value)
        else:
            text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a user's __repr__ may raise anything
        text = f"<{type(value).__name__}: repr failed: {type(exc).__name__}: {exc}>"
    return {"repr": text[:limit], "type": _type_name(value),
            "truncated": big or len(text) > limit, "length": None if big else len(text)}


def outcome_preview(header: Optional[OutcomeHeader]) -> Optional[Dict[str, Any]]:
    """A ``VALUE`` for a task's result from its outcome header, without unpickling: the
    ``preview`` the worker recorded (``{"type", "repr"}``), or ``NOT_RECORDED`` for outcomes
    written before previews existed. None if the task has no value."""
    if not header or not header.get("ok"):
        return None
    recorded = header.get("preview")
    size = header.get("len") if isinstance(header.get("len"), int) else None
    out: Dict[str, Any] = {"repr": NOT_RECORDED, "type": None, "truncated": False,
                           "length": None, "size": size, "size_text": human_size(size),
                           "preview": True}
    if isinstance(recorded, dict) and isinstance(recorded.get("repr"), str):
        out.update(repr=recorded["repr"][:REPR_LIMIT],
                   type=str(recorded["type"])[:200] if recorded.get("type") else None)
    return out


def recorded_repr(text: Optional[str], size: Optional[int]) -> Dict[str, Any]:
    """A ``VALUE`` for a parameter from the repr recorded at dispatch (never its pickle)."""
    shown = NOT_RECORDED if text is None else str(text)
    return {"repr": shown[:REPR_LIMIT], "type": None, "truncated": len(shown) > REPR_LIMIT,
            "length": len(shown), "size": size, "size_text": human_size(size),
            "preview": True}


def pickled_value(data: bytes, limit: int = REPR_LIMIT) -> Dict[str, Any]:
    """The repr of a pickled value with its pickled size; not loaded when too big."""
    size = len(data)
    out: Dict[str, Any] = {"size": size, "size_text": human_size(size)}
    if size > MAX_UNPICKLE:
        out.update(repr=f"<not loaded: the pickle is {human_size(size)}>", type=None,
                   truncated=True, length=None)
        return out
    try:
        import cloudpickle  # noqa: F401 - by-value functions and classes need it importable

        value = pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - a missing module, a broken pickle ...
        out.update(repr=f"<cannot unpickle: {type(exc).__name__}: {exc}>", type=None,
                   truncated=False, length=None, error=True)
        return out
    out.update(shown_repr(value, limit, big=size > BIG_PICKLE))
    return out


def read_tail(run: RunDir, path: os.PathLike, limit: int = LOG_LIMIT) -> Dict[str, Any]:
    """The end of a text file of ``run``: ``{"text", "size", "truncated"}`` (empty if absent;
    a note saying so if it leads outside the run)."""
    try:
        with run.open_file(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                f.seek(size - limit)
            data = f.read(limit)
    except FileNotFoundError:
        return {"text": "", "size": 0, "truncated": False}
    except OutsideRunError as exc:
        return {"text": f"(not shown: {exc})", "size": 0, "truncated": False, "refused": True}
    return {"text": data.decode("utf-8", "replace"), "size": size, "truncated": size > limit}


def read_log_tail(run: RunDir, node: int, stream: str, limit: int = LOG_LIMIT) -> Dict[str, Any]:
    """``read_tail`` of a task's ``stream``, packed (format 2.0) or in its own file."""
    try:
        packed = run.log_location(node, stream)
    except RunDirError as exc:
        return {"text": f"(not shown: {exc})", "size": 0, "truncated": False, "refused": True}
    if packed is None:
        return read_tail(run, run.stdout_path(node) if stream == "stdout" else
                         run.stderr_path(node), limit)
    path, offset, size = packed
    start = max(0, size - limit)
    try:
        with run.open_file(path) as f:
            data = os.pread(f.fileno(), size - start, offset + start)
    except FileNotFoundError:
        return {"text": "", "size": 0, "truncated": False}
    except OutsideRunError as exc:
        return {"text": f"(not shown: {exc})", "size": 0, "truncated": False, "refused": True}
    return {"text": data.decode("utf-8", "replace"), "size": size, "truncated": size > limit}


def traceback_of(header: Optional[OutcomeHeader], stderr: str) -> Optional[str]:
    """The task's own exception traceback: from its outcome file, else the last one in stderr."""
    if header and not header.get("ok") and header.get("reason") == "exception":
        error = header.get("error")
        if error:
            return str(error)
    start = stderr.rfind(TRACEBACK_START)
    return stderr[start:] if start >= 0 else None


def function_source(fn: Any, cwd: str = "") -> Dict[str, Any]:
    """``{"text", "file", "line", "error"}``: the function's source as its file reads now.

    Relative file names (a script run as ``python wf.py``) are resolved against the directory
    the run was dispatched from, not the UI's. A function typed at a prompt, or a file that is
    gone, gives ``text: None`` and the reason.
    """
    seen = 0
    while hasattr(fn, "__wrapped__") and seen < 10:
        fn = fn.__wrapped__
        seen += 1
    code = getattr(fn, "__code__", None)
    if code is None:
        return {"text": None, "file": None, "line": None,
                "error": f"no source for a {type(fn).__name__} object"}
    filename, first = code.co_filename, code.co_firstlineno
    path = filename if os.path.isabs(filename) else os.path.join(cwd or ".", filename)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
        block = inspect.getblock(lines[first - 1:])
        if not block:
            raise OSError("empty block")
        text = textwrap.dedent("".join(block))
    except (OSError, IndexError, SyntaxError) as exc:
        reason = "defined interactively" if filename.startswith("<") else \
            f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        return {"text": None, "file": path, "line": first, "error": reason}
    return {"text": text, "file": path, "line": first, "error": None}


def _type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
