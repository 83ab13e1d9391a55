"""Per-task overhead of the Dask executor, next to bare Dask round trips measured in the same
run on the same cluster.

    python bench/bench_dask.py [--tasks 40] [--fan-out 100] [--rounds 50]

Starts a ``distributed.LocalCluster`` on 127.0.0.1 (2 worker processes, 2 threads each; needs
the ``cov[dask]`` extra) and reports, as medians:

- ``dask submit+result``: ``client.submit(f).result()`` of a trivial function (Dask's floor);
- ``dask: python start``: a ``python -c pass`` run by a Dask task (what each attempt would cost
  if it started an interpreter; cov's zygote forks one instead);
- ``dask task``: one task of a chain run through the runner on ``DaskExecutor``, from its
  claim to its end event (bundle, submit, worker.py in a child process, outcome back);
- ``local task``: the same chain on the local pool, for scale;
- a fan-out of ``--fan-out`` tasks on each, wall time from dispatch to result.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.timing import median_ms, timed  # noqa: E402


def step(x: int) -> int:
    return x + 1


def _python_start() -> int:
    return subprocess.run([sys.executable, "-c", "pass"], check=True).returncode


def _chain_task_times(home: Path, executor: object, n: int) -> List[float]:
    import covalent_cli as ct
    from runner.rundir import RunDir

    task = ct.electron(step, executor=executor)

    @ct.lattice
    def chain(x):
        for _ in range(n):
            x = task(x)
        return x

    result = ct.dispatch_sync(chain)(0)
    assert result.result == n, result.error
    claims: Dict[int, float] = {}
    ends: Dict[int, float] = {}
    run = RunDir(home / result.dispatch_id)
    steps = {node.id for node in run.manifest.nodes if node.name == "step"}
    with open(run.events_path) as f:
        for line in f:
            event = json.loads(line)
            if event.get("ev") == "claim":
                claims.setdefault(event["node"], event["t"])
            elif event.get("ev") == "end":
                ends[event["node"]] = event["t"]
    return [ends[node] - claims[node] for node in steps]


def _fan_out_seconds(executor: object, n: int) -> float:
    import covalent_cli as ct

    task = ct.electron(step, executor=executor)

    @ct.lattice
    def fan(k):
        return [task(i) for i in range(k)]

    start = time.perf_counter()
    result = ct.dispatch_sync(fan)(n)
    assert result.result == [i + 1 for i in range(n)], result.error
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=40, help="tasks in each chain")
    parser.add_argument("--fan-out", type=int, default=100, help="tasks in the fan-out")
    parser.add_argument("--rounds", type=int, default=50, help="round trips per measurement")
    args = parser.parse_args()
    import cloudpickle
    import distributed

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers import no bench
    work = Path(tempfile.mkdtemp(prefix="cov-bench-dask-"))
    try:
        os.environ.update(COV_HOME=str(work / "home"), COV_CONFIG=str(work / "config.yaml"))
        (work / "config.yaml").write_text("runner:\n  idle_timeout: 2\n")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                      host="127.0.0.1", dashboard_address=None) as cluster, \
                distributed.Client(cluster.scheduler_address) as client:
            bare = timed(lambda: client.submit(step, 1, pure=False).result(), args.rounds)
            python = timed(lambda: client.submit(_python_start, pure=False).result(),
                            max(10, args.rounds // 5))
            import covalent_cli as ct
            from runner.daemon import stop_runners

            home = work / "home"
            dask = ct.executor.DaskExecutor(scheduler_address=cluster.scheduler_address)
            dask_tasks = _chain_task_times(home, dask, args.tasks)
            local_tasks = _chain_task_times(home, "local", args.tasks)
            dask_fan = _fan_out_seconds(dask, args.fan_out)
            local_fan = _fan_out_seconds("local", args.fan_out)
            stop_runners(home)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [("dask submit+result", bare), ("dask: python start", python),
            (f"dask task (chain of {args.tasks})", dask_tasks),
            (f"local task (chain of {args.tasks})", local_tasks)]
    width = max(len(name) for name, _ in rows)
    print(f"{'measurement':<{width}}  median ms  (n)")
    for name, samples in rows:
        print(f"{name:<{width}}  {median_ms(samples):>9}  ({len(samples)})")
    print(f"fan-out of {args.fan_out}: dask {dask_fan:.2f} s, local {local_fan:.2f} s "
          f"({dask_fan / local_fan:.1f}x)")
    print(f"dask task: {statistics.median(dask_tasks) / statistics.median(bare):.1f}x a bare "
          f"dask submit+result, {statistics.median(dask_tasks) / statistics.median(python):.2f}x"
          f" a python start on a worker (what the zygote's fork saves)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
