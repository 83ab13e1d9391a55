"""Packing a run's functions and values: the pickles of ``tasks.pkl``, one after the other.

Functions travel with cloudpickle (by value when they come from the user's script or the modules
beside it, so a worker or a remote host needs none of the user's files); each function is
pickled once per run. ``fingerprint.py`` says whether a task's code changed (redispatch).
"""
from __future__ import annotations

import io
import os
import pickle
import sys
import types
from collections import ChainMap
from typing import Any, Callable, Dict, List, Optional, Tuple

import cloudpickle

from covalent_cli.errors import DispatchError
from covalent_cli.fingerprint import code_fingerprint

_FAST_TYPES = (int, float, str, bytes, bool, type(None))


class Packer:
    """Concatenated pickles (``tasks.pkl``); each function is pickled once per run."""

    def __init__(self) -> None:
        self.chunks: List[bytes] = []
        self.size = 0
        self.by_owner: Dict[int, Tuple[int, int]] = {}
        self.named: Dict[str, Tuple[int, int]] = {}
        self._keep: List[Any] = []  # owners stay alive so their ids stay unique
        self._fingerprints: Dict[Tuple[int, Optional[str]], str] = {}

    def add(self, data: bytes) -> Tuple[int, int]:
        blob = (self.size, len(data))
        self.chunks.append(data)
        self.size += len(data)
        return blob

    def add_value(self, value: Any, what: str) -> Tuple[int, int]:
        return self.add(dumps(value, what))

    def add_named(self, name: str, value: Any, what: str) -> None:
        self.named[name] = self.add_value(value, what)

    def add_function(self, owner: Any, make: Callable[[], Dict[str, Any]], what: str) -> Tuple[int, int]:
        key = id(owner)
        blob = self.by_owner.get(key)
        if blob is None:
            blob = self.by_owner[key] = self.add_value(make(), what)
            self._keep.append(owner)
        return blob

    def fingerprint(self, owner: Any, function: Any, hooks: Dict[str, Any],
                    executor_key: Optional[str], executor: Optional[Dict[str, Any]]) -> str:
        """``code_fingerprint``, computed once per function and executor of a run."""
        key = (id(owner), executor_key)
        found = self._fingerprints.get(key)
        if found is None:
            found = self._fingerprints[key] = code_fingerprint(function, hooks, executor)
        return found

    def data(self) -> bytes:
        if len(self.chunks) > 1:
            self.chunks = [b"".join(self.chunks)]
        return self.chunks[0] if self.chunks else b""


def _code_reduce_keeping_filename(code: types.CodeType) -> Any:
    """cloudpickle >= 3.1 writes ``<dynamic-code>`` as every by-value function's file name;
    keep the real one so that a task's traceback names the user's file and line."""
    assert _CLOUDPICKLE_CODE_REDUCE is not None  # registered only when cloudpickle has it
    constructor, args = _CLOUDPICKLE_CODE_REDUCE(code)
    return constructor, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)


_CLOUDPICKLE_CODE_REDUCE = getattr(getattr(cloudpickle, "cloudpickle", None), "_code_reduce", None)


class _Pickler(cloudpickle.Pickler):
    if _CLOUDPICKLE_CODE_REDUCE is not None:
        dispatch_table = ChainMap({types.CodeType: _code_reduce_keeping_filename},
                                  cloudpickle.Pickler.dispatch_table)


def dumps(value: Any, what: str) -> bytes:
    try:
        if type(value) in _FAST_TYPES:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        return buffer.getvalue()
    except RecursionError:
        raise DispatchError(f"cannot pickle {what}{': ' if what else ''}it is nested too deeply "
                            "(RecursionError)") from None
    except Exception as exc:  # noqa: BLE001 - pickling raises all sorts
        raise DispatchError(f"cannot pickle {what}{': ' if what else ''}{type(exc).__name__}: {exc}",
                            "tasks and their arguments must be picklable with cloudpickle") from None


_OUR_PACKAGES = ("covalent_cli", "runner", "webui", "covalent", "_cov_import_hook")
_BY_VALUE: set = set()


def pickle_local_modules_by_value(source_file: Optional[str]) -> None:
    """Modules imported from the script's own directory travel by value, like the script's
    functions: a worker or a remote host then needs none of the user's files."""
    if not source_file:
        return
    root = os.path.dirname(source_file) + os.sep
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name in _BY_VALUE or name == "__main__" or \
                name.split(".")[0] in _OUR_PACKAGES:
            continue
        path = os.path.abspath(path)
        if path.startswith(root) and "site-packages" not in path:
            try:
                cloudpickle.register_pickle_by_value(module)
                _BY_VALUE.add(name)
            except (ValueError, TypeError):
                pass
