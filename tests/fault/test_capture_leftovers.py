"""Pool workers killed with their runner (kill -9) leave no ``logs/.capture-*`` files behind:
the runner that finishes the run removes those of dead workers, and its own workers let go of
theirs when the run ends."""
from __future__ import annotations

import os

from tests.fault.harness import FAN_WORKFLOW, kill9_runner, read_log, wait_until


def _captures(run_dir):
    return [n for n in os.listdir(run_dir / "logs") if n.startswith(".capture-")]


def test_a_runner_killed_mid_run_leaves_no_capture_files(home, tmp_path):
    script = tmp_path / "fan.py"
    script.write_text(FAN_WORKFLOW)
    log = tmp_path / "side-effects.log"
    proc = home.cov("dispatch", "-q", str(script), "-a", f"log={log}", "-a", "n=60",
                    "-a", "delay=0.05")
    assert proc.returncode == 0, proc.stderr
    run_dir = home.path / proc.stdout.strip()
    runner = home.start_runner("--workers", "2", idle_timeout=30)
    assert wait_until(lambda: len(read_log(log)) >= 6, 60)
    assert _captures(run_dir), "the workers hold capture files while they run"
    assert not kill9_runner(runner)
    left = _captures(run_dir)
    assert left, "the killed workers' capture files are there (what this test is about)"
    home.start_runner("--workers", "2", idle_timeout=30)
    assert home.cov("wait", run_dir.name, "--timeout", "120", "-q").returncode == 0
    assert wait_until(lambda: not _captures(run_dir), 15), _captures(run_dir)
