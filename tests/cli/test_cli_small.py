"""Small CLI rules: ``latest`` is a top-level run; ``cov rm`` cancels a running run first and
takes its child runs along; bad ``--timeout`` values and YAML alias bombs are refused."""
from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

from runner.liveness import pid_alive
from runner.rundir import RunDir
from tests.cli.test_cli import assert_one_line_error
from tests.conftest import WORKFLOWS
from tests.reliability.test_self_healing import wait_until

SLEEPER = textwrap.dedent('''
    import os
    import time

    import covalent as ct


    @ct.electron
    def sleeper(marker):
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(marker + ".tmp", marker)
        time.sleep(300)
        return "woke"


    @ct.lattice
    def sleepy(marker):
        return sleeper(marker)
''')


def children_of(home: Path, parent: str) -> list:
    found = []
    for name in os.listdir(home):
        if name.startswith("."):
            continue
        header = RunDir(home / name).header()
        if (header.get("parent") or {}).get("dispatch_id") == parent:
            found.append(name)
    return found


def test_latest_is_the_newest_top_level_run(run_cov, cov_home):
    """Before: the sublattice's child run (made after its parent) was "latest"."""
    proc = run_cov("dispatch", "-q", "--wait", str(WORKFLOWS / "sublattice_loop.py"),
                   "-a", "start=40")
    assert proc.returncode == 0, proc.stderr
    parent = proc.stdout.split()[0]
    assert children_of(cov_home, parent)  # there are child runs, all newer than the parent
    status = json.loads(run_cov("status", "latest", "--json").stdout)
    assert status["dispatch_id"] == parent


def test_rm_of_a_parent_removes_its_child_runs(run_cov, cov_home):
    proc = run_cov("dispatch", "-q", "--wait", str(WORKFLOWS / "sublattice_loop.py"),
                   "-a", "start=40")
    assert proc.returncode == 0, proc.stderr
    parent = proc.stdout.split()[0]
    assert len(children_of(cov_home, parent)) == 1
    runs = [n for n in os.listdir(cov_home) if not n.startswith(".")]
    assert len(runs) == 4  # one nested run per halving: 40, 20, 10
    removed = run_cov("rm", parent)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == f"Removed {parent} and 3 child run(s)"
    assert [n for n in os.listdir(cov_home) if not n.startswith(".")] == []


def test_rm_of_a_running_run_cancels_it_and_stops_its_worker(run_cov, cov_home, tmp_path):
    """Before: refused without --force; with --force the task went on running."""
    script = tmp_path / "sleepy.py"
    script.write_text(SLEEPER)
    marker = tmp_path / "pid"
    proc = run_cov("dispatch", "-q", str(script), "-a", f"marker={marker}")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    wait_until(marker.exists, what="the task to start")
    worker = int(marker.read_text())
    assert pid_alive(worker)
    started = time.monotonic()
    removed = run_cov("rm", run_id)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == f"Removed {run_id}"
    assert time.monotonic() - started < 60
    assert not (cov_home / run_id).exists()
    wait_until(lambda: not pid_alive(worker), timeout=30, what="the worker to stop")


def test_wait_timeout_must_be_a_duration(run_cov, cov_home):
    for value in ("nan", "-1", "-0.5", "soon"):
        proc = run_cov("wait", "latest", "--timeout", value)
        assert proc.returncode == 2, (value, proc.stderr)
        assert "Invalid value for '--timeout'" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_yaml_alias_bomb_argument_is_an_error_not_a_hang(run_cov, cov_home):
    """Before: nine levels of nine aliases each (387 million strings once expanded) hung the
    dispatch for over 30 s while the manifest was written."""
    levels = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = "[" + ", ".join(levels) + "]"
    started = time.monotonic()
    proc = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "-a", f"name={bomb}",
                   env={"COV_NO_RUNNER": "1"}, timeout=60)
    assert time.monotonic() - started < 20
    assert_one_line_error(proc, 1, "-a name: its YAML aliases expand past 100,000 values")
    assert not cov_home.exists() or not [n for n in os.listdir(cov_home)
                                         if not n.startswith(".")]


def test_yaml_aliases_within_the_limit_still_work(run_cov, cov_home, tmp_path):
    args = tmp_path / "args.yaml"
    args.write_text("base: &b {x: 1}\nother: *b\n")
    script = tmp_path / "echo.py"
    script.write_text("import covalent as ct\n\n\n@ct.electron\ndef pair(a, b):\n"
                      "    return [a, b]\n\n\n@ct.lattice\ndef wf(base, other):\n"
                      "    return pair(base, other)\n")
    proc = run_cov("dispatch", "-q", "--wait", str(script), "--args-file", str(args))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[{'x': 1}, {'x': 1}]"
