"""Which runners are alive: heartbeat files under ``<home>/.runners/``.

A runner writes ``<host>-<pid>.json`` (its id, host, pid, start time) when it starts and touches
it every heartbeat interval. It is alive if the file is fresh and, on the same host, its pid
exists. Never a stale flag: a runner killed with -9 is dead as soon as its pid is gone (same
host) or its heartbeat ages (another host).
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

from runner.fs import DIR_MODE, atomic_write
# (fence_path, heartbeat_path and runners_dir are imported from here too)
from runner.layout import fence_path, heartbeat_path, is_heartbeat_name, runners_dir

HOST = socket.gethostname()
# Heartbeats come every 5 s by default; this leaves room for a slow NFS. ``COV_STALE_AFTER_S``
# shortens it (tests that stop a runner past it).
STALE_AFTER_S = float(os.environ.get("COV_STALE_AFTER_S") or 30.0)


def write_heartbeat(home: Path, info: Dict[str, Any]) -> Path:
    path = heartbeat_path(home, info["host"], info["pid"])
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    atomic_write(path, json.dumps(info).encode())
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return True


def read_runners(home: Path) -> List[Dict[str, Any]]:
    """Every heartbeat file with ``alive`` and ``age`` added."""
    found = []
    directory = runners_dir(home)
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    now = time.time()
    for entry in entries:
        if not is_heartbeat_name(entry.name):
            continue
        try:
            info = json.loads(Path(entry.path).read_text())
            age = now - entry.stat().st_mtime
        except (OSError, ValueError):
            continue
        info["age"] = age
        info["alive"] = is_alive(info, age)
        info["path"] = entry.path
        found.append(info)
    return found


def is_alive(info: Dict[str, Any], age: float) -> bool:
    if info.get("host") == HOST:
        return pid_alive(int(info.get("pid", 0))) and age < STALE_AFTER_S * 4
    return age < STALE_AFTER_S


def live_runner(home: Path, dispatch_id: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """A live runner serving ``home`` (all its runs, or at least run ``dispatch_id``), if any:
    a fresh heartbeat, else the home's runner job while Slurm has not ended it."""
    for info in read_runners(home):
        if info["alive"] and (not info.get("runs") or dispatch_id in info["runs"]):
            return info
        if not info["alive"] and info.get("host") == HOST and not pid_alive(int(info["pid"])):
            try:  # our own host's dead runner: its file is only noise now
                os.unlink(info["path"])
            except OSError:
                pass
    # A runner running as a Slurm job: its pid is not ours to see, and it has no heartbeat yet
    # while the job waits in the queue (or for its predecessor to end, at a handover).
    from runner.runner_job.record import as_runner_info, serving_job

    job = serving_job(home)
    return as_runner_info(job) if job is not None else None


class RunnerRegistry:
    """Answers "is runner X alive?" for claims found in event logs (cached for a second)."""

    def __init__(self, home: Path, me: str) -> None:
        self.home = home
        self.me = me
        self._cache: Dict[str, bool] = {}
        self._stamp = 0.0
        self._dead: Set[str] = set()  # ids a read made after we first asked found dead

    def alive(self, runner_id: Optional[str]) -> bool:
        if not runner_id:
            return False
        if runner_id == self.me:
            return True
        now = time.time()
        # A runner missing from the cache may have started after the last read: it writes its
        # heartbeat before its first claim, so a read made now sees it if it lives. Answering
        # "dead" from the old read would let us take over (and run again) its fresh claims.
        if now - self._stamp > 1.0 or (runner_id not in self._cache and
                                       runner_id not in self._dead):
            self._cache = {r.get("id", ""): r["alive"] for r in read_runners(self.home)}
            self._stamp = now
        alive = self._cache.get(runner_id, False)
        if not alive:
            self._dead.add(runner_id)  # ids are never reused: dead stays dead
        return alive
