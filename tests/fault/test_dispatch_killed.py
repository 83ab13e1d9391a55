"""``cov dispatch`` killed half-way leaves no run that looks complete: each run exists whole (and
runs to the end) or not at all; what a killed dispatch left (``.tmp-*``) is invisible to readers
and to runners."""
from __future__ import annotations

import json
import os
import random
import signal
import textwrap
import time

from tests.fault.conftest import trials
from tests.fault.harness import wait_until

SCRIPT = textwrap.dedent('''
    import covalent as ct


    @ct.electron
    def square(i):
        return i * i


    @ct.electron
    def size(data):
        return len(data)


    @ct.electron
    def total(values, n):
        return sum(values) + n


    @ct.lattice
    def wf(n=300):
        big = "x" * (48 << 20)  # a 48 MB argument: tasks.pkl takes a while to write
        return total([square(i) for i in range(n)], size(big))
''')
EXPECTED = sum(i * i for i in range(300)) + (48 << 20)


def _whole(run_dir) -> list:
    """What is wrong with a run directory that claims to be a run."""
    from runner.manifest import Manifest

    problems = []
    try:
        manifest = Manifest.from_yaml((run_dir / "manifest.yaml").read_text())
    except Exception as exc:  # noqa: BLE001
        return [f"manifest: {exc}"]
    ends = [n.blob[0] + n.blob[1] for n in manifest.nodes if n.blob] + \
        [o + n for o, n in manifest.blobs.values()]
    if (run_dir / "tasks.pkl").stat().st_size < max(ends):
        problems.append("tasks.pkl is shorter than the manifest says")
    for name in ("results", "logs", "events.jsonl"):
        if not (run_dir / name).exists():
            problems.append(f"{name} missing")
    return problems


def test_dispatch_killed_at_random_points_leaves_whole_runs_or_none(home, tmp_path):
    script = tmp_path / "wf.py"
    script.write_text(SCRIPT)
    rng = random.Random(int(os.environ.get("COV_FAULT_SEED") or random.randrange(1 << 30)))
    started = time.monotonic()
    whole = home.cov("dispatch", "-q", str(script))
    duration = time.monotonic() - started
    assert whole.returncode == 0, whole.stderr
    half_way = 0
    kills = trials(6)
    for i in range(kills):
        before = set(_names(home.path))
        proc = home.start_dispatch(str(script))
        if i % 2 == 0:  # inside the run directory's creation: its temporary directory exists
            wait_until(lambda: any(n.startswith(".tmp-") for n in set(_names(home.path)) - before),
                       30, step=0.0005)
            time.sleep(rng.uniform(0, 0.01))
        else:
            time.sleep(rng.uniform(0.05, duration))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        half_way += any(n.startswith(".tmp-") for n in set(_names(home.path)) - before)
    assert half_way >= kills // 3, f"only {half_way} kills landed inside the run's creation"

    runs = [n for n in _names(home.path) if not n.startswith(".")]
    for name in runs:
        assert not _whole(home.path / name), (name, _whole(home.path / name))
    listed = json.loads(home.cov("runs", "--json").stdout)["runs"]
    assert sorted(r["dispatch_id"] for r in listed) == sorted(runs)
    assert all(r["status"] != "UNREADABLE" for r in listed)

    home.start_runner()
    for name in runs:
        assert home.cov("wait", name, "--timeout", "120", "-q").returncode == 0
        assert json.loads(home.cov("result", name, "--json").stdout)["result"] == EXPECTED
    leftovers = [n for n in _names(home.path) if n.startswith(".tmp-")]
    print(f"{kills} dispatches killed ({half_way} inside the run's creation): {len(runs)} whole "
          f"runs, all completed; {len(leftovers)} .tmp-* left, invisible to readers")


def _names(path) -> list:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
