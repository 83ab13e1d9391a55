"""Load: 20 runs dispatched at once by 20 processes (5,000 tasks), nothing lost, the runner's
memory bounded. (The 10,000-task ``cov status`` timing is a figure of ``bench/soak.py``.)"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict

from tests.fault.harness import FAN_WORKFLOW, Home, read_log

RUNS, TASKS_PER_RUN = 20, 250
RSS_BOUND_MB = 400  # the runner's peak resident memory must stay below this


def _peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def dispatch_many(root: Path, runs: int = RUNS, per_run: int = TASKS_PER_RUN) -> Dict:
    """``runs`` ``cov dispatch`` processes at once on one home, each starting a runner if none
    serves it; waits for every run; returns what was seen (also used by bench/soak.py)."""
    from covalent_cli.result import wait_for_run
    from runner.liveness import read_runners
    from runner.rundir import RunDir

    home = Home(root, autostart=True)
    script = root / "fan.py"
    script.write_text(FAN_WORKFLOW)
    logs = [root / f"side-effects-{i}.log" for i in range(runs)]
    peaks: Dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for info in read_runners(home.path):
                if info["alive"]:
                    pid = int(info["pid"])
                    peaks[pid] = max(peaks.get(pid, 0.0), _peak_rss_mb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        procs = [home.start_dispatch(str(script), "-a", f"log={log}", "-a", f"n={per_run}")
                 for log in logs]
        ids = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            ids.append(out.strip())
        dispatched = time.monotonic() - started
        runs = [RunDir(home.path / run_id) for run_id in ids]
        for run in runs:
            wait_for_run(run, timeout=300)
        seconds = time.monotonic() - started
    finally:
        stop.set()
        sampler.join()
        home.stop_all()
    runners: Counter = Counter()
    for run in runs:
        for line in run.events_path.read_text().splitlines():
            event = json.loads(line)
            if event.get("ev") == "claim":
                runners[event["runner"]] += 1
    statuses = [run.state().status for run in runs]
    results = [run.load_output(run.manifest.output_node) if status == "COMPLETED" else None
               for run, status in zip(runs, statuses)]
    return {"ids": ids, "statuses": statuses, "results": results,
            "lines": [read_log(log) for log in logs], "runners": runners,
            "peak_rss_mb": max(peaks.values(), default=0.0), "dispatch_s": dispatched,
            "seconds": seconds}


def test_twenty_dispatchers_5000_tasks_nothing_lost_memory_bounded(tmp_path):
    seen = dispatch_many(tmp_path)
    print(f"{RUNS} runs x {TASKS_PER_RUN} tasks: dispatched in {seen['dispatch_s']:.1f} s, "
          f"all done in {seen['seconds']:.1f} s by {len(seen['runners'])} runner(s); "
          f"runner peak RSS {seen['peak_rss_mb']:.0f} MB")
    assert len(set(seen["ids"])) == RUNS
    assert seen["statuses"] == ["COMPLETED"] * RUNS
    assert seen["results"] == [sum(range(TASKS_PER_RUN))] * RUNS
    for lines in seen["lines"]:  # every task ran, once
        assert sorted(n for n, _ in lines) == sorted(set(n for n, _ in lines))
        assert len(lines) == TASKS_PER_RUN
    assert 0 < seen["peak_rss_mb"] < RSS_BOUND_MB
