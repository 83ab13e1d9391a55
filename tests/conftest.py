"""Shared fixtures: a private runs home per test, and no runner left behind."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

pytest_plugins = ["tests.infra.fixtures", "tests.infra.executors", "tests.infra.parallel"]

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"


@pytest.fixture
def cov_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty runs home (``$COV_HOME``) and config (``$COV_CONFIG``) for this test.

    Runners started in it exit after 3 s idle and rescan every 0.5 s; any still alive at the
    end of the test are stopped, and the test fails if one will not stop (a leaked process).
    """
    home = tmp_path / "home"
    config = tmp_path / "config.yaml"
    config.write_text("runner:\n  idle_timeout: 3\n  rescan_interval: 0.5\n"
                      "  heartbeat_interval: 1\n")
    monkeypatch.setenv("COV_HOME", str(home))
    monkeypatch.setenv("COV_CONFIG", str(config))
    monkeypatch.delenv("COV_NO_RUNNER", raising=False)
    yield home
    from runner.daemon import stop_runners
    from runner.liveness import pid_alive, read_runners

    stop_runners(home, timeout=10)
    leaked = [r for r in read_runners(home) if r.get("host") and pid_alive(int(r["pid"]))]
    assert not leaked, f"runner processes left behind: {leaked}"


@pytest.fixture
def run_cov(cov_home: Path):
    """Run the ``cov`` CLI in a subprocess: ``run_cov("status", "latest")`` -> CompletedProcess."""
    import subprocess

    def run(*args: str, timeout: float = 120, cwd: Path | None = None, **kw):
        return subprocess.run([sys.executable, "-m", "covalent_cli.cli", *args],
                              capture_output=True, text=True, timeout=timeout,
                              cwd=str(cwd or REPO), env={**os.environ, **kw.pop("env", {})},
                              **kw)

    return run
