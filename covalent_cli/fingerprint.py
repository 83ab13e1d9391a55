"""A task's code fingerprint: equal fingerprints let a redispatch reuse an old result.

The hash covers what the task would do: its function's code (nested code objects too, their
names, constants and defaults), the user's own functions and plain constants it reads from its
module's globals or its closure (a fixed helper is a changed task), its hooks (bash commands,
pip packages, file transfers, call_before/call_after code) and its executor's settings.

It hashes the compiled code, not the source text: a function unpickled from a run (a
redispatch of the stored code) has no source of its own, and reading its file from disk would
give the *edited* file. Snakemake fingerprints rule code the same way. Comments and blank lines
therefore do not count as changes; a different Python version (other bytecode) does, which only
costs a rerun. Values that are neither code nor plain constants (an array held in a global) are
hashed by type only.

Fingerprints start with ``FP_VERSION``: one written by an older cov (no prefix) never equals a
new one, so such a task reruns ("fingerprint from an older cov").
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
import types
from typing import Any, Dict, Optional, Set

FP_VERSION = "2:"
_PLAIN = (int, float, complex, str, bytes, bool, type(None))
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MAX_DEPTH = 20  # helpers calling helpers: far enough, and no runaway on odd globals


def code_fingerprint(function: Any, hooks: Dict[str, Any],
                     executor: Optional[Dict[str, Any]] = None) -> str:
    """``FP_VERSION`` + 16 hex digits of a hash of ``function``, ``hooks`` and ``executor``
    (the executor's manifest entry, secrets masked)."""
    digest = hashlib.sha256()
    target = getattr(function, "workflow_function", function)  # a sublattice's lattice
    _add_callable(digest, target, set(), 0)
    plain = {k: v for k, v in hooks.items() if k in ("bash", "pip", "files")}
    digest.update(repr(plain).encode())
    for key in ("call_before", "call_after"):
        for call in hooks.get(key, ()):
            digest.update(key.encode())
            if isinstance(call, dict) and "fn" in call:
                _add_callable(digest, call["fn"], set(), 0)
                _add_value(digest, {k: v for k, v in call.items() if k != "fn"}, set(), 0)
            else:  # a hook of another shape (plain data)
                digest.update(_stable_repr(call).encode())
    if executor is not None:
        digest.update(json.dumps(executor, sort_keys=True, default=str).encode())
    return FP_VERSION + digest.hexdigest()[:16]


def _add_callable(digest: Any, obj: Any, seen: Set[int], depth: int) -> None:
    """Hash a function (and what it reads), a class's methods, or a callable's type."""
    obj = inspect.unwrap(obj) if callable(obj) else obj  # @ct.electron keeps __wrapped__
    if id(obj) in seen or depth > _MAX_DEPTH:
        digest.update(b"<seen>")
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        _add_callable(digest, obj.func, seen, depth + 1)
        _add_value(digest, (obj.args, obj.keywords), seen, depth)
        return
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    if isinstance(obj, type):
        digest.update(f"class {obj.__qualname__}".encode())
        for name in sorted(vars(obj)):
            member = vars(obj)[name]
            member = getattr(member, "__func__", member)  # staticmethod / classmethod
            if isinstance(member, types.FunctionType):
                digest.update(name.encode())
                _add_callable(digest, member, seen, depth + 1)
        return
    code = getattr(obj, "__code__", None)
    if not isinstance(code, types.CodeType):
        digest.update(f"<{type(obj).__module__}.{type(obj).__qualname__}>".encode())
        return
    digest.update(str(getattr(obj, "__qualname__", "")).encode())
    names: Set[str] = set()
    _add_code(digest, code, names)
    _add_value(digest, getattr(obj, "__defaults__", None), seen, depth)
    _add_value(digest, getattr(obj, "__kwdefaults__", None), seen, depth)
    for cell in getattr(obj, "__closure__", None) or ():
        try:
            _add_value(digest, cell.cell_contents, seen, depth)
        except ValueError:  # an empty cell
            digest.update(b"<empty>")
    scope = getattr(obj, "__globals__", {})
    module = getattr(obj, "__module__", None)
    for name in sorted(names):
        if name not in scope:
            continue
        value = scope[name]
        if isinstance(value, types.ModuleType):
            continue
        if _is_users(value, module):
            digest.update(name.encode())
            _add_callable(digest, value, seen, depth + 1)
        elif _is_plain(value):
            digest.update(f"{name}={_stable_repr(value)}".encode())


def _add_code(digest: Any, code: types.CodeType, names: Set[str]) -> None:
    """The code's bytes, names and constants, nested code objects included; collects the
    global names it reads into ``names``."""
    digest.update(code.co_code)
    digest.update(repr((code.co_name, code.co_names, code.co_varnames, code.co_freevars)).encode())
    names.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _add_code(digest, const, names)
        else:
            digest.update(_stable_repr(const).encode())


def _add_value(digest: Any, value: Any, seen: Set[int], depth: int) -> None:
    if callable(value):
        _add_callable(digest, value, seen, depth + 1)
    else:
        digest.update(_stable_repr(value).encode())


def _is_users(value: Any, module: Optional[str]) -> bool:
    """A function or class defined in the task's own module (the script or its neighbour)."""
    target = inspect.unwrap(value) if callable(value) else value
    if not isinstance(target, (types.FunctionType, type)):
        electron = getattr(value, "electron_object", None)
        return electron is not None
    return getattr(target, "__module__", None) == module


def _is_plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, list, frozenset, set)) and depth < 3 and len(value) <= 1000:
        return all(_is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict) and depth < 3 and len(value) <= 1000:
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _stable_repr(value: Any) -> str:
    """A repr equal across processes: sets sorted (their order follows the hash seed),
    addresses dropped."""
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}({sorted(_stable_repr(v) for v in value)})"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({[_stable_repr(v) for v in value]})"
    if isinstance(value, dict):
        return f"dict({sorted((_stable_repr(k), _stable_repr(v)) for k, v in value.items())})"
    if isinstance(value, types.CodeType):
        return f"<code {value.co_name}>"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a user's __repr__ may raise
        text = f"<{type(value).__qualname__}>"
    return _ADDRESS.sub("", text)
