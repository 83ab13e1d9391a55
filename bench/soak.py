"""The long soak: crash trials (kill -9 of runners at random moments), concurrent runners, load,
and the 10,000-task ``cov status`` timing — the figures of docs/reliability.md.

    python bench/soak.py                      # 50 crash trials (25 one-runner, 25 two-runner)
    python bench/soak.py --trials 200         # the long soak
    python bench/soak.py --trials 0 --concurrency 10 --load --status-10k   # the other figures
    python bench/soak.py --all                # everything, default sizes

Each crash trial is a fresh home: a 200-task workflow whose tasks log "<node> <attempt>" to a
side-effect log; a runner is killed with SIGKILL three times (during the dispatch, while tasks
run, right as results land) and restarted; then the run must be COMPLETED, every value right,
no attempt run twice, no finished task run again, every file parsable (tests/fault/harness.py).
Prints one line per trial and totals: trials survived, double executions. Exit 1 if any trial
failed; failed trials' directories are kept for inspection.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fault.harness import (FAN_WORKFLOW, Home, crash_trial, read_log,  # noqa: E402
                                 summarize)


def crash_trials(count: int, kills: int, seed: int, runners: str, keep: bool) -> dict:
    reports = []
    modes = {"1": [1], "2": [2], "both": [1, 2]}[runners]
    for i in range(count):
        root = Path(tempfile.mkdtemp(prefix="cov-soak-"))
        count_runners = modes[i % len(modes)]
        report = crash_trial(root, seed=seed + i, kills=kills, runners=count_runners)
        moments = ",".join(k.moment for k in report.kills)
        print(f"trial {i + 1:4d}/{count}  seed {report.seed}  runners {count_runners}  "
              f"kills {moments:24s}  reruns {report.reruns:2d}  {report.seconds:5.1f}s  "
              f"{'ok' if report.survived else 'FAILED: ' + '; '.join(report.problems[:3])}",
              flush=True)
        reports.append(report)
        if report.survived and not keep:
            shutil.rmtree(root, ignore_errors=True)
        elif not report.survived:
            print(f"           kept {root}", flush=True)
    return summarize(reports)


def concurrency(rounds: int, tasks: int) -> dict:
    """Three runners on one home started 0.3 s apart, ``tasks`` tasks: double executions."""
    doubles = lost = 0
    for _ in range(rounds):
        root = Path(tempfile.mkdtemp(prefix="cov-soak-conc-"))
        home = Home(root)
        try:
            script = root / "fan.py"
            script.write_text(FAN_WORKFLOW)
            log = root / "side-effects.log"
            proc = home.cov("dispatch", "-q", str(script), "-a", f"log={log}",
                            "-a", f"n={tasks}", "-a", "delay=0.01")
            run_id = proc.stdout.strip()
            for _ in range(3):
                home.start_runner()
                time.sleep(0.3)
            home.cov("wait", run_id, "--timeout", "600", "-q", timeout=660)
            nodes = [n for n, _ in read_log(log)]
            doubles += len(nodes) - len(set(nodes))
            lost += tasks - len(set(nodes))
        finally:
            home.stop_all()
            shutil.rmtree(root, ignore_errors=True)
    return {"rounds": rounds, "tasks_per_round": tasks, "double_executions": doubles,
            "lost": lost}


def load() -> dict:
    """20 runs dispatched at once by 20 processes, 250 tasks each."""
    from tests.reliability.test_load import dispatch_many

    root = Path(tempfile.mkdtemp(prefix="cov-soak-load-"))
    try:
        seen = dispatch_many(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = [line for run in seen["lines"] for line in run]
    return {"runs": len(seen["ids"]), "tasks": len(lines),
            "completed_runs": sum(s == "COMPLETED" for s in seen["statuses"]),
            "double_executions": sum(len(run) - len({n for n, _ in run})
                                     for run in seen["lines"]),
            "runners": len(seen["runners"]), "runner_peak_rss_mb": round(seen["peak_rss_mb"], 1),
            "dispatch_s": round(seen["dispatch_s"], 1), "total_s": round(seen["seconds"], 1)}


SQUARES = """
import covalent as ct


@ct.electron
def square(i):
    return i * i


@ct.electron
def total(values):
    return sum(values)


@ct.lattice
def squares(n=10000):
    return total([square(i) for i in range(n)])
"""


def status_10k(samples: int = 5) -> dict:
    """``cov status --json`` (a cold process each time) on a run of 10,000 tasks (20,003
    nodes with their parameters): pending, while running, finished. Wall seconds, and CPU
    seconds (user + sys), which a busy machine does not inflate."""
    root = Path(tempfile.mkdtemp(prefix="cov-soak-10k-"))
    home = Home(root, config="runner:\n  idle_timeout: 2\n")
    figures = {}
    try:
        script = root / "squares.py"
        script.write_text(SQUARES)
        started = time.perf_counter()
        proc = home.cov("dispatch", "-q", str(script), timeout=300)
        figures["dispatch_s"] = round(time.perf_counter() - started, 2)
        run_id = proc.stdout.strip()

        def timed(*extra: str) -> tuple:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            out = home.cov("status", run_id, *extra)
            wall = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            assert out.returncode == 0, out.stderr
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            return wall, cpu

        def median(phase: str, *extra: str) -> None:
            walls, cpus = zip(*(timed(*extra) for _ in range(samples)))
            figures[f"{phase}_wall_s"] = round(statistics.median(walls), 3)
            figures[f"{phase}_cpu_s"] = round(statistics.median(cpus), 3)

        median("json_pending", "--json")
        figures.update(_ui_timings(home.path, run_id, "pending"))
        home.start_runner(idle_timeout=2)
        time.sleep(1.0)
        median("json_running", "--json")
        home.cov("wait", run_id, "--timeout", "600", "-q", timeout=660)
        median("json_finished", "--json")
        median("table_finished")
        figures.update(_ui_timings(home.path, run_id, "finished"))
    finally:
        home.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    return figures


def _ui_timings(home: Path, run_id: str, phase: str) -> dict:
    """The web UI's JSON for the run (a new app, so cold caches: what a first visit costs),
    in this process: /api/runs/<id> (the run page) and /api/runs/<id>/state (what it polls)."""
    from tests.reliability.test_concurrency import ui_get
    from webui.app import create_app

    app = create_app(home)
    figures = {}
    for name, path in (("run", f"/api/runs/{run_id}"), ("state", f"/api/runs/{run_id}/state")):
        t = time.perf_counter()
        code, _ = ui_get(app, path)
        assert code == 200, (path, code)
        figures[f"ui_{name}_{phase}_s"] = round(time.perf_counter() - t, 3)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="crash trials (default 50)")
    parser.add_argument("--kills", type=int, default=3, help="runner kills per trial")
    parser.add_argument("--runners", choices=["1", "2", "both"], default="both",
                        help="runners per crash trial (both: alternate)")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", action="store_true", help="keep every trial's directory")
    parser.add_argument("--concurrency", type=int, default=0, metavar="ROUNDS",
                        help="rounds of three runners x 1,000 tasks")
    parser.add_argument("--load", action="store_true", help="20 dispatchers x 250 tasks")
    parser.add_argument("--status-10k", action="store_true", help="cov status on 10,000 tasks")
    parser.add_argument("--all", action="store_true", help="crash trials + 3 concurrency "
                        "rounds + load + status-10k")
    args = parser.parse_args()
    if args.all:
        args.concurrency = args.concurrency or 3
        args.load = args.status_10k = True
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    figures = {}
    failed = False
    if args.trials:
        summary = crash_trials(args.trials, args.kills, args.seed, args.runners, args.keep)
        figures["crash"] = summary
        failed |= summary["survived"] != summary["trials"] or summary["double_executions"] > 0
        print(f"\ntrials survived: {summary['survived']}/{summary['trials']}   "
              f"double executions: {summary['double_executions']}   kills: {summary['kills']} "
              f"(during dispatch {summary['kills_during_dispatch']}, with tasks running "
              f"{summary['kills_while_running']}, with results written but not yet recorded "
              f"{summary['kills_with_unrecorded_results']})", flush=True)
    if args.concurrency:
        figures["concurrency"] = conc = concurrency(args.concurrency, 1000)
        failed |= conc["double_executions"] > 0 or conc["lost"] > 0
        print(f"three runners x 1,000 tasks, {conc['rounds']} rounds: double executions "
              f"{conc['double_executions']}, lost {conc['lost']}", flush=True)
    if args.load:
        figures["load"] = seen = load()
        failed |= seen["completed_runs"] != seen["runs"] or seen["tasks"] != 5000
        print(f"20 dispatchers x 250 tasks: {seen['completed_runs']}/{seen['runs']} runs "
              f"completed, {seen['tasks']} tasks ran, double executions "
              f"{seen['double_executions']}, runner peak RSS {seen['runner_peak_rss_mb']} MB "
              f"({seen['runners']} runner), {seen['total_s']} s", flush=True)
    if args.status_10k:
        figures["status_10k"] = st = status_10k()
        print(f"10,000-task run: cov status --json {st['json_pending_wall_s']} s pending, "
              f"{st['json_running_wall_s']} s running, {st['json_finished_wall_s']} s finished "
              f"(CPU {st['json_pending_cpu_s']} / {st['json_running_cpu_s']} / "
              f"{st['json_finished_cpu_s']} s); table {st['table_finished_wall_s']} s; "
              f"UI /api/runs/<id> {st['ui_run_finished_s']} s, /state "
              f"{st['ui_state_finished_s']} s; dispatch {st['dispatch_s']} s", flush=True)
    print(json.dumps(figures))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
