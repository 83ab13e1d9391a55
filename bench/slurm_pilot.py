"""Many short tasks through Slurm: pilot blocks vs job arrays vs the local pool, in one run.

    python bench/slurm_pilot.py [--tasks 2000] [--ms 10] [--trials 3] [--array-tasks N]
                                [--workers W] [--blocks B] [--existing] [--no-ssh]

Needs root and slurm-wlm + munge, as ``bench/bench_slurm.py`` (it starts a private single-node
cluster, or uses ``$SLURM_CONF``'s with ``--existing``), and openssh-server for the SSH mode (a
private sshd on 127.0.0.1 with ``tests/infra/sshd.sh``, user covtest, as ``bench/bench_ssh.py``). Each trial is a cold ``cov dispatch``
+ ``cov wait`` in a fresh runs home of a fan-out of ``--tasks`` tasks that each sleep ``--ms``
milliseconds, plus a local ``sum``. Reported, as medians over the trials:

- ``start latency``: one allocation's start, ``sbatch`` until the job's first line has run;
- ``local pool``: the tasks on the runner's own pool (the baseline);
- ``pilot``: ``SlurmExecutor(pilot={"max_blocks": B, "workers": W})``, ``use_srun=False``;
- ``pilot-ssh``: the same through SSH with no shared filesystem (``address`` = the loopback
  sshd's user, ``remote_workdir`` in its home): tickets go up and outcomes come back over the
  connection;
- ``array``: the default job arrays (``use_srun=False``), with ``--array-tasks`` tasks (default:
  the same number; fewer keeps the run short: its per-task time is printed too).

The target is pilot <= 3 x local pool + one start latency; the ratios say how far from it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.loopback_sshd import start_sshd, stop_sshd  # noqa: E402
from bench.bench_slurm import start_cluster, stop_cluster  # noqa: E402

WORKFLOW = """
import time
import covalent as ct

@ct.electron(executor={executor})
def work(i):
    time.sleep({seconds})
    return i

@ct.electron
def total(xs):
    return sum(xs)

@ct.lattice
def fan(n={tasks}):
    return total([work(i) for i in range(n)])
"""


def start_latency(scratch: Path) -> float:
    """sbatch until the job runs its first line (a file it creates appears)."""
    mark = scratch / f"started-{time.monotonic_ns()}"
    start = time.perf_counter()
    subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", f"touch {mark}"],
                   check=True, capture_output=True, cwd=str(scratch))
    while not mark.exists():
        time.sleep(0.01)
    return time.perf_counter() - start


def start_login(work: Path) -> Dict[str, str]:
    """A private sshd on loopback whose user reaches the cluster (``SLURM_CONF`` from a file
    its executor's ``bashrc_path`` sources); the executor's SSH arguments, as source text."""
    sshd, _ = start_sshd(work)
    env_file = Path(f"/home/covtest/.cov-bench-slurm-env-{work.name}")
    env_file.write_text(f"export SLURM_CONF={os.environ['SLURM_CONF']}\n")
    workdir = Path(f"/home/covtest/{work.name}")
    workdir.mkdir()
    subprocess.run(["chown", "covtest:", str(env_file), str(workdir)], check=True)
    return {"sshd": str(sshd), "env_file": str(env_file), "workdir": str(workdir),
            "args": f"address='covtest', ssh_config={str(sshd / 'ssh_config')!r}, "
                    f"bashrc_path='~/{env_file.name}', remote_workdir={str(workdir)!r}"}


def stop_login(login: Dict[str, str]) -> None:
    stop_sshd(Path(login["sshd"]))
    Path(login["env_file"]).unlink(missing_ok=True)
    shutil.rmtree(login["workdir"], ignore_errors=True)


def trial(tasks: int, seconds: float, executor: str) -> float:
    base = Path(tempfile.mkdtemp(prefix="cov-bench-pilot-"))
    base.chmod(0o755)
    env = {**os.environ, "COV_HOME": str(base / "runs"), "COV_CONFIG": str(base / "config.yaml"),
           "PYTHONPATH": str(REPO)}
    (base / "config.yaml").write_text("runner:\n  idle_timeout: 2\n")
    script = base / "fan.py"
    script.write_text(WORKFLOW.format(executor=executor, seconds=seconds, tasks=tasks))
    cov = [sys.executable, "-m", "covalent_cli.cli"]
    start = time.perf_counter()
    run_id = subprocess.run(cov + ["dispatch", str(script), "-q"], env=env, capture_output=True,
                            text=True, check=True).stdout.strip().splitlines()[-1]
    waited = subprocess.run(cov + ["wait", run_id, "-q", "--timeout", "3600"], env=env)
    wall = time.perf_counter() - start
    result = subprocess.run(cov + ["result", run_id], env=env, capture_output=True, text=True)
    subprocess.run(cov + ["runner", "stop"], env=env, capture_output=True)
    if waited.returncode != 0 or result.stdout.strip() != str(sum(range(tasks))):
        raise SystemExit(f"run {run_id} did not complete right (see {base}): {result.stdout}")
    shutil.rmtree(base, ignore_errors=True)
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--ms", type=float, default=10.0, help="each task's sleep")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--array-tasks", type=int, default=0, help="0: --tasks")
    parser.add_argument("--array-trials", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="per block; 0: the node's CPUs")
    parser.add_argument("--blocks", type=int, default=1, help="max_blocks")
    parser.add_argument("--existing", action="store_true",
                        help="use the cluster $SLURM_CONF names instead of starting one")
    parser.add_argument("--no-ssh", action="store_true", help="leave out pilot-ssh")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the cluster on the way out
    cluster = Path(tempfile.mkdtemp(prefix="cov-bench-cluster-"))
    cluster.chmod(0o755)
    seconds = args.ms / 1000
    array_tasks = args.array_tasks or args.tasks
    login: Dict[str, str] = {}
    try:
        if not args.existing:
            os.environ.update(start_cluster(cluster))
        if not args.no_ssh:
            login = start_login(cluster)
        cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True,
                              text=True).stdout.split()[0]
        workers = args.workers or int(cpus)
        print(f"cluster: {cpus} CPUs; {args.tasks} tasks of {args.ms:g} ms; local pool "
              f"{os.cpu_count()} workers; pilot {args.blocks} block(s) x {workers} workers; "
              f"{args.trials} trials (array: {args.array_trials} of {array_tasks} tasks)",
              flush=True)
        start_latency(cluster)  # the first job after a start is slow; not measured
        latency = statistics.median(start_latency(cluster) for _ in range(5))
        rows: Dict[str, List[float]] = {"local": [], "pilot": []}
        settings = f"{{'max_blocks': {args.blocks}, 'workers': {workers}, 'idle_timeout': 5}}"
        pilot = f"ct.executor.SlurmExecutor(use_srun=False, pilot={settings})"
        pilot_ssh = f"ct.executor.SlurmExecutor({login.get('args')}, use_srun=False, " \
                    f"pilot={settings})"
        if login:
            rows["pilot-ssh"] = []
        for _ in range(args.trials):  # interleaved, so that load drifts hit all alike
            rows["local"].append(trial(args.tasks, seconds, '"local"'))
            rows["pilot"].append(trial(args.tasks, seconds, pilot))
            if login:
                rows["pilot-ssh"].append(trial(args.tasks, seconds, pilot_ssh))
        arrays = [trial(array_tasks, seconds, "ct.executor.SlurmExecutor(use_srun=False)")
                  for _ in range(args.array_trials)]
    finally:
        if login:
            stop_login(login)
        if not args.existing:
            stop_cluster(cluster)
        shutil.rmtree(cluster, ignore_errors=True)
    local, piloted, array = (statistics.median(rows["local"]), statistics.median(rows["pilot"]),
                             statistics.median(arrays))
    target = 3 * local + latency
    print(f"start latency (sbatch -> running) median {latency:.2f} s")
    for name, values in rows.items():
        print(f"{name:<9} wall median {statistics.median(values):.2f} s "
              f"(min {min(values):.2f}, max {max(values):.2f}); "
              f"{1000 * statistics.median(values) / args.tasks:.1f} ms/task")
    print(f"array     wall median {array:.2f} s for {array_tasks} tasks; "
          f"{1000 * array / array_tasks:.1f} ms/task")
    print(f"pilot / local pool: {piloted / local:.2f}x; pilot / (3 x local + latency = "
          f"{target:.2f} s): {piloted / target:.2f} ({'met' if piloted <= target else 'MISSED'})")
    print(f"array / pilot per task: {(array / array_tasks) / (piloted / args.tasks):.1f}x")
    if login:
        over_ssh = statistics.median(rows["pilot-ssh"])
        print(f"pilot-ssh / pilot (shared filesystem): {over_ssh / piloted:.2f}x; "
              f"pilot-ssh / local pool: {over_ssh / local:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
