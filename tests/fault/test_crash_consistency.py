"""``kill -9`` of runners at random moments, restarted each time: nothing lost, nothing run twice.

``COV_FAULT_TRIALS=N`` sets the number of randomized trials (CI: a few; ``bench/soak.py`` runs
the long soak with the same harness). ``COV_FAULT_SEED`` fixes the seeds of a failing trial.
"""
from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.fault.conftest import trials
from tests.fault.harness import (LAYER1, LAYER2, WORKFLOW, Home, complete_results, crash_trial,
                                 expected_values, file_problems, kill9_runner, read_log,
                                 summarize, unrecorded, wait_until)

SEED = int(os.environ.get("COV_FAULT_SEED") or random.randrange(1 << 30))


@pytest.mark.parametrize("runners", [1, 2], ids=["one-runner", "two-runners"])
def test_runner_kill9_at_random_moments_loses_nothing_and_runs_nothing_twice(tmp_path, runners):
    """Each trial: 200 tasks, the runner killed 3 times (during the dispatch, while tasks run,
    right as results land) and restarted; with two runners the other one keeps going."""
    count = trials(3 if runners == 1 else 2)
    reports = [crash_trial(tmp_path / f"trial-{i}", seed=SEED + i, runners=runners)
               for i in range(count)]
    summary = summarize(reports)
    print(json.dumps(summary))
    failed = [(r.seed, r.run_id, r.problems[:5]) for r in reports if not r.survived]
    assert not failed, f"COV_FAULT_SEED={SEED}: {failed}"
    assert summary["double_executions"] == 0
    assert summary["kills"] >= count


def _start_crash_run(home: Home, tmp_path: Path, delay: float) -> tuple:
    script = tmp_path / "crash_wf.py"
    script.write_text(WORKFLOW)
    log = tmp_path / "side-effects.log"
    proc = home.cov("dispatch", "-q", str(script), "-a", f"log={log}", "-a", f"delay={delay}")
    assert proc.returncode == 0, proc.stderr
    return home.path / proc.stdout.strip(), log


def _check_completed(home: Home, run_dir: Path, log: Path) -> None:
    assert home.cov("wait", run_dir.name, "--timeout", "60", "-q").returncode == 0
    result = home.cov("result", run_dir.name, "--json")
    assert json.loads(result.stdout)["result"] == expected_values()[2]
    lines = read_log(log)
    assert len(lines) == len(set(lines)), "an attempt ran twice"
    assert len({n for n, _ in lines}) == LAYER1 + LAYER2
    problems, torn = file_problems(run_dir)
    assert not problems


def test_results_written_while_the_runner_was_frozen_are_recorded_not_recomputed(home, tmp_path):
    """The window between a worker's result rename and the runner's ``end`` event, made wide
    on purpose: the runner is stopped (SIGSTOP), its workers finish and write results, then the
    runner is killed. The restarted runner must take those results as they are."""
    run_dir, log = _start_crash_run(home, tmp_path, delay=0.05)
    runner = home.start_runner()
    assert wait_until(lambda: len(complete_results(run_dir)) >= 4, 30)
    os.kill(runner.pid, signal.SIGSTOP)
    # the workers run on: they finish the tasks they hold and write their results
    assert wait_until(lambda: len(unrecorded(run_dir)) >= 4, 30)
    time.sleep(0.3)
    waiting = unrecorded(run_dir)
    lines_at_kill = len(read_log(log))
    assert not kill9_runner(runner)  # SIGKILL is delivered to a stopped process too
    home.start_runner()
    _check_completed(home, run_dir, log)
    again = [n for n, _ in read_log(log)[lines_at_kill:] if n in waiting]
    assert not again, f"finished tasks ran again: {again}"


def test_an_event_line_torn_by_a_crash_does_not_swallow_the_next_event(home, tmp_path):
    """A runner killed inside ``write(2)`` can leave the log's last line unfinished (the kernel
    stops a write to a regular file between pages on SIGKILL; a full disk does the same). The
    next writer must start on a new line, or its first event fuses with the torn one and is
    lost. The tear is appended here by hand: no process can be killed at that byte for sure."""
    run_dir, log = _start_crash_run(home, tmp_path, delay=0.05)
    runner = home.start_runner()
    assert wait_until(lambda: len(complete_results(run_dir)) >= 4, 30)
    os.kill(runner.pid, signal.SIGSTOP)
    assert wait_until(lambda: len(unrecorded(run_dir)) >= 2, 30)
    assert not kill9_runner(runner)
    with open(run_dir / "events.jsonl", "ab") as f:
        f.write(b'{"t": 1795616725.8, "ev": "end", "node": 3, "sta')  # cut mid-event
    home.start_runner()
    _check_completed(home, run_dir, log)
    from runner.rundir import RunDir

    state = RunDir(run_dir).state()
    stuck = {n: t.status for n, t in state.tasks.items() if t.status != "COMPLETED"}
    assert not stuck, f"nodes the event log does not show COMPLETED: {stuck}"
    problems, torn = file_problems(run_dir)
    assert torn == 1 and not problems


def test_a_killed_runners_finished_work_is_not_rerun_by_the_other_runner(home, tmp_path):
    """Two runners race for the same ready tasks; the loser keeps the winner's claims in view.
    The winner is frozen while its workers finish tasks, then killed: the survivor must record
    those results (from their files), not run the tasks again."""
    script = tmp_path / "crash_wf.py"
    script.write_text(WORKFLOW)
    log = tmp_path / "side-effects.log"
    runners = [home.start_runner(idle_timeout=10) for _ in range(2)]
    from runner.liveness import read_runners

    assert wait_until(lambda: sum(r["alive"] for r in read_runners(home.path)) == 2, 30)
    time.sleep(0.5)  # both watch the home: both see the run appear and race for its tasks
    proc = home.cov("dispatch", "-q", str(script), "-a", f"log={log}", "-a", "delay=0.1")
    assert proc.returncode == 0, proc.stderr
    run_dir = home.path / proc.stdout.strip()
    assert wait_until(lambda: len(read_log(log)) >= 2, 30)
    claims = [json.loads(l) for l in (run_dir / "events.jsonl").read_text().splitlines()]
    first = next(e["runner"] for e in claims if e.get("ev") == "claim")
    victim = next(p for p in runners if f":{p.pid}:" in first)
    os.kill(victim.pid, signal.SIGSTOP)  # its workers run on and write results
    assert wait_until(lambda: len(unrecorded(run_dir)) >= 4, 30)
    time.sleep(0.3)
    finished = set(complete_results(run_dir))
    lines_at_kill = len(read_log(log))
    assert not kill9_runner(victim)
    home.start_runner()
    _check_completed(home, run_dir, log)
    again = [n for n, _ in read_log(log)[lines_at_kill:] if n in finished]
    assert not again, f"finished tasks ran again: {again}"
