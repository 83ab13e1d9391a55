"""A 200-task fan-out through Slurm: one job array vs one job per task, next to Slurm alone.

    python bench/bench_slurm.py [--tasks 200] [--trials 3]

Needs root and slurm-wlm + munge (``tests/infra/install_system_deps.sh``): it starts a private
single-node cluster with ``tests/infra/slurm.sh`` (all CPUs of this machine, free ports; or uses
the one ``$SLURM_CONF`` names with ``--existing``) and stops it at the end. Each trial is a cold
``cov dispatch`` + ``cov wait`` in a fresh runs home. Reported, as medians over the trials:

- ``slurm floor``: the same number of ``true`` jobs, as one ``sbatch --array`` and as one
  ``sbatch`` each, from the first submission until squeue shows none left: what this cluster
  itself needs;
- ``cov array`` / ``cov single``: the fan-out (``square(i)`` on Slurm, a local ``sum``) with the
  executor's defaults (``poll_freq`` 30 s: completion is learned from outcome files, not from
  the scheduler; ``use_srun`` on unless ``--no-srun``) and ``array=True`` (the default) or
  ``array=False``; ``wall`` is dispatch to result, ``submit`` the runner's time from the first
  claim to the last job id recorded (the sbatch calls, during which the runner's loop waits),
  ``sbatch calls`` the number of submissions.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"

WORKFLOW = """
import covalent as ct

@ct.electron(executor=ct.executor.SlurmExecutor(array={array}, use_srun={srun}))
def square(i):
    return i * i

@ct.electron
def total(xs):
    return sum(xs)

@ct.lattice
def fan(n={tasks}):
    return total([square(i) for i in range(n)])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def start_cluster(directory: Path) -> Dict[str, str]:
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":" + SBIN,
           "SLURMCTLD_PORT": str(free_port()), "SLURMD_PORT": str(free_port())}
    subprocess.run(["bash", str(REPO / "tests/infra/slurm.sh"), "start", str(directory)],
                   env=env, check=True)
    return {"SLURM_CONF": str(directory / "slurm.conf")}


def stop_cluster(directory: Path) -> None:
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":" + SBIN}
    subprocess.run(["bash", str(REPO / "tests/infra/slurm.sh"), "stop", str(directory)],
                   env=env, check=False)


def active(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job, "-t", "PENDING,RUNNING,COMPLETING,CONFIGURING",
                          "-o", "%i"], capture_output=True, text=True).stdout
    return bool(out.strip())


def sbatch(scratch: Path, *args: str) -> str:
    return subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", *args, "--wrap", "true"],
                          capture_output=True, text=True, check=True,
                          cwd=str(scratch)).stdout.strip().split(";")[0]


def slurm_floor(tasks: int, scratch: Path, array: bool) -> float:
    start = time.perf_counter()
    if array:
        jobs = [sbatch(scratch, f"--array=0-{tasks - 1}")]
    else:
        jobs = [sbatch(scratch) for _ in range(tasks)]
    while active(",".join(jobs)):
        time.sleep(0.05)
    return time.perf_counter() - start


def cov_trial(tasks: int, array: bool, srun: bool) -> Dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="cov-bench-slurm-"))
    base.chmod(0o755)
    env = {**os.environ, "COV_HOME": str(base / "runs"), "COV_CONFIG": str(base / "config.yaml"),
           "PYTHONPATH": str(REPO)}
    (base / "config.yaml").write_text("runner:\n  idle_timeout: 2\n")
    script = base / "fan.py"
    script.write_text(WORKFLOW.format(array=array, srun=srun, tasks=tasks))
    cov = [sys.executable, "-m", "covalent_cli.cli"]
    start = time.perf_counter()
    run_id = subprocess.run(cov + ["dispatch", str(script), "-q"], env=env, capture_output=True,
                            text=True, check=True).stdout.strip().splitlines()[-1]
    waited = subprocess.run(cov + ["wait", run_id, "-q", "--timeout", "1800"], env=env)
    wall = time.perf_counter() - start
    if waited.returncode != 0:
        raise SystemExit(f"run {run_id} did not complete (see {base})")
    events = [json.loads(line) for line in
              (base / "runs" / run_id / "events.jsonl").read_text().splitlines()]
    claims = [e["t"] for e in events if e["ev"] == "claim" and e.get("backend") == "slurm"]
    handles = [e for e in events if e["ev"] == "handle" and "job_id" in e.get("handle", {})]
    jobs = {e["handle"]["job_id"].split("_")[0] for e in handles}
    subprocess.run(cov + ["runner", "stop"], env=env, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
    return {"wall": wall, "submit": max(e["t"] for e in handles) - min(claims),
            "jobs": float(len(jobs))}


def median_of(rows: List[Dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--no-srun", action="store_true", help="use_srun=False")
    parser.add_argument("--existing", action="store_true",
                        help="use the cluster $SLURM_CONF names instead of starting one")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the cluster on the way out
    cluster = Path(tempfile.mkdtemp(prefix="cov-bench-cluster-"))
    cluster.chmod(0o755)
    try:
        if not args.existing:
            os.environ.update(start_cluster(cluster))
        cpus = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True,
                              text=True).stdout.strip()
        print(f"cluster: CPUs (allocated/idle/other/total) {cpus}; {args.tasks} tasks, "
              f"{args.trials} trials each", flush=True)
        slurm_floor(4, cluster, True)  # the first job after a start is slow; not measured
        for label, array in (("slurm floor, one array   ", True),
                             ("slurm floor, single jobs ", False)):
            floors = [slurm_floor(args.tasks, cluster, array) for _ in range(args.trials)]
            print(f"{label}: median {statistics.median(floors):.2f} s", flush=True)
        for label, array in (("cov array ", True), ("cov single", False)):
            rows = [cov_trial(args.tasks, array, not args.no_srun) for _ in range(args.trials)]
            print(f"{label}: wall median {median_of(rows, 'wall'):.2f} s "
                  f"(min {min(r['wall'] for r in rows):.2f}, max "
                  f"{max(r['wall'] for r in rows):.2f}); submit {median_of(rows, 'submit'):.3f} s;"
                  f" sbatch calls {median_of(rows, 'jobs'):.0f}", flush=True)
    finally:
        if not args.existing:
            stop_cluster(cluster)
        shutil.rmtree(cluster, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
