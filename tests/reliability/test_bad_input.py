"""Bad input, one test each: a clear one-line error, the documented exit code, no traceback of
ours, nothing half-written; or, for a damaged run directory, readers that still answer and a
runner that goes on.

These add to the cases of tests/cli/test_cli.py (syntax and import errors, a script raising at
load, no lattice / several, missing script, binary file, ``--arg`` without ``=``, wrong arity,
unpicklable argument, unknown executor, invalid config YAML, unknown / malformed / ambiguous run
ids, newer format, corrupted manifest, unwritable home) and of test_full_disk.py (a full disk
during a dispatch and during result writes). docs/reliability.md counts them all.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Tuple

import pytest

from tests.cli.test_cli import assert_one_line_error
from tests.conftest import REPO

OK = textwrap.dedent('''
    import covalent as ct


    @ct.electron
    def f(x):
        return {"x": x, "pad": "y" * 1000}


    @ct.electron
    def g(v):
        return v["x"] + 1


    @ct.lattice
    def wf(x=1):
        return g(f(x))
''')


def script(tmp_path: Path, body: str, name: str = "wf.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def nothing_written(home: Path) -> bool:
    return not home.exists() or not [p for p in home.iterdir() if not p.name.startswith(".")]


def run_runner(home: Path, idle: float = 0.5) -> None:
    """A runner in the foreground until its runs are done and it has been idle ``idle`` s."""
    subprocess.run([sys.executable, "-m", "runner", "--home", str(home), "--idle-timeout",
                    str(idle)], capture_output=True, timeout=120, cwd=str(REPO),
                   env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One COMPLETED run of ``OK`` (g(f(1)) == 2), to copy and damage."""
    root = tmp_path_factory.mktemp("finished")
    home = root / "home"
    env = {**os.environ, "COV_HOME": str(home), "COV_NO_RUNNER": "1",
           "COV_CONFIG": str(root / "none.yaml")}
    proc = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "dispatch", "-q",
                           str(script(root, OK))], capture_output=True, text=True, env=env,
                          cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    run_runner(home)
    return home / proc.stdout.strip()


@pytest.fixture
def copy_of_run(finished_run: Path, cov_home: Path) -> Path:
    cov_home.mkdir(parents=True, exist_ok=True)
    target = cov_home / finished_run.name
    shutil.copytree(finished_run, target)
    return target


def pending_run(run_cov, tmp_path: Path, cov_home: Path, body: str = OK) -> Path:
    """A dispatched run no runner has touched yet."""
    proc = run_cov("dispatch", "-q", str(script(tmp_path, body)), env={"COV_NO_RUNNER": "1"})
    assert proc.returncode == 0, proc.stderr
    return cov_home / proc.stdout.strip()


# -- scripts ------------------------------------------------------------------------------------
def test_non_python_script(run_cov, tmp_path, cov_home):
    body = "#!/bin/bash\necho \"hello $USER\"\nfor f in *; do echo $f; done\n"
    proc = run_cov("dispatch", str(script(tmp_path, body, "job.sh")))
    assert_one_line_error(proc, 7, "syntax error", "is this a Python script?")
    assert nothing_written(cov_home)


def test_script_path_is_a_directory(run_cov, tmp_path):
    assert_one_line_error(run_cov("dispatch", str(tmp_path)), 1, "is a directory")


def test_script_exits_nonzero_while_loading(run_cov, tmp_path, cov_home):
    proc = run_cov("dispatch", str(script(tmp_path, "import sys\nsys.exit(2)\n")))
    assert_one_line_error(proc, 7, "exited with 2 while loading")
    assert nothing_written(cov_home)


def test_recursion_too_deep_while_loading(run_cov, tmp_path, cov_home):
    body = "def deep(n):\n    return deep(n + 1)\n\ndeep(0)\n"
    assert_one_line_error(run_cov("dispatch", str(script(tmp_path, body))), 7, "RecursionError")
    assert nothing_written(cov_home)


def test_recursion_too_deep_while_building_the_graph(run_cov, tmp_path, cov_home):
    body = """
        import covalent as ct

        @ct.electron
        def f(x):
            return x

        @ct.lattice
        def wf(n=100000):
            def down(k):
                return f(k) if k == 0 else down(k - 1)
            return down(n)
    """
    proc = run_cov("dispatch", str(script(tmp_path, body)))
    assert_one_line_error(proc, 7, "building lattice 'wf'", "recursion too deep")
    assert nothing_written(cov_home)


def test_argument_nested_too_deeply(run_cov, tmp_path, cov_home):
    body = """
        import covalent as ct

        @ct.electron
        def f(x):
            return 1

        @ct.lattice
        def wf():
            v = []
            for _ in range(5000):
                v = [v]
            return f(v)
    """
    assert_one_line_error(run_cov("dispatch", str(script(tmp_path, body))), 7, "RecursionError")
    assert nothing_written(cov_home)


def test_lattice_raising_at_build_time_shows_the_users_traceback(run_cov, tmp_path, cov_home):
    body = """
        import covalent as ct

        @ct.electron
        def f(x):
            return x

        @ct.lattice
        def wf(x=1):
            y = f(x)
            raise ValueError("bad shape at build time")
    """
    proc = run_cov("dispatch", str(script(tmp_path, body)))
    assert_one_line_error(proc, 7, "building lattice 'wf'", "ValueError: bad shape at build time")
    assert 'wf.py", line 11, in wf' in proc.stderr
    assert nothing_written(cov_home)


def test_electron_called_with_missing_argument_in_the_lattice(run_cov, tmp_path, cov_home):
    body = """
        import covalent as ct

        @ct.electron
        def f(x, y):
            return x + y

        @ct.lattice
        def wf():
            return f(1)
    """
    proc = run_cov("dispatch", str(script(tmp_path, body)))
    assert_one_line_error(proc, 7, "missing a required argument: 'y'")
    assert nothing_written(cov_home)


def test_closure_over_an_unpicklable_object(run_cov, tmp_path, cov_home):
    body = """
        import threading
        import covalent as ct

        lock = threading.Lock()

        @ct.electron
        def f(x):
            with lock:
                return x

        @ct.lattice
        def wf(x=1):
            return f(x)
    """
    proc = run_cov("dispatch", str(script(tmp_path, body)))
    assert_one_line_error(proc, 1, "cannot pickle task 'f'", "lock")
    assert nothing_written(cov_home)


def test_unknown_lattice_name(run_cov, tmp_path, cov_home):
    proc = run_cov("dispatch", str(script(tmp_path, OK)), "nope")
    assert_one_line_error(proc, 1, "no lattice named 'nope'", "found: wf")
    assert nothing_written(cov_home)


def test_arg_with_an_empty_name(run_cov, tmp_path):
    proc = run_cov("dispatch", str(script(tmp_path, OK)), "-a", "=5")
    assert_one_line_error(proc, 1, "bad --arg '=5'")


def test_args_file_missing(run_cov, tmp_path):
    proc = run_cov("dispatch", str(script(tmp_path, OK)), "--args-file", str(tmp_path / "no.yaml"))
    assert_one_line_error(proc, 1, "cannot read --args-file")


def test_args_file_not_yaml(run_cov, tmp_path):
    bad = tmp_path / "args.yaml"
    bad.write_text("x: [1,\n")
    proc = run_cov("dispatch", str(script(tmp_path, OK)), "--args-file", str(bad))
    assert_one_line_error(proc, 1, "not valid YAML or JSON")


def test_args_file_not_a_mapping(run_cov, tmp_path):
    bad = tmp_path / "args.yaml"
    bad.write_text("42\n")
    proc = run_cov("dispatch", str(script(tmp_path, OK)), "--args-file", str(bad))
    assert_one_line_error(proc, 1, "must hold a mapping")


def test_arguments_for_a_script_that_dispatches_itself(run_cov, tmp_path, cov_home):
    body = OK + "\nif __name__ == '__main__':\n    ct.dispatch(wf)(1)\n"
    proc = run_cov("dispatch", str(script(tmp_path, body)), "-a", "x=2",
                   env={"COV_NO_RUNNER": "1"})
    assert_one_line_error(proc, 1, "dispatched on its own")


def test_unknown_option_is_a_usage_error(run_cov, tmp_path):
    proc = run_cov("dispatch", str(script(tmp_path, OK)), "--frobnicate")
    assert proc.returncode == 2 and "No such option" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- run ids and nodes --------------------------------------------------------------------------
def test_latest_with_no_runs(run_cov):
    assert_one_line_error(run_cov("status", "latest"), 6, "no runs under")


def test_logs_of_an_unknown_node(run_cov, copy_of_run):
    assert_one_line_error(run_cov("logs", copy_of_run.name, "99"), 6, "has no node 99")


def test_cancel_of_an_unknown_node(run_cov, tmp_path, cov_home):
    run = pending_run(run_cov, tmp_path, cov_home)
    assert_one_line_error(run_cov("cancel", run.name, "99"), 6, "has no node 99")
    assert not (run / "cancel.json").exists()


def test_result_of_an_unfinished_run(run_cov, tmp_path, cov_home):
    run = pending_run(run_cov, tmp_path, cov_home)
    assert_one_line_error(run_cov("result", run.name), 5, "is STARTING")


def test_rm_of_a_pending_run_cancels_it_first(run_cov, tmp_path, cov_home):
    run = pending_run(run_cov, tmp_path, cov_home)
    proc = run_cov("rm", run.name)
    assert proc.returncode == 0, proc.stderr
    assert not run.exists()


# -- damaged run directories --------------------------------------------------------------------
def test_truncated_result_pickle(run_cov, copy_of_run):
    """A result cut short (a machine crash before it reached the disk): one line, exit 8.
    The output node's record is the last of its worker's pack (format 2.0); result.pkl is a
    copy of it, removed here as a crash before it was made would leave it."""
    pack, offset, length = _packed_output(copy_of_run)
    with open(pack, "r+b") as f:
        f.truncate(offset + length - 10)
    (copy_of_run / "result.pkl").unlink()
    assert_one_line_error(run_cov("result", copy_of_run.name), 8, "node 3 has no complete result")
    assert_one_line_error(run_cov("result", copy_of_run.name, "--json"), 8, "no complete result")
    assert run_cov("status", copy_of_run.name).returncode == 0  # the rest still reads


def _packed_output(run: Path) -> Tuple[Path, int, int]:
    """(pack file, offset, length) of node 3's (the output node's) packed outcome."""
    from runner.rundir import RunDir

    at = RunDir(run).outcome_location(3)
    assert at, "the output node's outcome is not packed"
    return run / "results" / at[0], at[1], at[2]


def test_damaged_result_pickle(run_cov, copy_of_run):
    """Same length, garbage bytes (a bad sector, a stray write): one line, exit 8."""
    pack, offset, length = _packed_output(copy_of_run)
    with open(pack, "r+b") as f:
        f.seek(offset)
        header, payload = f.read(length).split(b"\n", 1)
        f.seek(offset + len(header) + 1)
        f.write(b"\xff" * len(payload))
    (copy_of_run / "result.pkl").unlink()
    assert_one_line_error(run_cov("result", copy_of_run.name), 8, "cannot be unpickled")


def test_garbage_line_in_the_event_log(run_cov, tmp_path, cov_home):
    run = pending_run(run_cov, tmp_path, cov_home)
    with open(run / "events.jsonl", "ab") as f:
        f.write(b"GARBAGE \x00\xff not json\n")
    assert run_cov("status", run.name, "--json").returncode == 0
    run_runner(cov_home)
    assert json.loads(run_cov("result", run.name, "--json").stdout)["result"] == 2


def test_claim_by_an_unknown_dead_runner(run_cov, tmp_path, cov_home):
    run = pending_run(run_cov, tmp_path, cov_home)
    with open(run / "events.jsonl", "a") as f:
        f.write(json.dumps({"t": time.time(), "ev": "claim", "node": 0, "attempt": 1,
                            "runner": "elsewhere:1:1", "host": "elsewhere"}) + "\n")
    run_runner(cov_home)
    assert json.loads(run_cov("result", run.name, "--json").stdout)["result"] == 2


def test_truncated_task_pack_fails_its_tasks_not_the_runner(run_cov, tmp_path, cov_home):
    broken = pending_run(run_cov, tmp_path, cov_home)
    with open(broken / "tasks.pkl", "r+b") as f:
        f.truncate(100)
    healthy = pending_run(run_cov, tmp_path / "..", cov_home)
    run_runner(cov_home)
    assert run_cov("wait", broken.name, "-q").returncode == 3
    status = json.loads(run_cov("status", broken.name, "--json").stdout)
    assert "cannot load the task's function or inputs" in status["tasks"][0]["error"]
    assert run_cov("wait", healthy.name, "-q").returncode == 0


def test_garbage_cancel_request_is_ignored(run_cov, tmp_path, cov_home):
    run = pending_run(run_cov, tmp_path, cov_home)
    (run / "cancel.json").write_text("not json {")
    run_runner(cov_home)
    assert run_cov("wait", run.name, "-q").returncode == 0


def test_garbage_heartbeat_file(run_cov, tmp_path, cov_home):
    (cov_home / ".runners").mkdir(parents=True)
    (cov_home / ".runners" / "vm-99999.json").write_text("garbage")
    proc = run_cov("dispatch", "-q", "--wait", str(script(tmp_path, OK)))
    assert proc.returncode == 0 and proc.stdout.split()[-1] == "2", proc.stderr
    assert run_cov("runner", "status").returncode in (0, 1)


def test_manifest_with_a_damaged_node_line_is_skipped_by_the_runner(run_cov, tmp_path, cov_home):
    broken = pending_run(run_cov, tmp_path, cov_home)
    text = (broken / "manifest.yaml").read_text()
    cut = text.index('  - {"id": 0') + 20
    (broken / "manifest.yaml").write_text(text[:cut] + "garbage\n" + text[cut:])
    healthy = pending_run(run_cov, tmp_path / "..", cov_home)
    run_runner(cov_home)
    assert run_cov("wait", healthy.name, "-q").returncode == 0
    assert_one_line_error(run_cov("status", broken.name), 8, "not valid YAML")


# -- what tasks return ----------------------------------------------------------------------------
def test_task_returning_an_unpicklable_object(run_cov, tmp_path):
    body = """
        import threading
        import covalent as ct

        @ct.electron
        def f():
            return threading.Lock()

        @ct.lattice
        def wf():
            return f()
    """
    proc = run_cov("dispatch", "-q", "--wait", str(script(tmp_path, body)))
    assert proc.returncode == 3
    status = json.loads(run_cov("status", "latest", "--json").stdout)
    assert status["tasks"][0]["status"] == "FAILED"
    assert status["tasks"][0]["error"] == ("the result of f cannot be pickled: TypeError: "
                                           "cannot pickle '_thread.lock' object")


def test_a_200_mb_result(run_cov, tmp_path, cov_home):
    body = """
        import covalent as ct

        @ct.electron
        def big():
            return b"x" * (200 << 20)

        @ct.electron
        def size(data):
            return len(data)

        @ct.lattice
        def wf():
            data = big()
            return [size(data), data[:4]]
    """
    proc = run_cov("dispatch", "-q", "--wait", str(script(tmp_path, body)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n", 1)[1].strip() == "[209715200, b'xxxx']"
    run = cov_home / proc.stdout.split()[0]
    from runner.outcome import read_outcome_header

    header = read_outcome_header(str(run / "results" / "0.pkl"))
    assert header["ok"] and header["len"] > 200 << 20
