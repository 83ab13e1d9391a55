"""Files per task (format 2.0's pack files, docs/run-directory.md): the files a run leaves in
its run directory, and W1's time, of this checkout and of another one, interleaved.

    python bench/files.py --against /work/main          # 3 rounds: W1 and a 10,000-task run
    python bench/files.py --rounds 5 --tasks 20000
    python bench/files.py --against /work/main --rounds 9 --w1-only   # W1's time, more rounds
    python bench/files.py --against /work/main --executor ssh --tasks 1000   # the loopback sshd

Each round runs, for every checkout in turn, W1 (bench/workloads.py: 1,000 tasks and a reduce,
from a cold process with a fresh home) and a run of ``--tasks`` trivial tasks that each print
a line (``cov dispatch --wait``); it counts the files and directories under each run directory
(``os.walk``) and prints medians (min-max) and this checkout's ratios to the other's. The
target (issue 14): a 10,000-task run of small results and short logs leaves <= 500 files.

``--executor ssh`` runs the printing tasks on a private sshd on 127.0.0.1 (bench/loopback_sshd.py;
needs root and openssh-server) instead of the local pool, and skips W1. (The Slurm pilot's
count: ``COV_TEST_TASKS=10000 pytest -s tests/reliability/test_files_per_task_remote.py``,
which needs the test suite's single-node Slurm.)
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PRINTING = ROOT / "workflows" / "printing_sweep.py"  # N tasks that each print a line


def _files(path: Path) -> int:
    return sum(len(files) + len(dirs) for _, dirs, files in os.walk(path))


def _trial(root: Path, command: List[str], tmp: Path, config: str = "",
           env_extra: Optional[Dict[str, str]] = None) -> Tuple[float, int]:
    """(wall seconds, files in the one run directory) of ``command`` in a fresh home."""
    home = Path(tempfile.mkdtemp(prefix="cov-files-", dir=tmp))
    env = {**os.environ, "COV_HOME": str(home / "runs"), "COV_CONFIG": str(home / "config.yaml"),
           "PYTHONPATH": str(root), **(env_extra or {})}
    env.pop("COV_NO_RUNNER", None)
    (home / "config.yaml").write_text("runner:\n  idle_timeout: 2\n" + config)
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200,
                          cwd=str(home))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{command} in {root} failed:\n{proc.stdout}\n{proc.stderr}")
    subprocess.run([sys.executable, "-m", "covalent_cli.cli", "runner", "stop"], env=env,
                   capture_output=True, timeout=60)
    runs = [p for p in (home / "runs").iterdir() if not p.name.startswith(".")]
    files = _files(runs[0]) if len(runs) == 1 else -1
    shutil.rmtree(home, ignore_errors=True)
    return wall, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout, measured in the same run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--w1-only", action="store_true", help="W1 only (no large run)")
    parser.add_argument("--executor", choices=("local", "ssh"), default="local",
                        help="where the printing tasks run (ssh: a loopback sshd; no W1)")
    args = parser.parse_args()
    roots = [("this", ROOT)] + ([("against", args.against.resolve())] if args.against else [])
    tmp = Path(tempfile.mkdtemp(prefix="cov-files-bench-"))
    tmp.chmod(0o755)
    script = PRINTING
    config, env_extra, sshd = "", {}, None
    if args.executor == "ssh":
        sys.path.insert(0, str(ROOT))
        from bench.loopback_sshd import start_sshd

        sshd, _ = start_sshd(tmp)
        script = tmp / "ssh_printing.py"
        from tests.infra.executors import printing_sweep_on

        script.write_text(printing_sweep_on('ct.executor.SSHExecutor(hostname="covtest")'))
        config = f"executors:\n  ssh:\n    remote_workdir: {tmp}/ssh-work\n"
        env_extra = {"COV_SSH_CONFIG": str(sshd / "ssh_config")}
        (tmp / "ssh-work").mkdir(mode=0o777)
        (tmp / "ssh-work").chmod(0o777)
    figures: Dict[Tuple[str, str], List[Tuple[float, int]]] = {}
    print(f"files per run on {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.rounds} rounds, interleaved",
          flush=True)
    try:
        for _ in range(args.rounds):
            for name, root in roots:
                w1 = [sys.executable, str(root / "bench" / "workloads.py"), "W1", "cov"]
                many = [sys.executable, "-m", "covalent_cli.cli", "dispatch", "-q", "--wait",
                        str(script), "many", "-a", f"n={args.tasks}"]
                if args.executor == "local":
                    figures.setdefault((name, "W1"), []).append(_trial(root, w1, tmp))
                if not args.w1_only:
                    figures.setdefault((name, "many"), []).append(
                        _trial(root, many, tmp, config, env_extra))
    finally:
        if sshd is not None:
            from bench.loopback_sshd import stop_sshd

            stop_sshd(sshd)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'code':8} {'workload':36} {'wall s, median (min-max)':>26} {'files':>8}")
    medians: Dict[Tuple[str, str], Tuple[float, float]] = {}
    for (name, workload), rows in figures.items():
        walls = [w for w, _ in rows]
        files = statistics.median(f for _, f in rows)
        medians[(name, workload)] = (statistics.median(walls), files)
        label = "W1 (1,000 tasks + reduce)" if workload == "W1" else \
            f"{args.tasks:,} printing tasks + reduce" + \
            (" (SSH)" if args.executor == "ssh" else "")
        print(f"{name:8} {label:36} {statistics.median(walls):10.2f} "
              f"({min(walls):.2f}-{max(walls):.2f}) {files:8.0f}")
    if args.against:
        print()
        workloads = ("W1",) if args.w1_only else ("W1", "many") if args.executor == "local" \
            else ("many",)
        for workload in workloads:
            this, other = medians[("this", workload)], medians[("against", workload)]
            print(f"{workload:5} this/against: wall x{this[0] / other[0]:.2f}, "
                  f"files x{this[1] / max(other[1], 1):.3f}")


if __name__ == "__main__":
    main()
