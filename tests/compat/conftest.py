"""Fixtures of the compatibility tests."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the test user can write to (the ssh side of a transfer). Not under pytest's
    own temporary tree: another pytest session of this user makes that 0700 again."""
    path = Path(tempfile.mkdtemp(prefix="cov-ft-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
