"""The local pool is a clean room: whatever a task does to its worker process, the next task,
of any run, starts as if the worker were new.

One pool worker (``runner.workers: 1``), so that the task after the one that misbehaved runs in
the same process; a probe run checks that its output is captured, that it runs in its own run's
directory, and that nothing leaked into its environment.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

from runner.rundir import RunDir

from tests.fault.harness import Home, pid_gone, wait_until

CONFIG = "runner:\n  idle_timeout: 30\n  rescan_interval: 0.5\n  heartbeat_interval: 1\n" \
         "  workers: 1\n"

BAD = textwrap.dedent('''
    import io
    import os
    import shutil
    import sys

    import covalent as ct


    @ct.electron
    def misbehave(how):
        print("before", how)
        if how == "close-sys-stdout":
            sys.stdout.close()
        elif how == "replace-sys-streams":
            sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
        elif how == "close-fd-1-and-2":
            os.close(1)
            os.close(2)
        elif how == "redirect-fd-1-and-2":
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        elif how == "environ":
            os.environ["COV_POISON"] = "1"
            os.environ.pop("COV_CLEAN_MARK", None)
        elif how == "chdir":
            os.chdir("/")
        elif how == "fork-and-return":
            return os.fork()  # returns in both processes
        elif how == "delete-cwd":
            shutil.rmtree(os.getcwd())
        return 0


    @ct.lattice
    def bad(how):
        return misbehave(how)
''')

PROBE = textwrap.dedent('''
    import os
    import sys

    import covalent as ct


    @ct.electron
    def probe(i):
        print("probe-out", i)
        print("probe-err", i, file=sys.stderr)
        os.write(1, b"probe-fd1\\n")
        return {"cwd": os.getcwd(), "poison": os.environ.get("COV_POISON"),
                "mark": os.environ.get("COV_CLEAN_MARK"), "pid": os.getpid()}


    @ct.lattice
    def probes(n=3):
        return [probe(i) for i in range(n)]
''')

POOLS = textwrap.dedent('''
    import concurrent.futures
    import multiprocessing

    import covalent as ct


    @ct.electron
    def with_pool(kind):
        if kind == "pool":
            with multiprocessing.Pool(2) as pool:
                return pool.map(abs, [-1, -2, -3])
        with concurrent.futures.ProcessPoolExecutor(2) as ex:
            return list(ex.map(abs, [-1, -2, -3]))


    @ct.lattice
    def pools(kind):
        return with_pool(kind)
''')


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    h = Home(tmp_path, config=CONFIG)
    for name, text in (("bad.py", BAD), ("probe.py", PROBE), ("pools.py", POOLS)):
        (tmp_path / name).write_text(text)
    yield h
    h.stop_all()


def dispatch(home: Home, script: str, *args: str, cwd: Optional[Path] = None,
             env: Optional[Dict[str, str]] = None, python: str = sys.executable) -> str:
    proc = subprocess.run([python, "-m", "covalent_cli.cli", "dispatch", "-q",
                           str(home.root / script), *args], capture_output=True, text=True,
                          env={**home.env, **(env or {})}, cwd=str(cwd or home.root), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def finish(home: Home, run_id: str) -> Dict:
    """Wait for the run; its status and result (``cov result --json``)."""
    home.cov("wait", run_id, "--timeout", "120", "-q", timeout=150)
    status = json.loads(home.cov("status", run_id, "--json").stdout)
    result = home.cov("result", run_id, "--json")
    status["value"] = json.loads(result.stdout)["result"] if result.returncode == 0 else None
    return status


def check_probe(home: Home, cwd: Path, mark: Optional[str] = None) -> None:
    run_id = dispatch(home, "probe.py", cwd=cwd, env={"COV_CLEAN_MARK": mark} if mark else None)
    done = finish(home, run_id)
    assert done["status"] == "COMPLETED", done
    for value in done["value"]:
        assert value["cwd"] == str(cwd)
        assert value["poison"] is None
        assert value["mark"] == mark
    outs = sorted(p.name for p in (home.path / run_id / "logs").iterdir())
    run = RunDir(home.path / run_id)  # the logs, in the logs pack (format 2.0) or files
    executed = [n.id for n in run.manifest.nodes if n.executes]
    texts = [t for t in (run.read_log(n, "stdout") for n in executed) if t]
    assert len(texts) == 3 and all("probe-out" in t and "probe-fd1" in t for t in texts), outs
    errs = [t for t in (run.read_log(n, "stderr") for n in executed) if t]
    assert len(errs) == 3 and all("probe-err" in t for t in errs), outs


@pytest.mark.parametrize("how", ["close-sys-stdout", "replace-sys-streams", "close-fd-1-and-2",
                                 "redirect-fd-1-and-2", "environ", "chdir", "fork-and-return"])
def test_a_task_that_changes_its_worker_leaves_the_next_task_clean(home, tmp_path, how):
    home.start_runner("--workers", "1", idle_timeout=30)
    work = tmp_path / "work"
    work.mkdir()
    env = {"COV_CLEAN_MARK": "m"}
    done = finish(home, dispatch(home, "bad.py", "-a", f"how={how}", cwd=work, env=env))
    assert done["status"] == "COMPLETED", done
    check_probe(home, work, mark="m")
    check_probe(home, work, mark="m")  # twice: the same worker served both
    if how == "fork-and-return":
        child = done["value"]
        assert child > 0  # the worker's own return (the copy's was 0 and went nowhere)
        assert wait_until(lambda: pid_gone(child), 10), "the forked copy lives on"


def test_a_run_whose_working_directory_was_deleted_fails_alone(home, tmp_path):
    runner = home.start_runner("--workers", "1", idle_timeout=30)
    first = tmp_path / "ci-job-1"
    first.mkdir()
    # the task deletes its own run's directory, as a CI job's cleanup would, while it runs
    done = finish(home, dispatch(home, "bad.py", "-a", "how=delete-cwd", cwd=first))
    # its own later tasks cannot start where it ran: they fail, saying why
    assert done["status"] == "COMPLETED" or "working directory" in json.dumps(done), done
    stable = tmp_path / "stable"
    stable.mkdir()
    check_probe(home, stable)  # used to FAIL: "worker could not record the outcome"
    second = tmp_path / "ci-job-2"
    second.mkdir()
    os.kill(runner.pid, signal.SIGSTOP)  # the run is dispatched, then its directory goes
    try:
        gone = dispatch(home, "probe.py", cwd=second)
        shutil.rmtree(second)
    finally:
        os.kill(runner.pid, signal.SIGCONT)
    done = finish(home, gone)
    assert done["status"] == "FAILED", done
    errors = " ".join(str(n.get("error")) for n in done["tasks"])
    assert "working directory" in errors and str(second) in errors, done
    check_probe(home, stable)


@pytest.mark.parametrize("kind", ["pool", "executor"])
def test_a_task_may_use_a_process_pool(home, kind):
    home.start_runner("--workers", "1", idle_timeout=30)
    done = finish(home, dispatch(home, "pools.py", "-a", f"kind={kind}"))
    assert done["status"] == "COMPLETED", done
    assert done["value"] == [1, 2, 3]


WHERE = textwrap.dedent('''
    import os
    import sys

    import covalent as ct


    @ct.electron
    def where():
        return {"python": sys.executable, "mark": os.environ.get("COV_CLEAN_MARK"),
                "path": os.environ.get("PATH"), "pid": os.getpid()}


    @ct.lattice
    def wf():
        return where()
''')


def test_each_run_has_the_environment_of_its_dispatch(home, tmp_path):
    """A second dispatch after ``module load`` (a changed PATH and variables) runs with its
    own environment, not with the first dispatch's that the runner's pool was made from."""
    (tmp_path / "where.py").write_text(WHERE)
    home.start_runner("--workers", "1", idle_timeout=30)
    path = os.environ["PATH"]
    first = finish(home, dispatch(home, "where.py", env={"COV_CLEAN_MARK": "a"}))["value"]
    loaded = f"/opt/modules/gcc-13/bin:{path}"
    second = finish(home, dispatch(home, "where.py", env={"COV_CLEAN_MARK": "b",
                                                          "PATH": loaded}))["value"]
    again = finish(home, dispatch(home, "where.py", env={"COV_CLEAN_MARK": "a"}))["value"]
    assert (first["mark"], first["path"]) == ("a", path)
    assert (second["mark"], second["path"]) == ("b", loaded)
    assert again["mark"] == "a"
    for run in home.path.iterdir():
        if not run.name.startswith("."):
            assert (run / "env.json").stat().st_mode & 0o777 == 0o600


def test_a_run_dispatched_from_another_virtualenv_runs_in_its_interpreter(home, tmp_path):
    (tmp_path / "where.py").write_text(WHERE)
    venv = tmp_path / "other-venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, timeout=120)
    other = str(venv / "bin" / "python")
    # the project's dependencies, as a user would have installed them into that venv too
    site = subprocess.run([other, "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "cov-deps.pth").write_text("\n".join(ours) + "\n")
    home.start_runner("--workers", "1", idle_timeout=30)
    mine = finish(home, dispatch(home, "where.py"))["value"]
    theirs = finish(home, dispatch(home, "where.py", python=other))["value"]
    assert mine["python"] == sys.executable
    assert theirs["python"] == other
    assert mine["pid"] != theirs["pid"]
    again = finish(home, dispatch(home, "where.py"))["value"]
    assert again["python"] == sys.executable
