"""How soon a Slurm task's end reaches `cov status`: a job whose worker dies vs one that finishes.

    python bench/bench_slurm_deaths.py [--trials 5] [--existing] [--baseline DIR]

Needs root and slurm-wlm + munge, as ``bench/bench_slurm.py`` (it starts a private single-node
cluster, or uses ``$SLURM_CONF``'s with ``--existing``). The executor keeps its default
``poll_freq`` (30 s): the scheduler is asked at most every 30 s. Each trial is a cold dispatch
of three one-task runs, one after the other:

- ``finished``: the task returns; from the job's end as Slurm records it (the jobcomp file's
  ``EndTime``, whole seconds) to the task's end event in the run's log — the baseline, the
  target being 1 s;
- ``killed``: the worker is killed with SIGKILL (as the OOM killer does) while it sleeps; from
  the kill, and from Slurm's ``EndTime``, to the task's FAILED end event;
- ``no python``: ``python_path`` does not exist; from Slurm's ``EndTime`` to the end event.

The target (issue: "a job that dies on its node is reported <= 15 s after Slurm has recorded
it; today ~90 s"): before the job script wrote the outcome of a dead worker, these waited for
the next ``squeue`` (30 s, up to 120 s with backoff), the requeue window (10 s) and the grace.
Printed: medians and maxima, and each death's median minus the finished one's. With
``--baseline DIR`` (another checkout of cov, e.g. ``git worktree add /tmp/old <commit>``) the same
trials run with its code too, interleaved, and the ratios of the medians are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_slurm import REPO, start_cluster, stop_cluster  # noqa: E402

WORKFLOW = """
import os, time
import covalent as ct

@ct.electron(executor=ct.executor.SlurmExecutor(use_srun=False{extra}))
def task(pid_file):
    if pid_file:
        with open(pid_file + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pid_file + ".tmp", pid_file)
        time.sleep(300)
    return "done"

@ct.lattice
def wf(pid_file=""):
    return task(pid_file)
"""


def _jobcomp_end(cluster: Path, job: str) -> Optional[float]:
    """The job's EndTime in the jobcomp file (local time, whole seconds)."""
    path = cluster / "log" / "jobcomp.txt"
    for _ in range(50):
        text = path.read_text() if path.exists() else ""
        for line in reversed(text.splitlines()):
            if re.search(rf"\bJobId={re.escape(job)}\b", line):
                found = re.search(r"\bEndTime=(\S+)", line)
                if found:
                    return datetime.fromisoformat(found.group(1)).timestamp()
        time.sleep(0.1)
    return None


def _trial(kind: str, cluster: Path, code: Path = REPO) -> Dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="cov-bench-deaths-"))
    base.chmod(0o755)
    env = {**os.environ, "COV_HOME": str(base / "runs"), "COV_CONFIG": str(base / "config.yaml"),
           "PYTHONPATH": str(code)}
    (base / "config.yaml").write_text("runner:\n  idle_timeout: 2\n")
    script = base / "wf.py"
    extra = ', python_path="/nonexistent/bin/python3"' if kind == "no python" else ""
    script.write_text(WORKFLOW.format(extra=extra))
    pid_file = base / "pid"
    cov = [sys.executable, "-m", "covalent_cli.cli"]
    args = ["-a", f"pid_file={pid_file}"] if kind == "killed" else []
    # cwd: not a checkout, so that PYTHONPATH (``code``) decides which cov runs (python -m
    # puts the working directory first on the path)
    run_id = subprocess.run(cov + ["dispatch", str(script), "-q", *args], env=env,
                            capture_output=True, text=True, check=True, cwd=str(base)
                            ).stdout.strip().splitlines()[-1]
    killed = 0.0
    if kind == "killed":
        deadline = time.monotonic() + 120
        while not pid_file.exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"the task of run {run_id} never started (see {base})")
            time.sleep(0.02)
        killed = time.time()
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    subprocess.run(cov + ["wait", run_id, "-q", "--timeout", "600"], env=env,
                   capture_output=True, cwd=str(base))
    events = [json.loads(line) for line in
              (base / "runs" / run_id / "events.jsonl").read_text().splitlines()]
    end = next(e for e in events if e["ev"] == "end" and e.get("node") == 0)
    job = next(e["handle"]["job_id"] for e in events if e["ev"] == "handle")
    subprocess.run(cov + ["runner", "stop"], env=env, capture_output=True, cwd=str(base))
    expected = "COMPLETED" if kind == "finished" else "FAILED"
    if end.get("status") != expected:
        raise SystemExit(f"run {run_id}: {kind} ended {end.get('status')} (see {base})")
    recorded = _jobcomp_end(cluster, job)
    shutil.rmtree(base, ignore_errors=True)
    row = {"after_slurm": end["t"] - recorded if recorded else float("nan")}
    if killed:
        row["after_kill"] = end["t"] - killed
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure too")
    parser.add_argument("--existing", action="store_true",
                        help="use the cluster $SLURM_CONF names instead of starting one")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster = Path(tempfile.mkdtemp(prefix="cov-bench-cluster-"))
    cluster.chmod(0o755)
    try:
        if args.existing:
            cluster = Path(os.environ["SLURM_CONF"]).parent
        else:
            os.environ.update(start_cluster(cluster))
        kinds = ("finished", "killed", "no python")
        rows: Dict[str, List[Dict[str, float]]] = {k: [] for k in kinds}
        old: Dict[str, List[Dict[str, float]]] = {k: [] for k in kinds}
        for _ in range(args.trials):  # interleaved: the kinds share the machine's moods
            for kind in kinds:
                rows[kind].append(_trial(kind, cluster))
                if args.baseline:
                    old[kind].append(_trial(kind, cluster, args.baseline.resolve()))
        print(f"poll_freq 30 s (default); {args.trials} trials; Slurm's EndTime has whole "
              "seconds, so 'after Slurm' is within +-1 s")
        _report("this checkout", rows)
        if args.baseline:
            _report(f"baseline {args.baseline}", old)
            for kind in kinds:
                new_m = statistics.median(r["after_slurm"] for r in rows[kind])
                old_m = statistics.median(r["after_slurm"] for r in old[kind])
                print(f"{kind:9}: baseline/this = {old_m:.2f} s / {new_m:.2f} s"
                      + (f" = {old_m / new_m:.1f}x" if new_m > 0.05 else ""), flush=True)
    finally:
        if not args.existing:
            stop_cluster(cluster)
            shutil.rmtree(cluster, ignore_errors=True)
    return 0


def _report(label: str, rows: Dict[str, List[Dict[str, float]]]) -> None:
    print(label + ":")
    base = statistics.median(r["after_slurm"] for r in rows["finished"])
    for kind, found in rows.items():
        after = [r["after_slurm"] for r in found]
        line = (f"{kind:9}: after Slurm's end median {statistics.median(after):6.2f} s, "
                f"max {max(after):6.2f} s")
        if kind == "killed":
            kills = [r["after_kill"] for r in found]
            line += (f"; after the kill median {statistics.median(kills):5.2f} s, "
                     f"max {max(kills):5.2f} s")
        if kind != "finished":
            line += f"; vs finished {statistics.median(after) - base:+.2f} s"
        print("  " + line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
