"""``kill -9`` of the runner around the creation of sublattices' child runs.

A parent of six sublattices, each of three leaf tasks; the sublattice body sleeps a little so
that kills land inside the building task too. The runner is killed when a child's temporary
directory appears (mid-creation), when a child run appears (created, its building task not yet
done), when a building task's "child started" outcome lands (not yet recorded), and at random
moments, then restarted. In the end: the parent
COMPLETED with the right value, exactly one child run per sublattice node, and no leaf
(run, node, attempt) ran twice; leaves only ever ran in those children.

``COV_FAULT_TRIALS`` / ``COV_FAULT_SEED`` as in test_crash_consistency.py.
"""
from __future__ import annotations

import json
import os
import random
import textwrap
from collections import Counter
from pathlib import Path
from typing import Dict, List, Set, Tuple

from tests.fault.conftest import trials
from tests.fault.harness import Home, kill9_runner, wait_until

SEED = int(os.environ.get("COV_FAULT_SEED") or random.randrange(1 << 30))
SUBS = 6

WORKFLOW = textwrap.dedent('''
    import os
    import time

    import covalent as ct


    @ct.electron
    def leaf(i, j, log):
        ctx = ct.get_context()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ctx.dispatch_id} {ctx.node_id} {ctx.attempt}\\n".encode())
        finally:
            os.close(fd)
        time.sleep(0.03)
        return i * 10 + j


    @ct.electron
    def total(values):
        return sum(values)


    @ct.electron
    @ct.lattice
    def sub(i, log, delay):
        time.sleep(delay)  # the body runs inside the building task: widen that window
        return total([leaf(i, j, log) for j in range(3)])


    @ct.lattice
    def parent(log, n=%(subs)d, delay=0.05):
        return total([sub(i, log, delay) for i in range(n)])
''') % {"subs": SUBS}
EXPECTED = sum(i * 10 + j for i in range(SUBS) for j in range(3))


def _children(home: Path, parent_id: str) -> Dict[int, List[str]]:
    """Sublattice node -> the child runs created for it."""
    from runner.rundir import RunDir

    found: Dict[int, List[str]] = {}
    for name in os.listdir(home):
        if name.startswith("."):
            continue
        manifest = RunDir(home / name).manifest
        if manifest.parent and manifest.parent["dispatch_id"] == parent_id:
            found.setdefault(int(manifest.parent["node"]), []).append(name)
    return found


def _leaf_lines(log: Path) -> List[Tuple[str, int, int]]:
    try:
        text = log.read_text()
    except FileNotFoundError:
        return []
    return [(d, int(n), int(a)) for d, n, a in (line.split() for line in text.splitlines())]


def _trial(root: Path, seed: int) -> List[str]:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    home = Home(root)
    script = root / "subs.py"
    script.write_text(WORKFLOW)
    log = root / "leaves.log"
    problems: List[str] = []
    try:
        proc = home.cov("dispatch", "-q", str(script), "-a", f"log={log}")
        assert proc.returncode == 0, proc.stderr
        parent_id = proc.stdout.strip()
        runner = home.start_runner()
        kills = rng.randint(4, 10)
        for _ in range(kills):
            before: Set[str] = set(os.listdir(home.path))
            moment = rng.choice(["tmp", "child", "outcome", "random"])
            results = home.path / parent_id / "results"
            if moment == "outcome":  # a building task's "child started" outcome lands
                done = set(os.listdir(results))
                wait_until(lambda: set(os.listdir(results)) - done, 5, step=0.0005)
            elif moment == "random":
                wait_until(lambda: False, rng.uniform(0.1, 1.0))
            else:
                wanted = ".tmp-" if moment == "tmp" else ""
                wait_until(lambda: any(n.startswith(wanted) and not n.startswith(".runners")
                                       for n in set(os.listdir(home.path)) - before), 5,
                           step=0.0005)
            if runner.poll() is not None:
                break
            kill9_runner(runner)
            runner = home.start_runner()
        wait = home.cov("wait", parent_id, "--timeout", "120", "-q", timeout=150)
        status = home.cov("status", parent_id).stdout
        if wait.returncode != 0:
            problems.append(f"parent ended with exit {wait.returncode}: {status[-800:]}")
        else:
            result = json.loads(home.cov("result", parent_id, "--json").stdout)["result"]
            if result != EXPECTED:
                problems.append(f"parent result {result!r}, expected {EXPECTED}")
        children = _children(home.path, parent_id)
        if len(children) != SUBS:
            problems.append(f"children for {len(children)} of {SUBS} sublattice nodes")
        for node, runs in children.items():
            if len(runs) != 1:
                problems.append(f"sublattice node {node} has {len(runs)} child runs: {runs}")
        lines = _leaf_lines(log)
        twice = [k for k, c in Counter(lines).items() if c > 1]
        if twice:
            problems.append(f"leaf attempts that ran twice: {twice}")
        known = {r for runs in children.values() for r in runs}
        strays = {d for d, _, _ in lines} - known
        if strays:
            problems.append(f"leaves ran in runs that are no sublattice's child: {strays}")
        ran = {(d, n) for d, n, _ in lines}
        if len(ran) != SUBS * 3:
            problems.append(f"{len(ran)} distinct leaves ran, expected {SUBS * 3}")
    finally:
        home.stop_all()
    return problems


def test_runner_killed_around_child_run_creation_makes_one_child_per_sublattice(tmp_path):
    count = trials(3)
    failed = {}
    for i in range(count):
        problems = _trial(tmp_path / f"trial-{i}", SEED + i)
        if problems:
            failed[SEED + i] = problems
    assert not failed, f"COV_FAULT_SEED={SEED}: {failed}"
