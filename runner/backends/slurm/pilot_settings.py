"""The ``pilot`` parameter of a Slurm executor: many tasks per allocation. Pure, no I/O.

``SlurmExecutor(pilot=True)`` or ``pilot={"max_blocks": 4, "workers": 8, ...}`` (or the same
under an executor in the config file). Unknown names are refused at dispatch, with the valid
ones (``pilot_problem``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Optional

DEFAULTS: Dict[str, Any] = {
    "min_blocks": 0,  # blocks kept while the executor has tasks out, even when few
    "max_blocks": 1,  # blocks (Slurm jobs) out at once, for all runs of the executor
    "workers": 0,  # tasks at once per block; 0: the CPUs Slurm gives the block
    "idle_timeout": 30.0,  # seconds a block waits without work before it exits
    "walltime": "",  # the block's --time (minutes, or [D-]HH:MM:SS); "": the executor's
    "nodes": 1,  # nodes per block: one pool on each (srun), all taking from the run's queue
}
_CLOCK = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+)(?::(\d+))?$")


class PilotError(ValueError):
    """A pilot setting cannot be used."""


@dataclass(frozen=True)
class PilotSettings:
    min_blocks: int = 0
    max_blocks: int = 1
    workers: int = 0
    idle_timeout: float = 30.0
    walltime_minutes: Optional[int] = None
    nodes: int = 1

    @property
    def walltime_seconds(self) -> float:
        return float(self.walltime_minutes * 60) if self.walltime_minutes else 0.0


def parse_pilot(value: Any) -> Optional[PilotSettings]:
    """None when pilot mode is off (``pilot`` absent, None or False); raises ``PilotError``."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise PilotError(f"Slurm executor parameter 'pilot' must be true or a mapping of "
                         f"{', '.join(DEFAULTS)}, not {value!r}")
    unknown = sorted(str(k) for k in value if k not in DEFAULTS)
    if unknown:
        raise PilotError(f"unknown pilot setting '{unknown[0]}'; known: {', '.join(DEFAULTS)}")
    merged = {**DEFAULTS, **{k: v for k, v in value.items() if v is not None}}
    min_blocks = _count(merged["min_blocks"], "min_blocks", 0)
    max_blocks = _count(merged["max_blocks"], "max_blocks", 1)
    if min_blocks > max_blocks:
        raise PilotError(f"pilot min_blocks ({min_blocks}) is above max_blocks ({max_blocks})")
    idle = merged["idle_timeout"]
    if isinstance(idle, bool) or not isinstance(idle, (int, float)) or idle <= 0:
        raise PilotError(f"pilot idle_timeout must be a number of seconds above 0, not {idle!r}")
    return PilotSettings(min_blocks=min_blocks, max_blocks=max_blocks,
                         workers=_count(merged["workers"], "workers", 0),
                         idle_timeout=float(idle),
                         walltime_minutes=_minutes(merged["walltime"]),
                         nodes=_count(merged["nodes"], "nodes", 1))


def pilot_problem(config: Dict[str, Any]) -> str:
    """What is wrong with an executor's ``pilot`` setting ("" if nothing): checked at dispatch."""
    try:
        parse_pilot(config.get("pilot"))
    except PilotError as exc:
        return str(exc)
    return ""


def _count(value: Any, name: str, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise PilotError(f"pilot {name} must be a whole number >= {lowest}, not {value!r}")
    return value


def _minutes(value: Any) -> Optional[int]:
    """Slurm's --time forms: minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]] -> whole minutes."""
    if value in ("", None):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return max(1, int(value))
    match = _CLOCK.match(str(value).strip())
    if not match:
        raise PilotError(f"pilot walltime must be minutes or [D-]HH:MM:SS, not {value!r}")
    days, first, second, third = match.groups()
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours = int(first) if first is not None else int(second)
        minutes = int(second) if first is not None else 0
        seconds = int(third or 0)
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif third is not None:  # HH:MM:SS
        total = int(first) * 3600 + int(second) * 60 + int(third)
    elif first is not None:  # MM:SS
        total = int(first) * 60 + int(second)
    else:
        total = int(second) * 60
    if total <= 0:
        raise PilotError(f"pilot walltime must be above 0, not {value!r}")
    return max(1, -(-total // 60))
