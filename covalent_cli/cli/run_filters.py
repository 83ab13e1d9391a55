"""Choosing runs from a listing: ``--status``, ``--name``, ``--tag``, ``--param``,
``--older-than`` (shared by ``cov runs`` and ``cov rm``), and how a row's labels and inputs
read in a table."""
from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import click

from covalent_cli.cli.args import parse_args
from runner.query import UNREADABLE
from runner.state import STATUSES

VALID_STATUSES = tuple(sorted(STATUSES | {UNREADABLE}))
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhdw])\s*$", re.IGNORECASE)


class RunStatus(click.ParamType):
    """A run status, any case; an unknown one is a usage error listing the valid ones."""

    name = "status"

    def convert(self, value: Any, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> str:
        status = str(value).strip().upper()
        if status not in VALID_STATUSES:
            self.fail(f"{value!r} is not a run status; valid: {', '.join(VALID_STATUSES)}",
                      param, ctx)
        return status


class Age(click.ParamType):
    """An age: a number and a unit, ``90s``, ``30m``, ``12h``, ``7d``, ``2w``; in seconds."""

    name = "age"

    def convert(self, value: Any, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> float:
        if isinstance(value, float):
            return value
        found = _AGE.match(str(value))
        if not found:
            self.fail(f"{value!r} is not an age (a number and a unit: 90s, 30m, 12h, 7d, 2w)",
                      param, ctx)
        assert found is not None  # fail() raised
        return float(found.group(1)) * _UNITS[found.group(2).lower()]


@dataclass
class RunFilter:
    """What a listing keeps: all of the given conditions hold (none given: every run)."""

    status: Optional[str] = None
    name: Optional[str] = None  # a glob: sweep-*
    tags: Tuple[str, ...] = ()  # the run has each of them
    params: Tuple[str, ...] = ()  # NAME=VALUE: the run's -a NAME had that value
    older_than: Optional[float] = None  # seconds since dispatch
    _params: Dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        # The run records each input's repr: compare reprs of the values as -a reads them.
        _, kwargs = parse_args(self.params, None)
        self._params = {k: repr(v) for k, v in kwargs.items()}

    @property
    def given(self) -> bool:
        return bool(self.status or self.name or self.tags or self.params or
                    self.older_than is not None)

    def keeps(self, row: Dict[str, Any], now: Optional[float] = None) -> bool:
        """Whether a ``run_summary`` row passes."""
        if self.status and row["status"] != self.status:
            return False
        if self.name is not None and not fnmatch.fnmatchcase(row.get("name") or "", self.name):
            return False
        if any(t not in (row.get("tags") or []) for t in self.tags):
            return False
        kwargs = (row.get("inputs") or {}).get("kwargs") or {}
        if any(kwargs.get(k) != v for k, v in self._params.items()):
            return False
        if self.older_than is not None:
            created = row.get("created")
            if created is None or (now or time.time()) - created < self.older_than:
                return False
        return True


def labels_text(row: Dict[str, Any]) -> str:
    """A run's name and tags for a table: ``sweep-1 #fast #gpu``."""
    parts = [str(row["name"])] if row.get("name") else []
    parts += [f"#{t}" for t in row.get("tags") or []]
    return " ".join(parts)


def params_text(row: Dict[str, Any], width: int = 60) -> str:
    """A run's inputs as -a would give them (``n=100 mode='fast'``), cut to ``width``."""
    inputs = row.get("inputs") or {}
    parts: List[str] = list(inputs.get("args") or [])
    parts += [f"{k}={v}" for k, v in (inputs.get("kwargs") or {}).items()]
    text = " ".join(parts)
    return text if len(text) <= width else text[:width - 3] + "..."
