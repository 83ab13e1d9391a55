"""Loading a user's Covalent script (or notebook: ``notebook.py``) inside ``cov dispatch``,
with ``covalent`` meaning this SDK."""
from __future__ import annotations

import contextlib
import inspect
import os
import runpy
import sys
import traceback
from typing import Any, Callable, Dict, Iterator, List, Tuple

from covalent_cli.errors import CovError, ScriptError, UserError
from runner.config import ConfigError


def alias_covalent() -> None:
    """Make ``import covalent`` (and every ``covalent.X``) resolve to this SDK, even where a
    real Covalent is installed: under ``cov dispatch`` the user asked for cov. (Elsewhere the
    installed ``cov-covalent.pth`` does the same only where no real Covalent is installed.)"""
    import _cov_import_hook

    _cov_import_hook.install(force=True)


def run_script(path: str, run_name: str = "__main__") -> Tuple[Dict[str, Any], List[str]]:
    """Run the script as ``__main__`` (or ``run_name``: its main block then does not run);
    return its namespace and the dispatch ids it made."""
    from covalent_cli.dispatch import DISPATCHED

    if not os.path.exists(path):
        raise UserError(f"script not found: {path}", "check the path")
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a Python script")
    if not os.access(path, os.R_OK):
        raise UserError(f"cannot read script {path}: permission denied")
    if path.endswith(".ipynb"):
        from covalent_cli import notebook

        cells = notebook.read_cells(path)
        execute: Callable[[], Dict[str, Any]] = lambda: notebook.run_cells(path, cells)
    else:
        _check_source(path)
        execute = lambda: runpy.run_path(path, run_name=run_name)
    alias_covalent()
    script_dir = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, script_dir)
    before = len(DISPATCHED)
    saved_argv = sys.argv
    sys.argv = [path]
    try:
        namespace = execute()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise ScriptError(f"{path} exited with {exc.code!r} while loading") from None
        namespace = {}
    except ScriptError:
        raise
    except RecursionError:
        raise ScriptError(f"{path}: RecursionError while loading (recursion too deep)") from None
    except BaseException as exc:  # noqa: BLE001 - the user's error, shown as theirs
        if isinstance(exc, KeyboardInterrupt):
            raise
        if isinstance(exc, CovError):
            raise
        raise ScriptError(_user_error(exc, path), detail=user_traceback(exc)) from None
    finally:
        sys.argv = saved_argv
    return namespace, DISPATCHED[before:]


def _check_source(path: str) -> None:
    """A ScriptError unless ``path`` is Python source that compiles."""
    try:
        with open(path, "rb") as f:
            source = f.read()
        if b"\x00" in source:
            raise ValueError("it holds binary data")
        compile(source, path, "exec")
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.lineno else path
        raise ScriptError(f"{where}: syntax error: {exc.msg}",
                          "is this a Python script?") from None
    except ValueError as exc:  # null bytes: a binary file
        raise ScriptError(f"{path} is not a Python script ({exc})") from None


_OURS = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def is_user_file(filename: str) -> bool:
    """A frame's file is the user's: not cov's, not runpy's, not frozen."""
    return not os.path.abspath(filename).startswith(_OURS) and "runpy" not in filename and \
        not filename.startswith("<frozen")


def _user_frames(exc: BaseException) -> List[Any]:
    return [f for f in traceback.extract_tb(exc.__traceback__) if is_user_file(f.filename)]


def user_location(frames: List[Any]) -> str:
    """``FILE:LINE`` of the innermost user frame of ``frames``, or ``""``."""
    mine = [f for f in frames if is_user_file(f.filename)]
    return f"{mine[-1].filename}:{mine[-1].lineno}" if mine else ""


def user_traceback(exc: BaseException) -> str:
    """The traceback through the user's files only."""
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(_user_frames(exc))
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


@contextlib.contextmanager
def building(lattice: Any, where: str) -> Iterator[None]:
    """Run graph building (the lattice body) with its exceptions shown as the user's error:
    ``ScriptError`` (exit 7) with the traceback through the user's files only. A lattice
    called with arguments it does not take says which it takes."""
    try:
        yield
    except (CovError, ConfigError):
        raise
    except RecursionError:
        raise ScriptError(f"building lattice '{lattice.__name__}' of {where} failed: "
                          "RecursionError (recursion too deep)") from None
    except Exception as exc:  # noqa: BLE001 - the user's code raised while building the graph
        hint = ""
        if isinstance(exc, TypeError) and not _user_frames(exc):
            try:  # the arguments did not fit the lattice's signature
                hint = f"{lattice.__name__} takes {inspect.signature(lattice.workflow_function)}"
            except (TypeError, ValueError, AttributeError):
                pass
        raise ScriptError(f"building lattice '{lattice.__name__}' of {where} failed: "
                          f"{type(exc).__name__}: {exc}", hint,
                          detail=user_traceback(exc) if _user_frames(exc) else "") from None


def _user_error(exc: BaseException, path: str) -> str:
    """The exception and where in the user's files it arose (not our frames)."""
    frames = _user_frames(exc)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    if where and path.endswith(".ipynb"):
        from covalent_cli import notebook

        where = f" at {path} cell {notebook.current_cell}, line {frames[-1].lineno}"
    detail = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
    if isinstance(exc, ImportError):
        return f"{path} failed to import a module{where}: {message}"
    return f"{path} raised {message}{where}"


def find_lattices(namespace: Dict[str, Any]) -> Dict[str, Any]:
    """The lattices defined at the script's top level, by name."""
    from covalent_cli.lattice import Lattice

    return {name: value for name, value in namespace.items()
            if isinstance(value, Lattice) and not name.startswith("_")}
