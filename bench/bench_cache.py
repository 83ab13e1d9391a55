"""The result cache: a 1,000-task run re-dispatched unchanged, against its first time.

    python bench/bench_cache.py [--rounds 3] [--tasks 1000]

In a fresh home on the local pool, per round: the cache is cleared, the run dispatched (every
task runs and enters the cache), then the same run dispatched again (every task is a cache
hit: nothing runs). Two graphs: ``fan`` (``--tasks`` independent tasks and a total, the hits
all ready at once) and ``layers`` (10 wide, ``--tasks``/10 deep, each task reading the whole
layer above: a hit makes the next layer ready, one runner step per layer). Prints the medians
(wall time from dispatch to result) and the ratio second/first; the target is <= 10 %.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


WORK_S = 0.0  # CPU seconds each task burns (--work-ms; pickled with the tasks by value)


def _work() -> None:
    end = time.perf_counter() + WORK_S
    while time.perf_counter() < end:
        pass


def inc(x: int) -> int:
    _work()
    return x + 1


def layer(xs: List[int], j: int, depth: int) -> int:
    _work()
    return sum(xs) % 1000 + j  # ``depth`` makes every task's inputs its own (a cycling value
    # would otherwise give the first run hits of its own, in later layers)


def total(xs: List[int]) -> int:
    return sum(xs)


def _lattices(n: int) -> Dict[str, Any]:
    import covalent_cli as ct

    e_inc, e_layer, e_total = (ct.electron(cache=True)(f) for f in (inc, layer, total))

    @ct.lattice
    def fan() -> Any:
        return e_total([e_inc(i) for i in range(n)])

    @ct.lattice
    def layers() -> Any:
        prev = [e_inc(j) for j in range(10)]
        for depth in range(1, n // 10):
            prev = [e_layer(prev, j, depth) for j in range(10)]
        return e_total(prev)

    return {"fan": fan, "layers": layers}


def _timed_run(lattice: Any) -> float:
    import covalent_cli as ct

    start = time.perf_counter()
    result = ct.dispatch_sync(lattice)()
    took = time.perf_counter() - start
    if result.status != "COMPLETED":
        raise SystemExit(f"the benchmark run ended {result.status}: {result.error}")
    return took


def _cached_nodes(home: Path, dispatch_id: str) -> int:
    events = (home / dispatch_id / "events.jsonl").read_text().splitlines()
    return sum(1 for line in events if '"cached_from"' in line)


def measure(name: str, lattice: Any, home: Path, rounds: int,
            clear: Callable[[], None]) -> Dict[str, Any]:

    firsts: List[float] = []
    seconds: List[float] = []
    hits = 0
    for _ in range(rounds):
        clear()
        firsts.append(_timed_run(lattice))
        seconds.append(_timed_run(lattice))
        latest = max((p for p in home.iterdir() if not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime)
        hits = _cached_nodes(home, latest.name)
    first, second = statistics.median(firsts), statistics.median(seconds)
    return {"graph": name, "first_s": round(first, 2), "again_s": round(second, 2),
            "ratio": round(second / first, 3), "cache_hits_in_last_rerun": hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--work-ms", type=float, default=0.0,
                        help="CPU milliseconds each task burns (0: trivial tasks, the runner's "
                             "own cost alone)")
    args = parser.parse_args()
    global WORK_S
    WORK_S = args.work_ms / 1000
    work = Path(tempfile.mkdtemp(prefix="cov-bench-cache-"))
    home = work / "home"
    (work / "config.yaml").write_text("runner:\n  idle_timeout: 10\n")
    os.environ.update(COV_HOME=str(home), COV_CONFIG=str(work / "config.yaml"))
    from runner.cache import ResultCache
    from runner.daemon import stop_runners

    rows = []
    try:
        for name, lattice in _lattices(args.tasks).items():
            rows.append(measure(name, lattice, home, args.rounds,
                                lambda: ResultCache(home).clear()))
    finally:
        stop_runners(home)
        shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        print(f"{row['graph']:<7} {args.tasks} tasks of {args.work_ms:g} ms: first {row['first_s']:.2f} s, "
              f"re-dispatched unchanged {row['again_s']:.2f} s -> {row['ratio'] * 100:.1f} % "
              f"(target <= 10 %), {row['cache_hits_in_last_rerun']} cache hits "
              f"(medians of {args.rounds})")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
