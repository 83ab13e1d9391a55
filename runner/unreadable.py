"""The home's record of runs a runner set aside as unreadable: ``<home>/.unreadable/<run>``.

A runner that finds a run damaged stops serving it and says why here, for readers that would
not find the damage themselves (listings read only the manifest header). A record holds only
while the run's files are as they were then (``files_stamp``): a repaired run is read again.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

from runner.fs import atomic_write
from runner.layout import CANCEL, EVENTS, MANIFEST, RESULTS, unreadable_dir


def files_stamp(path: os.PathLike | str) -> List[Optional[int]]:
    """When a run's files last changed (manifest, event log, cancel request, results)."""
    stamps: List[Optional[int]] = []
    for name in (MANIFEST, EVENTS, CANCEL, RESULTS):
        try:
            stamps.append(os.stat(os.path.join(path, name)).st_mtime_ns)
        except OSError:
            stamps.append(None)
    return stamps


def mark_unreadable(home: Path, name: str, reason: str) -> None:
    """Record why a runner stopped serving run ``name``. Best effort."""
    record = {"reason": reason, "stamp": files_stamp(home / name), "t": time.time()}
    try:
        unreadable_dir(home).mkdir(exist_ok=True)
        atomic_write(unreadable_dir(home) / name, json.dumps(record).encode())
    except OSError:
        pass


def clear_unreadable(home: Path, name: str) -> None:
    try:
        os.unlink(unreadable_dir(home) / name)
    except OSError:
        pass


def unreadable_reasons(home: Path) -> Dict[str, str]:
    """Runs a runner set aside, by name, with why; only while their files are as they were
    then (a repaired run is read again)."""
    try:
        names = os.listdir(unreadable_dir(home))
    except OSError:
        return {}
    found = {}
    for name in names:
        try:
            record = json.loads((unreadable_dir(home) / name).read_text())
            if record["stamp"] == files_stamp(home / name):
                found[name] = str(record["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found
