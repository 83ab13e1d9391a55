"""A run pulled from another host (``cov pull HOST RUN``) is a copy, and maybe a snapshot of
an unfinished run: the host's runner owns it. Its ``pulled-from.json`` says so, and every
runner and reader here respects it: no runner serves such a run (its tasks would run twice,
here and there), no reader starts one for it, and a waiter is told to wait on the host.

The file is written before the copy becomes visible in the home (a first pull assembles the
run under a temporary name), so no runner can see a pulled run without it.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional, Union

from runner.fs import atomic_write
from runner.layout import PULLED_FROM


def pulled_from(run_path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The pull record of a run directory (``host``, ``remote_home``, ``status`` there and
    ``pulled_at``), or None for a run of this machine."""
    try:
        with open(os.path.join(run_path, PULLED_FROM), "rb") as f:
            data = json.loads(f.read() or b"{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"host": "?"}  # unreadable, but there: still not ours to run
    return data if isinstance(data, dict) else {"host": "?"}


def mark_pulled(run_path: Union[str, Path], host: str, remote_home: str, status: str) -> None:
    """Record (atomically) that ``run_path`` is a copy of ``host``'s run, ``status`` there."""
    record = {"host": host, "remote_home": remote_home, "status": status,
              "pulled_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write(os.path.join(run_path, PULLED_FROM), json.dumps(record).encode())


def snapshot_line(dispatch_id: str, record: Dict[str, Any]) -> str:
    """One line for a reader of a pulled unfinished run."""
    host = record.get("host", "?")
    return (f"run {dispatch_id} is a copy pulled from {host} at {record.get('pulled_at', '?')} "
            f"({record.get('status', '?')} there), served there: follow it with "
            f"`cov status --on {host} {dispatch_id[:8]}`, then `cov pull {host} "
            f"{dispatch_id[:8]}` again")


__all__ = ["mark_pulled", "pulled_from", "snapshot_line"]
