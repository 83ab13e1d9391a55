"""Crash-consistency harness: real runners, real ``kill -9``, real files.

A workflow of 200 executing nodes (``WORKFLOW``) whose tasks append ``<node> <attempt> <pid>``
to a side-effect log when they start. A trial dispatches it, starts a runner, ``kill -9``s the
runner at chosen moments — while the dispatch is being written, while tasks run, right when
results land — restarts it each time, and checks the end state against the log:

* the run COMPLETED with every node's value right (computed here independently);
* no (node, attempt) appears twice in the log (an attempt never runs twice);
* no node whose result was complete at a kill ran again after it (a finished result is never
  recomputed), and the attempt whose result stands is the last one that ran;
* every ``results/*.pkl``, every record of the outcome packs (format 2.0: all but a torn
  last one, a worker killed mid-append), ``manifest.yaml`` and every line of ``events.jsonl``
  parses.

Used by ``tests/fault`` (a few trials) and ``bench/soak.py`` (many). Nothing here is mocked:
kills are SIGKILL to the runner's pid; its pool workers die with it (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from tests.processes import pid_gone, wait_until  # noqa: F401 (the fault tests take them from here)

REPO = Path(__file__).resolve().parents[2]

LAYER1 = 100  # work1(i) for i < LAYER1
LAYER2 = LAYER1 - 2  # work2(i, a_i, a_i+1) for i < LAYER2; + the list node + total = 200

WORKFLOW = textwrap.dedent('''
    """200 executing nodes; each task records its start in a side-effect log."""
    import os
    import time

    import covalent as ct


    def _record(log):
        ctx = ct.get_context()
        line = f"{ctx.node_id} {ctx.attempt} {os.getpid()}\\n".encode()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one O_APPEND write: lines never interleave
        finally:
            os.close(fd)


    @ct.electron
    def work1(i, log, delay):
        _record(log)
        time.sleep(delay)
        return i * i + 1


    @ct.electron
    def work2(i, a, b, log, delay):
        _record(log)
        time.sleep(delay)
        return a + b + i


    @ct.electron
    def total(values):
        return sum(values)


    @ct.lattice
    def crash_wf(log, delay=0.01):
        first = [work1(i, log, delay) for i in range(%(l1)d)]
        second = [work2(i, first[i], first[i + 1], log, delay) for i in range(%(l2)d)]
        return total(second)
''') % {"l1": LAYER1, "l2": LAYER2}


FAN_WORKFLOW = textwrap.dedent('''
    """n independent tasks, each recording its start in a side-effect log, and a sum."""
    import os
    import time

    import covalent as ct


    @ct.electron
    def step(i, log, delay):
        ctx = ct.get_context()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ctx.node_id} {ctx.attempt} {os.getpid()}\\n".encode())
        finally:
            os.close(fd)
        time.sleep(delay)
        return i


    @ct.electron
    def total(values):
        return sum(values)


    @ct.lattice
    def fan(log, n=1000, delay=0.0):
        return total([step(i, log, delay) for i in range(n)])
''')


def expected_values() -> Tuple[List[int], List[int], int]:
    """The values work1, work2 and total must produce."""
    first = [i * i + 1 for i in range(LAYER1)]
    second = [first[i] + first[i + 1] + i for i in range(LAYER2)]
    return first, second, sum(second)


CONFIG = "runner:\n  idle_timeout: 2\n  rescan_interval: 0.5\n  heartbeat_interval: 1\n"


class Home:
    """A private runs home with its config, and the processes started in it."""

    def __init__(self, root: Path, config: str = CONFIG, autostart: bool = False) -> None:
        self.root = root
        self.autostart = autostart  # dispatch starts a runner itself, as for a user
        self.path = root / "home"
        self.config = root / "config.yaml"
        self.config.write_text(config)
        self.runner_log = root / "runner.log"
        self.procs: List[subprocess.Popen] = []

    @property
    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(COV_HOME=str(self.path), COV_CONFIG=str(self.config), COV_NO_RUNNER="1",
                   PYTHONPATH=str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                           if env.get("PYTHONPATH") else ""))
        if self.autostart:
            del env["COV_NO_RUNNER"]
        return env

    def cov(self, *args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess:
        """Run the ``cov`` CLI (no runner is started by dispatch: the harness owns runners)."""
        return subprocess.run([sys.executable, "-m", "covalent_cli.cli", *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env,
                              cwd=str(self.root), **kw)

    def start_dispatch(self, *args: str) -> subprocess.Popen:
        """``cov dispatch -q ...`` in the background (its stdout is the dispatch id)."""
        proc = subprocess.Popen([sys.executable, "-m", "covalent_cli.cli", "dispatch", "-q", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, cwd=str(self.root))
        self.procs.append(proc)
        return proc

    def start_runner(self, *extra: str, idle_timeout: float = 2.0) -> subprocess.Popen:
        """``python -m runner`` for this home, its output appended to ``runner.log``."""
        with open(self.runner_log, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "runner", "--home", str(self.path),
                                     "--idle-timeout", str(idle_timeout), *extra],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=self.env, cwd="/")
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """Kill whatever this home started that is still alive (by pid), and reap it; runners
        that dispatch started (detached) are found by their heartbeat files."""
        from runner.liveness import HOST, pid_alive, read_runners

        for info in read_runners(self.path):
            pid = int(info.get("pid", 0))
            if info.get("host") == HOST and pid > 0 and pid_alive(pid) and \
                    pid not in (p.pid for p in self.procs):
                _kill(pid, signal.SIGTERM)
                if not wait_until(lambda: not pid_alive(pid), 10):
                    _kill(pid)
        for proc in self.procs:
            if proc.poll() is None:
                for pid in children_of(proc.pid):
                    _kill(pid)
                _kill(proc.pid)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass

    def runner_log_text(self) -> str:
        try:
            return self.runner_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def children_of(pid: int) -> List[int]:
    """Direct children of ``pid`` (from /proc): a runner's pool workers."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def kill9_runner(proc: subprocess.Popen) -> List[int]:
    """SIGKILL the runner, reap it, and wait until its workers (killed by PDEATHSIG) are gone,
    so that what is on disk afterwards is what the crash left. Returns the workers that
    outlived it by 5 s (a bug; they are killed then)."""
    workers = children_of(proc.pid)
    _kill(proc.pid)
    proc.wait(timeout=10)
    if wait_until(lambda: all(pid_gone(w) for w in workers), 5):
        return []
    survivors = [w for w in workers if not pid_gone(w)]
    for pid in survivors:
        _kill(pid)
    return survivors


def processes_mentioning(text: str) -> List[int]:
    """Live processes whose command line contains ``text`` (e.g. a home's path)."""
    found = []
    needle = text.encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if needle in f.read() and not pid_gone(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
    return found


# -- reading what a run left ------------------------------------------------------------------
def read_log(path: Path) -> List[Tuple[int, int]]:
    """(node, attempt) per line of the side-effect log."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [(int(a), int(b)) for a, b, _ in (line.split() for line in text.splitlines())]


def packed_records(run_dir: Path) -> Tuple[List[Tuple[Dict[str, Any], bytes]], int]:
    """(header, payload) of every whole record in the run's outcome packs, and how many
    packs end in a torn record (a worker killed mid-append: ignored by readers)."""
    from runner import layout
    from runner.outcome_pack import read_at, scan

    records, torn = [], 0
    for entry in os.scandir(run_dir / "results"):
        if not layout.is_pack_name(entry.name, layout.OUTCOME_PACK_SUFFIX):
            continue
        fd = os.open(entry.path, os.O_RDONLY)
        try:
            end = 0
            for offset, length, header in scan(fd):
                data = read_at(fd, offset, length)
                records.append((header, data[data.index(b"\n") + 1:]))
                end = offset + length
            torn += end != os.fstat(fd).st_size
        finally:
            os.close(fd)
    return records, torn


def complete_results(run_dir: Path) -> Dict[int, int]:
    """node -> attempt of every complete ``results/<node>.pkl`` and packed record (the
    latest attempt's)."""
    from runner.outcome import read_outcome_header

    found: Dict[int, int] = {}
    for entry in os.scandir(run_dir / "results"):
        if entry.name.endswith(".pkl") and ".tmp-" not in entry.name:
            header = read_outcome_header(entry.path)
            if header is not None and header.get("ok"):
                found[int(entry.name[:-4])] = int(header.get("attempt", 1))
    for header, _ in packed_records(run_dir)[0]:
        if header.get("ok"):
            node = int(header["node"])
            found[node] = max(found.get(node, 0), int(header.get("attempt", 1)))
    return found


def recorded_completed(run_dir: Path) -> Set[int]:
    from runner.state import COMPLETED, fold

    events = []
    for line in (run_dir / "events.jsonl").read_bytes().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return {n for n, t in fold(events).tasks.items() if t.status == COMPLETED}


def unrecorded(run_dir: Path) -> Set[int]:
    """Nodes whose result is complete on disk but not yet recorded COMPLETED in the log."""
    return set(complete_results(run_dir)) - recorded_completed(run_dir)


def file_problems(run_dir: Path) -> Tuple[List[str], int]:
    """Files of the run that are truncated or do not parse; and the count of torn event
    lines (a line a killed writer left unfinished, which readers skip by design)."""
    from runner.manifest import Manifest
    from runner.outcome import read_outcome_header, read_outcome_payload

    problems = []
    try:
        Manifest.from_yaml((run_dir / "manifest.yaml").read_text())
    except Exception as exc:  # noqa: BLE001
        problems.append(f"manifest.yaml: {exc}")
    torn = 0
    data = (run_dir / "events.jsonl").read_bytes()
    if data and not data.endswith(b"\n"):
        problems.append("events.jsonl does not end with a newline")
    for number, line in enumerate(data.splitlines(), 1):
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or "ev" not in event:
                problems.append(f"events.jsonl:{number}: not an event: {line[:80]!r}")
        except ValueError:
            torn += 1
            if b"\n{" in line or line.count(b'{"t"') > 1:
                problems.append(f"events.jsonl:{number}: two events merged: {line[:120]!r}")
    records, torn_packs = packed_records(run_dir)
    torn += torn_packs
    for header, payload in records:
        if header.get("ok") and not header.get("child"):
            try:
                pickle.loads(payload)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"node {header.get('node')}'s packed record does not unpickle: "
                                f"{exc}")
    for entry in os.scandir(run_dir / "results"):
        if ".tmp-" in entry.name or not entry.name.endswith(".pkl"):
            continue
        header = read_outcome_header(entry.path)
        if header is None:
            problems.append(f"results/{entry.name}: truncated or unparsable")
        elif header.get("ok") and not header.get("child"):
            try:
                pickle.loads(read_outcome_payload(entry.path) or b"")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"results/{entry.name}: payload does not unpickle: {exc}")
    return problems, torn


# -- one trial ---------------------------------------------------------------------------------
@dataclass
class Kill:
    moment: str  # "dispatch" | "running" | "results"
    at: float  # seconds after the runner started
    done: int  # complete results on disk after the kill
    recorded: int  # of which recorded COMPLETED in the event log
    in_flight: int  # claimed, not finished (killed mid-task)


@dataclass
class TrialReport:
    seed: int
    run_id: str = ""
    kills: List[Kill] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    double_executions: int = 0  # an attempt that ran twice, or a finished node that ran again
    reruns: int = 0  # attempts of nodes killed mid-task (allowed)
    torn_lines: int = 0
    tmp_left: int = 0  # temporary files a killed writer left behind
    seconds: float = 0.0

    @property
    def survived(self) -> bool:
        return not self.problems


def crash_trial(root: Path, seed: int, kills: int = 3, delay: float = 0.01,
                timeout: float = 120.0, runners: int = 1) -> TrialReport:
    """Dispatch the workflow, kill -9 a runner ``kills`` times at random moments (the first one
    possibly during the dispatch), restart it each time, then check everything. With
    ``runners`` > 1 the others keep going: they take over the killed one's claims."""
    rng = random.Random(seed)
    report = TrialReport(seed=seed)
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    home = Home(root)
    script = root / "crash_wf.py"
    script.write_text(WORKFLOW)
    log = root / "side-effects.log"
    try:
        _run_trial(home, script, log, rng, kills, delay, timeout, runners, report)
    finally:
        home.stop_all()
        report.seconds = time.monotonic() - started
    return report


def _run_trial(home: Home, script: Path, log: Path, rng: random.Random, kills: int,
               delay: float, timeout: float, count: int, report: TrialReport) -> None:
    moments = [rng.choice(["dispatch", "running", "results"])] + \
        [rng.choice(["running", "results"]) for _ in range(kills - 1)]
    runners = [home.start_runner() for _ in range(count)]
    born = [time.monotonic()] * count
    dispatch = home.start_dispatch(str(script), "-a", f"log={log}", "-a", f"delay={delay}")
    if moments and moments[0] == "dispatch":
        # a runner dies at a random point of the dispatch's life (import, build, write)
        time.sleep(rng.uniform(0.05, 0.6))
        report.kills.append(_kill_and_look(runners[0], home, None, "dispatch", born[0], report))
        runners[0], born[0] = home.start_runner(), time.monotonic()
        moments = moments[1:]
    out, err = dispatch.communicate(timeout=60)
    if dispatch.returncode != 0:
        report.problems.append(f"dispatch failed ({dispatch.returncode}): {err.strip()}")
        return
    report.run_id = out.strip()
    run_dir = home.path / report.run_id
    snapshots: List[Tuple[Set[int], int]] = []  # (complete nodes, log lines) at each kill
    for moment in moments:
        if moment == "running":
            time.sleep(rng.uniform(0.05, 1.2))
        else:  # right as new results land, before the runner has recorded them all
            # results counted whole, files and packed records alike (format 2.0)
            before = len(complete_results(run_dir))
            extra = rng.randint(0, 6)
            wait_until(lambda: len(complete_results(run_dir)) > before + extra or
                       (run_dir / "result.pkl").exists(), 5, step=0.001)
        victim = rng.randrange(count)
        if runners[victim].poll() is not None:
            break  # the run finished and the runner went idle: nothing left to kill
        kill = _kill_and_look(runners[victim], home, run_dir, moment, born[victim], report)
        report.kills.append(kill)
        snapshots.append((set(complete_results(run_dir)), len(read_log(log))))
        runners[victim], born[victim] = home.start_runner(), time.monotonic()
    wait = home.cov("wait", report.run_id, "--timeout", str(timeout), "-q", timeout=timeout + 30)
    if wait.returncode != 0:
        report.problems.append(f"run ended with exit {wait.returncode} "
                               f"({wait.stderr.strip()[-300:]})")
    _verify(run_dir, log, snapshots, report)


def _kill_and_look(runner: subprocess.Popen, home: Home, run_dir: Optional[Path], moment: str,
                   born: float, report: TrialReport) -> Kill:
    at = time.monotonic() - born
    survivors = kill9_runner(runner)
    if survivors:
        report.problems.append(f"pool workers {survivors} outlived their runner killed at "
                               f"{moment}, {at:.2f} s after its start")
    if run_dir is None:
        return Kill(moment, at, 0, 0, 0)
    from runner.rundir import RunDir

    done = complete_results(run_dir)
    state = RunDir(run_dir).state()
    recorded = sum(1 for n in done if n in state.tasks and state.tasks[n].status == "COMPLETED")
    in_flight = sum(1 for t in state.tasks.values() if t.status in ("QUEUED", "RUNNING"))
    return Kill(moment, at, len(done), recorded, in_flight)


def _verify(run_dir: Path, log: Path, snapshots: List[Tuple[Set[int], int]],
            report: TrialReport) -> None:
    from runner.rundir import RunDir

    run = RunDir(run_dir)
    manifest = run.manifest
    state = run.state()
    if state.status != "COMPLETED":
        report.problems.append(f"run status {state.status}: {state.error}")
    first, second, total = expected_values()
    names = {"work1": iter(first), "work2": iter(second), "total": iter([total])}
    for node in manifest.nodes:  # nodes are numbered in creation order: values follow it
        if node.name not in names:
            continue
        want = next(names[node.name])
        task = state.tasks.get(node.id)
        if task is None or task.status != "COMPLETED":
            report.problems.append(f"node {node.id} ({node.name}) is "
                                   f"{task.status if task else 'NEW_OBJECT'}")
            continue
        try:
            got = run.load_output(node.id)
        except Exception as exc:  # noqa: BLE001
            report.problems.append(f"node {node.id}: result unreadable: {exc}")
            continue
        if got != want:
            report.problems.append(f"node {node.id} ({node.name}) = {got!r}, expected {want!r}")
    lines = read_log(log)
    seen: Set[Tuple[int, int]] = set()
    for entry in lines:
        if entry in seen:
            report.double_executions += 1
            report.problems.append(f"node {entry[0]} attempt {entry[1]} ran twice")
        seen.add(entry)
    for complete, offset in snapshots:
        for node, attempt in lines[offset:]:
            if node in complete:
                report.double_executions += 1
                report.problems.append(f"node {node} had finished at a kill and ran again "
                                       f"(attempt {attempt})")
    final = complete_results(run_dir)
    last_run: Dict[int, int] = {}
    for node, attempt in lines:
        last_run[node] = max(attempt, last_run.get(node, 0))
    for node, attempt in last_run.items():
        if final.get(node) != attempt:
            report.problems.append(f"node {node}: result from attempt {final.get(node)}, "
                                   f"but attempt {attempt} ran last")
    report.reruns = len(lines) - len(last_run)
    expected_tasks = LAYER1 + LAYER2
    if len(last_run) != expected_tasks:
        report.problems.append(f"{len(last_run)} tasks logged, expected {expected_tasks}")
    problems, torn = file_problems(run_dir)
    report.problems.extend(problems)
    report.torn_lines = torn
    report.tmp_left = sum(1 for d in ("results", "logs") for n in os.listdir(run_dir / d)
                          if ".tmp-" in n)


def summarize(reports: List[TrialReport]) -> Dict[str, Any]:
    """Totals over trials: what docs/reliability.md reports."""
    kills = [k for r in reports for k in r.kills]
    return {
        "trials": len(reports),
        "survived": sum(r.survived for r in reports),
        "double_executions": sum(r.double_executions for r in reports),
        "kills": len(kills),
        "kills_during_dispatch": sum(k.moment == "dispatch" for k in kills),
        "kills_while_running": sum(k.in_flight > 0 for k in kills),
        "kills_with_unrecorded_results": sum(k.done > k.recorded for k in kills),
        "reruns_of_killed_attempts": sum(r.reruns for r in reports),
        "torn_event_lines": sum(r.torn_lines for r in reports),
        "tmp_files_left": sum(r.tmp_left for r in reports),
        "seconds": round(sum(r.seconds for r in reports), 1),
    }
