"""`cov status --json` on a live run at scale (bench/scale.py --live): every task of an N-node
fan-out ended but the reduce, which waits for a file, so the run stays live while it is read.

The figure is taken once the run has been quiet for a while (its log unchanged for 15 s: three
runner heartbeats, in which a runner that snapshots live runs has done so), three calls timed
from outside, wall and CPU as bench/run.py times the finished run's; then the file is made,
the run ends and the runner is stopped.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import BASE_ENV

QUIET = 15.0  # seconds without a new event before the run is read


def live_status(n_nodes: int, root: Path) -> dict:
    """{"status_median", "status_cpu"} of `cov status --json` on a live n_nodes-node run."""
    home = Path(tempfile.mkdtemp(prefix="cov-bench-live-"))
    env = {**BASE_ENV, "COV_HOME": str(home / "runs"), "COV_CONFIG": str(home / "config.yaml"),
           "PYTHONPATH": str(root)}
    (home / "config.yaml").write_text("runner:\n  idle_timeout: 60\n")
    gate = home / "open"
    code = (
        "import covalent_cli as ct\n"
        "def inc(x):\n    return x + 1\n"
        "def total(xs, path):\n    import os, time\n"
        "    while not os.path.exists(path):\n        time.sleep(0.1)\n    return sum(xs)\n"
        "e, t_ = ct.electron(inc), ct.electron(total)\n"
        f"@ct.lattice\ndef big():\n    return t_([e(i) for i in range({n_nodes // 2 - 2})], "
        f"{str(gate)!r})\n"
        "print(ct.dispatch(big)())\n")
    try:
        dispatch_id = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True, env=env, check=True, cwd=str(root),
                                     timeout=3600).stdout.split()[-1]
        events = home / "runs" / dispatch_id / "events.jsonl"
        size, since = -1, time.monotonic()
        while time.monotonic() - since < QUIET:  # ended but the reduce, and then quiet
            time.sleep(1.0)
            now = events.stat().st_size if events.exists() else 0
            if now != size:
                size, since = now, time.monotonic()
        times, cpu = [], []
        for _ in range(3):
            start, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "status",
                                   dispatch_id, "--json"], env=env, capture_output=True,
                                  check=True, cwd=str(root))
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime)
        if json.loads(done.stdout)["status"] != "RUNNING":
            raise SystemExit(f"the live {n_nodes}-node run of {root} was not live when read")
        gate.touch()
        subprocess.run([sys.executable, "-m", "covalent_cli.cli", "wait", dispatch_id, "-q"],
                       env=env, capture_output=True, cwd=str(root), timeout=600)
    finally:
        subprocess.run([sys.executable, "-m", "covalent_cli.cli", "runner", "stop"], env=env,
                       capture_output=True, cwd=str(root))
        shutil.rmtree(home, ignore_errors=True)
    return {"status_median": statistics.median(times), "status_cpu": statistics.median(cpu)}


__all__ = ["live_status"]
