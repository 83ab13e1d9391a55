"""Ending ``cov dispatch`` without the interpreter's teardown of cov's own modules.

At exit CPython runs the ``atexit`` functions, flushes ``sys.stdout``/``sys.stderr``, then
clears every module's namespace and frees what they hold: after a dispatch, ~300 modules of
click, yaml, cloudpickle and cov, 10-15 ms of CPU (perf: code, function, tuple and dict
deallocation) at the very end of a small run's wait, and none of it anyone's business.

``end`` does the part that has effects: the ``atexit`` functions, then the teardown of the
modules imported since ``user_code_starts`` (the user's script, the modules it imported: a
file one of them left open is flushed and closed when its namespace is cleared, as CPython
would, in the reverse order of their import and with CPython's two passes), then the flush of
the standard streams; then ``os._exit``. Where it cannot be sure to do no less than the
interpreter (no user code boundary was set, another thread is alive and would be joined, an
exit code that is not a number, a standard stream that cannot be flushed) it leaves the exit
to the interpreter.

(A script's own module-level objects are in a reference cycle with its functions, which
``main``'s ``gc.freeze`` keeps from ever being collected: the interpreter's exit does not
finalize them either; the modules a script imports it does, and so does ``end``.)
"""
from __future__ import annotations

import atexit
import os
import sys
from typing import Any, NoReturn, Optional, Set

_before: Optional[Set[str]] = None  # the modules already there when user code started


def user_code_starts() -> None:
    """The user's code runs from now on (``cov dispatch`` before it loads the script)."""
    global _before
    if _before is None:
        _before = set(sys.modules)


def end(code: Any) -> NoReturn:
    """Exit with ``code`` (a ``SystemExit``'s), quickly where that loses nothing (see the
    module docstring), else by raising ``SystemExit(code)`` for the interpreter to do it."""
    threading = sys.modules.get("threading")
    if _before is None or (code is not None and not isinstance(code, int)) or \
            (threading is not None and threading.active_count() > 1):
        raise SystemExit(code)
    import gc

    gc.disable()  # nothing is collected from here on, as after main's gc.freeze
    atexit._run_exitfuncs()  # (the interpreter would; run once, then forgotten)
    if threading is not None and threading.active_count() > 1:
        raise SystemExit(code)  # an atexit function started one: let it be joined
    for name in reversed([name for name in list(sys.modules) if name not in _before]):
        module = sys.modules.get(name)
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict):
            _clear(namespace)
    # (the originals too, should the script have replaced them: at exit they would be freed)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001 - the interpreter says it and exits 120
            raise SystemExit(code) from None
    os._exit(code or 0)


def _clear(namespace: dict) -> None:
    """What CPython does to a module's namespace at exit: the names with one leading
    underscore set to None first, then every other name but ``__builtins__``."""
    for first in (True, False):
        for key in list(namespace):
            if key == "__builtins__" or not isinstance(key, str):
                continue
            if not first or (key.startswith("_") and not key.startswith("__")):
                namespace[key] = None
