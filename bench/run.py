"""cov's benchmarks, each figure next to a bare ProcessPoolExecutor(2) measured in the same run.

    python bench/run.py            # W1-W4 (n=5/5/5/3), 10k-node dispatch, runner RSS, idle CPU
    python bench/run.py --quick    # n=3, no W4

Every trial is a cold process (and, for cov, a fresh runs home, so a cold runner too), timed from
outside, as in shared/reference/peer-benchmarks.md. Medians are reported. Per-task overhead =
(cov median - pool median) / tasks. The peers a user would pick instead (dask.delayed and parsl,
threads: the fastest of each in peer-benchmarks.md; bench/peer_*.py) run in the same rounds
when they are installed (`pip install -e .[bench]`); the trials of one workload are interleaved
(pool, cov, peers, pool, cov, ...) so that a load on the machine falls on all of them alike.

The trials run without PYTHONDONTWRITEBYTECODE: with it, every cold cov process compiles its
~60 modules from source (0.1-0.4 s) where an installed cov, like the peers in site-packages,
loads their .pyc files.
"""
from __future__ import annotations

import argparse
import importlib.util
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from bench.steady import steady_ms  # noqa: E402

TASKS = {"W1": 1001, "W2": 200, "W3": 1001, "W4": 41}
# peer name -> (the module it needs, its script's arguments after the workload)
# The environment of every trial: as a user's, who has bytecode caches (see the docstring).
BASE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
PEERS = {"dask": ("dask", [str(HERE / "peer_dask.py"), "threads"]),
         "parsl": ("parsl", [str(HERE / "peer_parsl.py"), "threads"])}


def installed_peers() -> list:
    return [name for name, (module, _) in PEERS.items() if importlib.util.find_spec(module)]


def peer_trial(workload: str, peer: str) -> dict:
    """One cold run of a peer's script (it exits 0 when it printed the expected result)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, PEERS[peer][1][0], workload, *PEERS[peer][1][1:]],
                          capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir(),
                          env=BASE_ENV)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{workload} {peer} failed:\n{proc.stdout}\n{proc.stderr}")
    return {"wall": wall, "client_rss_mb": 0.0}


def trial(workload: str, mode: str) -> dict:
    home = Path(tempfile.mkdtemp(prefix="cov-bench-"))
    env = {**BASE_ENV, "COV_HOME": str(home / "runs"), "COV_CONFIG": str(home / "config.yaml"),
           "PYTHONPATH": str(ROOT)}
    (home / "config.yaml").write_text("runner:\n  idle_timeout: 2\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / "workloads.py"), workload, mode],
                          capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise SystemExit(f"{workload} {mode} failed:\n{proc.stdout}\n{proc.stderr}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report.update(wall=wall, client_rss_mb=max(peak, before) / 1024)
    if mode == "cov":
        subprocess.run([sys.executable, "-m", "covalent_cli.cli", "runner", "stop"], env=env,
                       capture_output=True, timeout=60)
        report["steady_ms"] = steady_ms(workload, home / "runs")
    shutil.rmtree(home, ignore_errors=True)
    return report


def measure(workload: str, n: int, peers: tuple = ()) -> dict:
    """Medians of ``n`` rounds, each round one trial of the pool, cov and every peer."""
    modes = ["pool", "cov", *peers]
    by_mode: dict = {mode: [] for mode in modes}
    for _ in range(n):
        for mode in modes:
            by_mode[mode].append(trial(workload, mode) if mode in ("pool", "cov")
                                 else peer_trial(workload, mode))
    rows = {}
    for mode in modes:
        results = by_mode[mode]
        walls = [r["wall"] for r in results]
        rows[mode] = {"median": statistics.median(walls), "min": min(walls), "max": max(walls),
                      "rss": max(r.get("runner_rss_mb", 0) or r["client_rss_mb"] for r in results),
                      "client_rss": max(r["client_rss_mb"] for r in results)}
        steady = [r["steady_ms"] for r in results if r.get("steady_ms") is not None]
        rows[mode]["steady_ms"] = statistics.median(steady) if steady else None
    return rows


def cold_hello(n: int) -> dict:
    """``cov dispatch workflows/hello.py --wait`` in a fresh home with no runner, n times."""
    times = []
    for _ in range(n):
        home = Path(tempfile.mkdtemp(prefix="cov-bench-"))
        env = {**BASE_ENV, "COV_HOME": str(home / "runs"), "COV_CONFIG": str(home / "config.yaml"),
               "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "covalent_cli.cli", "dispatch",
                        str(ROOT / "workflows" / "hello.py"), "--wait"], env=env, cwd=str(ROOT),
                       capture_output=True, check=True, timeout=120)
        times.append(time.perf_counter() - start)
        subprocess.run([sys.executable, "-m", "covalent_cli.cli", "runner", "stop"], env=env,
                       capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def dispatch_10k(n: int, n_nodes: int = 10_000, root: Path = ROOT) -> dict:
    """Dispatch (graph + pickles + run dir, no runner) of n_nodes nodes, n times."""
    code = (
        "import time, covalent_cli as ct\n"
        "def inc(x):\n    return x + 1\n"
        "e = ct.electron(inc)\n"
        "@ct.lattice\n"
        f"def big():\n    return [e(i) for i in range({n_nodes // 2})]\n"
        "t = time.perf_counter(); ct.dispatch(big)(); print(time.perf_counter() - t)\n")
    times = []
    for _ in range(n):
        home = Path(tempfile.mkdtemp(prefix="cov-bench-"))
        env = {**BASE_ENV, "COV_HOME": str(home), "COV_NO_RUNNER": "1", "PYTHONPATH": str(root)}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True, cwd=str(root)).stdout
        times.append(float(out.strip()))
        shutil.rmtree(home, ignore_errors=True)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def run_10k(n_nodes: int = 10_000, root: Path = ROOT) -> dict:
    """An n_nodes-node run (a fan-out and a reduce) end to end: wall, runner peak RSS, and
    `cov status --json` time."""
    home = Path(tempfile.mkdtemp(prefix="cov-bench-"))
    env = {**BASE_ENV, "COV_HOME": str(home / "runs"), "COV_CONFIG": str(home / "config.yaml"),
           "PYTHONPATH": str(root)}
    # long enough that the runner is still there to be asked for its peak RSS (it is stopped below)
    (home / "config.yaml").write_text("runner:\n  idle_timeout: 60\n")
    code = (
        "import json, time, covalent_cli as ct\n"
        "from bench.workloads import runner_peak_rss_mb\n"
        "from runner.config import runs_home\n"
        "def inc(x):\n    return x + 1\n"
        "def total(xs):\n    return sum(xs)\n"
        "e, t_ = ct.electron(inc), ct.electron(total)\n"
        f"@ct.lattice\ndef big():\n    return t_([e(i) for i in range({n_nodes // 2 - 2})])\n"
        "t = time.perf_counter(); r = ct.dispatch_sync(big)(); w = time.perf_counter() - t\n"
        "print(json.dumps({'wall': w, 'ok': r.status == 'COMPLETED', "
        "'rss': runner_peak_rss_mb(runs_home()), 'id': r.dispatch_id}))\n")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    env=env, check=True, cwd=str(root),
                                    timeout=3600).stdout.strip().splitlines()[-1])
    status_times, status_cpu = [], []
    for _ in range(3):
        start, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "covalent_cli.cli", "status", out["id"], "--json"],
                       env=env, capture_output=True, check=True, cwd=str(root))
        status_times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # its CPU: what a load cannot inflate
        status_cpu.append(after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime)
    # the runner's peak again, now that it has done what it does after the run's end (a
    # snapshot of the run for its readers): the larger of the two
    code = ("import json, sys\nfrom bench.workloads import runner_peak_rss_mb\n"
            "print(runner_peak_rss_mb(sys.argv[1]))\n")
    after_end = subprocess.run([sys.executable, "-c", code, str(home / "runs")], env=env,
                               capture_output=True, text=True, cwd=str(ROOT)).stdout.strip()
    out["rss"] = max(out["rss"], float(after_end or 0))
    subprocess.run([sys.executable, "-m", "covalent_cli.cli", "runner", "stop"], env=env,
                   capture_output=True, cwd=str(root))
    shutil.rmtree(home, ignore_errors=True)
    out["status_median"] = statistics.median(status_times)
    out["status_cpu"] = statistics.median(status_cpu)
    return out


def idle_cpu(seconds: float = 5.0) -> float:
    """CPU % of a runner with nothing to do (its heartbeat and rescans only)."""
    home = Path(tempfile.mkdtemp(prefix="cov-bench-"))
    env = {**BASE_ENV, "COV_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "--home", str(home),
                             "--idle-timeout", str(seconds + 30)], env=env,
                            stderr=subprocess.DEVNULL)
    time.sleep(1.5)  # past start-up

    def ticks() -> int:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    first = ticks()
    time.sleep(seconds)
    used = (ticks() - first) / os.sysconf("SC_CLK_TCK")
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(home, ignore_errors=True)
    return 100.0 * used / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 3 if args.quick else 5
    workloads = ["W1", "W2", "W3"] + ([] if args.quick else ["W4"])
    print(f"cov benchmarks on {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          "medians of cold processes (min-max)\n")
    peers = tuple(installed_peers())
    print("peers: " + (", ".join(f"{p} (threads)" for p in peers) if peers else
                       "none installed (pip install -e .[bench] adds dask and parsl)"))
    print(f"{'workload':9} {'pool s':>16} {'cov s':>16} {'x pool':>7} {'ms/task':>8} "
          f"{'runner MiB':>10}" + "".join(f" {p + ' s':>16}" for p in peers) +
          (f" {'cov/best peer':>14}" if peers else ""))
    for w in workloads:
        rows = measure(w, 3 if w == "W4" else n, peers)
        pool, cov = rows["pool"], rows["cov"]
        overhead = (cov["median"] - pool["median"]) / TASKS[w] * 1000
        line = (f"{w:9} {pool['median']:6.2f} ({pool['min']:.2f}-{pool['max']:.2f}) "
                f"{cov['median']:6.2f} ({cov['min']:.2f}-{cov['max']:.2f}) "
                f"{cov['median'] / pool['median']:7.2f} {overhead:8.2f} {cov['rss']:10.1f}")
        for p in peers:
            line += f" {rows[p]['median']:6.2f} ({rows[p]['min']:.2f}-{rows[p]['max']:.2f})"
        if peers:
            best = min(rows[p]["median"] for p in peers)
            line += f" {cov['median'] / best:14.2f}"
        if cov.get("steady_ms") is not None:
            line += f"   steady: {cov['steady_ms']:.2f} ms per " + ("hop" if w == "W2" else "layer")
        print(line, flush=True)
    hello = cold_hello(n + 2)
    print(f"\ncold `cov dispatch workflows/hello.py --wait` (fresh home, no runner): median "
          f"{hello['median']:.2f} s ({hello['min']:.2f}-{hello['max']:.2f}, n={n + 2})")
    d = dispatch_10k(3)
    print(f"\n10,000-node dispatch (graph + pickles + run dir): median {d['median']:.2f} s "
          f"({d['min']:.2f}-{d['max']:.2f})")
    big = run_10k()
    print(f"10,000-node run: {big['wall']:.2f} s end to end, runner peak RSS {big['rss']:.0f} MiB, "
          f"`cov status --json` {big['status_median']:.2f} s (median of 3)")
    print(f"idle runner CPU: {idle_cpu():.2f} %")


if __name__ == "__main__":
    main()
