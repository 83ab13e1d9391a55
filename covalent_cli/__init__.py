"""cov's SDK: Covalent's public API (``import covalent as ct``), backed by run directories.

It is importable as ``covalent`` inside ``cov dispatch``, and in every Python program of an
environment where cov is installed and real Covalent is not (``_cov_import_hook``).
"""
from __future__ import annotations

from covalent_cli.version import VERSION as __version__  # noqa: E402
from covalent_cli import executor  # noqa: E402  (ct.executor.LocalExecutor ...)
from covalent_cli import fs, fs_strategies, leptons  # noqa: E402  (ct.fs.FileTransfer ...)
from covalent_cli.leptons import Lepton  # noqa: E402
from covalent_cli.deps import DepsBash, DepsCall, DepsModule, DepsPip  # noqa: E402
from covalent_cli.dispatch import dispatch, dispatch_sync  # noqa: E402
from covalent_cli.electron import electron, wait  # noqa: E402
from covalent_cli.errors import MissingLatticeRecordError  # noqa: E402
from covalent_cli.lattice import Lattice, lattice  # noqa: E402
from covalent_cli.redispatch import cancel, redispatch  # noqa: E402
from covalent_cli.result import Result, get_result  # noqa: E402
from covalent_cli.status import RESULT_STATUS  # noqa: E402
from covalent_cli.status import RESULT_STATUS as status  # noqa: E402
from covalent_cli.transport import TransportableObject  # noqa: E402
from covalent_cli import triggers  # noqa: E402  (not supported: clear errors)
from covalent_cli.triggers import stop_triggers  # noqa: E402
from covalent_cli.compat import (covalent_start, covalent_stop, get_config,  # noqa: E402
                                 get_context, is_covalent_running, reload_config, set_config)

__all__ = [
    "electron", "lattice", "Lattice", "dispatch", "dispatch_sync", "redispatch", "get_result",
    "cancel", "wait", "status", "RESULT_STATUS", "Result", "DepsBash", "DepsPip", "DepsCall",
    "DepsModule", "TransportableObject", "executor", "get_config", "set_config", "reload_config",
    "get_context", "covalent_start", "covalent_stop", "is_covalent_running",
    "MissingLatticeRecordError", "Lepton", "fs", "fs_strategies", "leptons", "triggers",
    "stop_triggers",
]
