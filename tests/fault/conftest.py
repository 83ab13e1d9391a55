"""Fixtures of the fault-injection tests: a private home whose processes never outlive the test."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.fault.harness import Home


def trials(default: int) -> int:
    """How many randomized trials to run: ``COV_FAULT_TRIALS`` (CI runs the small default)."""
    return max(1, int(os.environ.get("COV_FAULT_TRIALS") or default))


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    """A runs home driven by the harness (dispatch starts no runner; the test starts them).

    At the end every process the test started through it is killed by pid and reaped."""
    h = Home(tmp_path)
    yield h
    h.stop_all()
