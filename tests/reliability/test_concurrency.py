"""Several runners on one home: every task runs once (the side-effect log proves it), readers
never see a half-written file."""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import List

from tests.fault.harness import FAN_WORKFLOW, Home, read_log, wait_until

STAGGER_S = 0.3  # "at once", as a shell loop or three users do it: within a second


def _dispatch_fan(home: Home, tmp_path: Path, n: int, delay: float = 0.01) -> tuple:
    """``n`` tasks of ``delay`` seconds: long enough that runners started apart all take part."""
    script = tmp_path / "fan.py"
    script.write_text(FAN_WORKFLOW)
    log = tmp_path / "side-effects.log"
    proc = home.cov("dispatch", "-q", str(script), "-a", f"log={log}", "-a", f"n={n}",
                    "-a", f"delay={delay}")
    assert proc.returncode == 0, proc.stderr
    return home.path / proc.stdout.strip(), log


def _claims(run_dir: Path) -> Counter:
    events = [json.loads(l) for l in (run_dir / "events.jsonl").read_text().splitlines()]
    return Counter(e["runner"] for e in events if e.get("ev") == "claim")


def _check_once_each(home: Home, run_dir: Path, log: Path, n: int) -> Counter:
    assert home.cov("wait", run_dir.name, "--timeout", "120", "-q").returncode == 0
    result = home.cov("result", run_dir.name, "--json")
    assert json.loads(result.stdout)["result"] == sum(range(n))
    lines = read_log(log)
    runs = Counter(node for node, _ in lines)
    twice = {node: count for node, count in runs.items() if count > 1}
    assert not twice, f"{len(twice)} tasks ran more than once: {dict(list(twice.items())[:10])}"
    assert len(runs) == n and all(attempt == 1 for _, attempt in lines)
    return _claims(run_dir)


def test_three_runners_1000_tasks_zero_double_executions(home, tmp_path):
    run_dir, log = _dispatch_fan(home, tmp_path, 1000)
    for _ in range(3):
        home.start_runner()
        time.sleep(STAGGER_S)
    claims = _check_once_each(home, run_dir, log, 1000)
    assert len(claims) == 3, claims  # all three took part


def test_two_runners_through_the_polling_observer(home, tmp_path):
    """The path a network filesystem takes: no inotify, only polling."""
    run_dir, log = _dispatch_fan(home, tmp_path, 500)
    for _ in range(2):
        home.start_runner("--poll")
        time.sleep(STAGGER_S)
    claims = _check_once_each(home, run_dir, log, 500)
    assert len(claims) == 2, claims
    assert home.runner_log_text().count("(polling (--poll))") == 2


def test_a_runner_started_after_the_registry_read_is_not_taken_for_dead(home):
    """The bug behind double executions with staggered runners: a runner's view of who is
    alive was cached for a second, so a runner born inside that second looked dead and its
    fresh claims were taken over and run again."""
    from runner.liveness import RunnerRegistry, read_runners

    home.path.mkdir(parents=True)
    registry = RunnerRegistry(home.path, "me")
    assert registry.alive("vm:1:1") is False  # fills the cache: nobody is alive
    home.start_runner(idle_timeout=5)
    assert wait_until(lambda: any(r["alive"] and "starting" not in r["id"]
                                  for r in read_runners(home.path)), 30)
    newborn = next(r["id"] for r in read_runners(home.path) if r["alive"])
    assert registry.alive(newborn) is True


def ui_get(app, path: str) -> tuple:
    """One GET through the web UI's WSGI app, as its server would pass it: (status, JSON)."""
    from wsgiref.util import setup_testing_defaults

    env: dict = {}
    setup_testing_defaults(env)
    env.update(PATH_INFO=path, HTTP_HOST="127.0.0.1:8765")
    seen: dict = {}
    body = b"".join(app(env, lambda status, headers, exc=None: seen.update(status=status)))
    return int(seen["status"].split()[0]), json.loads(body)


def test_status_readers_never_see_a_half_written_file(home, tmp_path):
    """``cov status --json``, the reads behind it and the web UI's JSON, in a loop while two
    runners write: every read parses, progress never goes back, every result file that has
    its name is whole."""
    from runner.query import run_summary, task_rows
    from runner.rundir import RunDir
    from runner.outcome import read_outcome_header

    # 2500 tasks of 20 ms on two runners: a run of ~25 s, long enough for several reads of
    # each kind even on a loaded machine (a read of this run takes ~50 ms in process, more
    # through a CLI process, and several times that with three test workers on two cores)
    run_dir, log = _dispatch_fan(home, tmp_path, 2500, delay=0.02)
    for _ in range(2):
        home.start_runner()
    errors: List[str] = []
    reads = {"in_process": 0, "cli": 0, "ui": 0, "results": 0}
    done = threading.Event()

    def read_in_process() -> None:
        last = 0
        while not done.is_set():
            try:
                run = RunDir(run_dir)
                summary = run_summary(run)
                rows = task_rows(run)
                if summary["done"] < last:
                    errors.append(f"progress went back: {summary['done']} < {last}")
                last = summary["done"]
                assert len(rows) == summary["total"]
                # every recorded outcome, packed ones too (format 2.0), reads whole
                done_nodes = [n for n, t in run.state().tasks.items() if t.status == "COMPLETED"]
                whole = run.read_outputs(done_nodes)
                if len(whole) != len(done_nodes):
                    missing = sorted(set(done_nodes) - set(whole))[:5]
                    errors.append(f"recorded outcomes of nodes {missing} not read whole")
                reads["results"] += len(done_nodes)
                for name in os.listdir(run_dir / "results"):
                    if ".tmp-" not in name and name.endswith(".pkl"):
                        reads["results"] += 1
                        if read_outcome_header(str(run_dir / "results" / name)) is None:
                            errors.append(f"results/{name} seen half-written")
                reads["in_process"] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__name__}: {exc}")

    def read_with_cli() -> None:
        while not done.is_set():
            proc = home.cov("status", run_dir.name, "--json")
            try:
                assert proc.returncode == 0, proc.stderr
                status = json.loads(proc.stdout)
                assert len(status["tasks"]) == status["total"] > 2500
                reads["cli"] += 1
            except (AssertionError, ValueError) as exc:
                errors.append(f"cov status: {exc}")

    def read_with_ui() -> None:
        from webui.app import create_app

        app = create_app(home.path)
        last = 0
        while not done.is_set():
            try:
                code, state = ui_get(app, f"/api/runs/{run_dir.name}/state")
                assert code == 200, state
                code, detail = ui_get(app, f"/api/runs/{run_dir.name}")
                assert code == 200, detail
                done_now = state["done"]
                assert detail["dispatch_id"] == run_dir.name
                if done_now < last:
                    errors.append(f"UI progress went back: {done_now} < {last}")
                last = done_now
                reads["ui"] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(f"UI: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=read_in_process), threading.Thread(target=read_with_cli),
               threading.Thread(target=read_with_ui)]
    for t in threads:
        t.start()
    try:
        assert home.cov("wait", run_dir.name, "--timeout", "120", "-q").returncode == 0
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    print(f"reads while running: {reads}")
    assert not errors, errors[:10]
    assert reads["in_process"] >= 5 and reads["cli"] >= 1 and reads["ui"] >= 1
    assert reads["results"] > 0
    assert len(read_log(log)) == 2500
