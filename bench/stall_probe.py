"""Where a cold start spends its time, and whether it waits on a timer (#14's cold-start stall).

    python bench/stall_probe.py W1 10     # 10 cold `bench/workloads.py W1 cov` runs

Each trial is a fresh home and runner, as in bench/run.py. Printed per trial, in seconds from
the client's start: the runner process's start, its first claim, the run's end, the client's
exit, and every main-thread sleep or wait over 50 ms in the client, the runner or a worker
(``probe/sitecustomize.py``): a ``ready=0`` wait that ends while the run is unfinished is a
timer the runner waited on instead of an event.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def trial(workload: str) -> str:
    home = Path(tempfile.mkdtemp(prefix="cov-probe-"))
    log = home / "waits.log"
    env = {**os.environ, "COV_HOME": str(home / "runs"), "COV_CONFIG": str(home / "config.yaml"),
           "PYTHONPATH": f"{HERE.parent}{os.pathsep}{HERE / 'probe'}", "COV_PROBE_LOG": str(log)}
    (home / "config.yaml").write_text("runner:\n  idle_timeout: 2\n")
    t0 = time.time()
    subprocess.run([sys.executable, str(HERE / "workloads.py"), workload, "cov"], env=env,
                   stdout=subprocess.DEVNULL, check=True)
    end = time.time()
    subprocess.run([sys.executable, "-m", "covalent_cli.cli", "runner", "stop"], env=env,
                   capture_output=True)
    events = [json.loads(line) for p in (home / "runs").glob("*/events.jsonl")
              for line in p.read_text().splitlines()]
    lines = [line.split(" ", 4) for line in log.read_text().splitlines()] if log.exists() else []
    starts = [float(w[0]) - t0 for w in lines if w[2] == "start"]
    claims = [e["t"] - t0 for e in events if e["ev"] == "claim"]
    waits = [f"{w[2]} {w[3]}s {w[4].split(' ', 1)[0]} at +{float(w[0]) - t0:.2f}"
             for w in lines if w[2] != "start"]
    shutil.rmtree(home, ignore_errors=True)
    runner = f"{starts[1]:.2f}" if len(starts) > 1 else "?"
    return (f"total {end - t0:5.2f}  runner start +{runner}  first claim +{min(claims):.2f}  "
            f"run end +{events[-1]['t'] - t0:.2f}  long waits: {'; '.join(waits) or 'none'}")


if __name__ == "__main__":
    for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 5):
        print(trial(sys.argv[1] if len(sys.argv) > 1 else "W1"), flush=True)
