"""The manifests of the runs this process has just written, kept so that reading one of them
back (``get_result(..., wait=True)`` after ``dispatch``, ``dispatch_sync``) does not parse the
YAML it wrote a moment ago: on a 1,000-task run that parse is most of the client's cost after
the run ends.

A manifest is never rewritten once its run exists, so the copy in memory is what a reader
would parse. It is handed over only if the run directory's manifest file is still the one
written (same inode, size and mtime: a directory removed and made again is read from disk),
and only the last few runs are kept: a long-lived process that dispatches many runs does not
keep every graph alive.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Tuple

from runner.manifest import Manifest
from runner.rundir import RunDir

KEEP = 4  # a script's last few runs: enough for dispatch-then-get_result, small in memory

_Stamp = Tuple[int, int, int]
_OWN: "OrderedDict[str, Tuple[str, _Stamp, Manifest]]" = OrderedDict()


def _stamp(run: RunDir) -> _Stamp:
    st = os.stat(run.manifest_path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def remember(run: RunDir, manifest: Manifest) -> None:
    """``run`` was just created by this process from ``manifest`` (a fresh dispatch id, so no
    other creator can have won the race to create it)."""
    try:
        stamp = _stamp(run)
    except OSError:
        return
    _OWN[manifest.dispatch_id] = (os.path.realpath(run.path), stamp, manifest)
    _OWN.move_to_end(manifest.dispatch_id)
    while len(_OWN) > KEEP:
        _OWN.popitem(last=False)


def adopt(run: RunDir) -> bool:
    """Give ``run`` the manifest this process wrote for it, if it did and the file is
    unchanged; True if it did (else ``run.manifest`` parses the file, as always)."""
    entry = _OWN.get(run.path.name)
    if entry is None:
        return False
    path, stamp, manifest = entry
    try:
        if os.path.realpath(run.path) != path or _stamp(run) != stamp:
            return False
    except OSError:
        return False
    run.adopt_manifest(manifest)
    return True
