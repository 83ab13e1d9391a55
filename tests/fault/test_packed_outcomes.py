"""Format 2.0's pack files under crashes (docs/run-directory.md, "Pack files"): real runners,
real ``kill -9``, real pack files.

* The runner stopped and killed between its workers' appends and the ``end`` events: the
  records in the packs are all a new runner has of those tasks. It adopts them from the packs
  (none of them runs again), and a record torn at a pack's end (what a worker killed
  mid-append leaves; made here by cutting a real pack file, since the moment of a kill cannot
  be timed to land inside one ``pwrite``) is ignored: its task runs again.
* A pool worker killed under a task (a real SIGKILL): the packs stay whole, the run goes on.
* A format 1.0 run (dispatched by an older cov) served by this runner keeps per-node files.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

from runner import layout
from runner.outcome_pack import scan
from runner.rundir import RunDir
from tests.fault.harness import Home, file_problems, packed_records, wait_until

SCRIPT = textwrap.dedent('''
    import os
    import time

    import covalent as ct


    @ct.electron
    def step(i, log, delay):
        with open(log, "a") as f:
            f.write(f"{i} {os.getpid()}\\n")
        print(f"step {i}", flush=True)
        time.sleep(delay)
        return i * 3


    @ct.electron
    def total(values):
        return sum(values)


    @ct.lattice
    def fan(log, n=40, delay=0.0):
        return total([step(i, log, delay) for i in range(n)])
''')


def _dispatch(home: Home, *args: str) -> RunDir:
    script = home.root / "fan.py"
    script.write_text(SCRIPT)
    out = home.cov("dispatch", "-q", str(script), "fan", *args)
    assert out.returncode == 0, out.stderr
    return RunDir(home.path / out.stdout.strip().splitlines()[-1])


def _started(log: Path) -> List[int]:
    try:
        return [int(line.split()[0]) for line in log.read_text().splitlines()]
    except FileNotFoundError:
        return []


def _recorded_ends(run: RunDir) -> Set[int]:
    done = set()
    for line in run.events_path.read_bytes().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("ev") == "end" and event.get("status") == "COMPLETED":
            done.add(event["node"])
    return done


def _last_unrecorded_record(run: RunDir, unrecorded: Set[int]) -> Tuple[Path, int, int, Dict]:
    """(pack, offset, length, header) of a pack's last record whose end was not recorded."""
    for entry in sorted(os.scandir(run.results_dir), key=lambda e: e.name):
        if layout.is_pack_name(entry.name, layout.OUTCOME_PACK_SUFFIX):
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                records = list(scan(fd))
            finally:
                os.close(fd)
            if records and int(records[-1][2]["node"]) in unrecorded:
                offset, length, header = records[-1]
                return Path(entry.path), offset, length, header
    raise AssertionError("no pack ends in an unrecorded record: nothing to tear")


def test_records_appended_before_the_runner_died_are_adopted_and_a_torn_one_rerun(
        home: Home) -> None:
    log = home.root / "side.log"
    run = _dispatch(home, "-a", f"log={log}", "-a", "n=40", "-a", "delay=0.15")
    runner = home.start_runner("--workers", "2")
    assert wait_until(lambda: len(_started(log)) >= 2, 60), home.runner_log_text()
    # Stopped, the runner records nothing; its workers go on with the tasks queued in them
    # (up to 8 each), appending their outcomes to the packs. Then it dies with them.
    os.kill(runner.pid, signal.SIGSTOP)
    time.sleep(1.5)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=30)
    time.sleep(0.3)  # its workers die with it (PR_SET_PDEATHSIG)

    records, _ = packed_records(run.path)
    in_packs = {int(h["node"]) for h, _ in records if h.get("ok")}
    unrecorded = in_packs - _recorded_ends(run)
    assert unrecorded, "the kill left no appended-but-unrecorded outcome: nothing was tested"

    # The last record of a pack, torn as a worker killed mid-append would leave it.
    pack, offset, length, header = _last_unrecorded_record(run, unrecorded)
    torn_node = int(header["node"])
    with open(pack, "r+b") as f:
        f.truncate(offset + length - 3)
    runs_before = {i: _started(log).count(i) for i in range(40)}

    home.start_runner("--workers", "2")
    done = home.cov("wait", run.dispatch_id, "--timeout", "120", "-q", timeout=150)
    assert done.returncode == 0, (done.stdout, done.stderr, home.runner_log_text())

    fresh = RunDir(run.path)
    assert pickle.loads(fresh.output_bytes(fresh.manifest.output_node)) == \
        sum(3 * i for i in range(40))
    started = _started(log)
    step_input = {n.id: int(fresh.manifest.node(e.node).value_repr or -1)
                  for n in fresh.manifest.nodes if n.name == "step"
                  for e in n.parents if e.param == "i"}
    for node in unrecorded - {torn_node}:
        i = step_input[node]
        assert started.count(i) == runs_before[i], \
            f"node {node} (step {i}) ran again although its record was whole in a pack"
        header_after = fresh.read_outcome(node)[0]
        assert header_after is not None and header_after.get("at"), node
        assert fresh.read_log(node, "stdout") == f"step {i}\n"
    i = step_input[torn_node]
    assert started.count(i) == runs_before[i] + 1, "the torn record's task did not rerun"
    assert fresh.state().tasks[torn_node].attempt == 2
    problems, torn = file_problems(run.path)
    assert problems == []
    assert torn >= 1  # the torn record stays, ignored


def test_pool_worker_killed_under_a_task_leaves_whole_packs(home: Home) -> None:
    log = home.root / "side.log"
    script = home.root / "victim.py"
    script.write_text(textwrap.dedent('''
        import os
        import signal

        import covalent as ct


        @ct.electron
        def small(i):
            print("small", i)
            return i


        @ct.electron(executor=ct.executor.LocalExecutor(retries=1))
        def victim(marker):
            if not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)  # the pool worker itself dies
            return "second attempt"


        @ct.lattice
        def wf(marker):
            return [victim(marker)] + [small(i) for i in range(30)]
    '''))
    out = home.cov("dispatch", "-q", str(script), "wf", "-a", f"marker={log}")
    assert out.returncode == 0, out.stderr
    run = RunDir(home.path / out.stdout.strip().splitlines()[-1])
    home.start_runner("--workers", "2")
    done = home.cov("wait", run.dispatch_id, "--timeout", "120", "-q", timeout=150)
    assert done.returncode == 0, (done.stdout, done.stderr, home.runner_log_text())
    assert pickle.loads(run.output_bytes(run.manifest.output_node)) == \
        ["second attempt"] + list(range(30))
    problems, torn = file_problems(run.path)
    assert problems == [] and torn == 0
    assert not [n for n in os.listdir(run.results_dir) if n.endswith(".pkl")
                and n != layout.outcome_file(run.manifest.output_node)], \
        "small outcomes were written as files of their own"


def test_a_format_1_0_run_keeps_per_node_files(home: Home) -> None:
    log = home.root / "side.log"
    run = _dispatch(home, "-a", f"log={log}", "-a", "n=5")
    text = run.manifest_path.read_text()
    assert "format_version: '2.0'" in text
    run.manifest_path.write_text(text.replace("format_version: '2.0'", "format_version: '1.0'"))
    home.start_runner("--workers", "2")
    done = home.cov("wait", run.dispatch_id, "--timeout", "120", "-q", timeout=150)
    assert done.returncode == 0, (done.stdout, done.stderr, home.runner_log_text())
    names = set(os.listdir(run.results_dir)) | set(os.listdir(run.logs_dir))
    assert not [n for n in names if n.startswith(layout.PACKED_PREFIX)]
    steps = [n.id for n in run.manifest.nodes if n.name == "step"]
    assert {layout.outcome_file(n) for n in steps} <= names
    assert {layout.log_file(n, "out") for n in steps} <= names
    logs = home.cov("logs", run.dispatch_id, str(steps[0]), "--stream", "stdout")
    assert logs.stdout.startswith("step ")
