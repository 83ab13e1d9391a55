"""cov's SDK: Covalent's public API (``import covalent as ct``), backed by run directories.

It is importable as ``covalent`` inside ``cov dispatch``, and in every Python program of an
environment where cov is installed and real Covalent is not (``_cov_import_hook``).
"""
from __future__ import annotations

import copyreg
import sys
from importlib import import_module
from types import ModuleType

from covalent_cli.version import VERSION as __version__  # noqa: E402

TYPE_CHECKING = False  # (not typing's: importing typing alone costs ~4 ms)
if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from typing import Any, Callable
    from covalent_cli import executor, fs, fs_strategies, leptons, triggers  # noqa: F401
    from covalent_cli.compat import (covalent_start, covalent_stop, get_config,  # noqa: F401
                                     get_context, is_covalent_running, reload_config,
                                     set_config)
    from covalent_cli.deps import DepsBash, DepsCall, DepsModule, DepsPip  # noqa: F401
    from covalent_cli.dispatch import dispatch, dispatch_sync  # noqa: F401
    from covalent_cli.electron import electron, wait  # noqa: F401
    from covalent_cli.errors import MissingLatticeRecordError  # noqa: F401
    from covalent_cli.lattice import Lattice, lattice  # noqa: F401
    from covalent_cli.leptons import Lepton  # noqa: F401
    from covalent_cli.redispatch import cancel, redispatch  # noqa: F401
    from covalent_cli.result import Result, get_result  # noqa: F401
    from covalent_cli._results_manager.results_manager import sync  # noqa: F401
    from covalent_cli.status import RESULT_STATUS  # noqa: F401
    from covalent_cli.status import RESULT_STATUS as status  # noqa: F401
    from covalent_cli.transport import TransportableObject  # noqa: F401
    from covalent_cli.triggers import stop_triggers  # noqa: F401

# The public names load on first use (module ``__getattr__``), so that ``import covalent_cli``
# costs ~a millisecond and not the ~100 ms of the graph, dispatch and run-dir layers with
# cloudpickle, yaml and filelock: a command or script pays only for what it touches.
# name -> (module, attribute; "" for the module itself)
_LAZY = {
    "executor": ("covalent_cli.executor", ""),
    "fs": ("covalent_cli.fs", ""),
    "fs_strategies": ("covalent_cli.fs_strategies", ""),
    "leptons": ("covalent_cli.leptons", ""),
    "triggers": ("covalent_cli.triggers", ""),
    "Lepton": ("covalent_cli.leptons", "Lepton"),
    "DepsBash": ("covalent_cli.deps", "DepsBash"),
    "DepsCall": ("covalent_cli.deps", "DepsCall"),
    "DepsModule": ("covalent_cli.deps", "DepsModule"),
    "DepsPip": ("covalent_cli.deps", "DepsPip"),
    "dispatch": ("covalent_cli.dispatch", "dispatch"),
    "dispatch_sync": ("covalent_cli.dispatch", "dispatch_sync"),
    "electron": ("covalent_cli.electron", "electron"),
    "wait": ("covalent_cli.electron", "wait"),
    "MissingLatticeRecordError": ("covalent_cli.errors", "MissingLatticeRecordError"),
    "Lattice": ("covalent_cli.lattice", "Lattice"),
    "lattice": ("covalent_cli.lattice", "lattice"),
    "cancel": ("covalent_cli.redispatch", "cancel"),
    "redispatch": ("covalent_cli.redispatch", "redispatch"),
    "Result": ("covalent_cli.result", "Result"),
    "get_result": ("covalent_cli.result", "get_result"),
    "sync": ("covalent_cli._results_manager.results_manager", "sync"),
    "RESULT_STATUS": ("covalent_cli.status", "RESULT_STATUS"),
    "status": ("covalent_cli.status", "RESULT_STATUS"),
    "TransportableObject": ("covalent_cli.transport", "TransportableObject"),
    "stop_triggers": ("covalent_cli.triggers", "stop_triggers"),
    "covalent_start": ("covalent_cli.compat", "covalent_start"),
    "covalent_stop": ("covalent_cli.compat", "covalent_stop"),
    "get_config": ("covalent_cli.compat", "get_config"),
    "get_context": ("covalent_cli.compat", "get_context"),
    "is_covalent_running": ("covalent_cli.compat", "is_covalent_running"),
    "reload_config": ("covalent_cli.compat", "reload_config"),
    "set_config": ("covalent_cli.compat", "set_config"),
}


def __getattr__(name: str) -> object:
    """Load a public name on first use and keep it as a plain module attribute after."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    if module == "covalent_cli.lattice":
        # ``Lattice.dispatch``/``dispatch_sync`` are bound by the dispatch module (the graph
        # layer never imports it): a lattice is usable as soon as its decorator is.
        import_module("covalent_cli.dispatch")
    value = import_module(module)
    if attribute:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_LAZY))


class _Package(ModuleType):
    """Keeps ``ct.dispatch``, ``ct.lattice``, ``ct.status`` ... the public objects: the import
    system binds a submodule to its package's attribute of the same name when it is first
    imported (``covalent_cli.dispatch`` the module would replace ``ct.dispatch`` the function)."""

    def __setattr__(self, name: str, value: object) -> None:
        target = _LAZY.get(name)
        if (target and target[1] and isinstance(value, ModuleType)
                and value.__name__ == f"{__name__}.{name}"):
            return
        super().__setattr__(name, value)


def _reduce_package(module: "_Package") -> "tuple[Callable[..., Any], tuple[str]]":
    # Pickled by name like any module (cloudpickle and pickle know only ModuleType itself):
    # a task whose function refers to ``ct`` unpickles it by importing covalent_cli.
    return import_module, (module.__name__,)


copyreg.pickle(_Package, _reduce_package)
sys.modules[__name__].__class__ = _Package


__all__ = [
    "electron", "lattice", "Lattice", "dispatch", "dispatch_sync", "redispatch", "get_result",
    "cancel", "wait", "status", "RESULT_STATUS", "Result", "DepsBash", "DepsPip", "DepsCall",
    "DepsModule", "TransportableObject", "executor", "get_config", "set_config", "reload_config",
    "get_context", "covalent_start", "covalent_stop", "is_covalent_running",
    "MissingLatticeRecordError", "Lepton", "fs", "fs_strategies", "leptons", "triggers",
    "stop_triggers", "sync",
]
