"""``cov logs``: live output of running local tasks (``-f``), one marked stream by default
(``cov logs RUN > f`` keeps the traceback), ``--stream``, and the failed tasks of sublattices'
child runs."""
from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import covalent_cli as ct
from tests.conftest import WORKFLOWS
from tests.live import Follower, check_live, go_file, talker

PAUSE = 4.0


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "wf.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_follow_shows_a_running_local_task_within_a_second(cov_home):
    task = ct.electron(talker)

    go = go_file()

    @ct.lattice
    def wf():
        return task(PAUSE, str(go))

    run_id = ct.dispatch(wf)()
    follower = Follower(run_id, "0")
    delays = check_live(follower, "0", PAUSE, go=go)
    print("local live-output delays (s):", delays)
    logs = cov_home / run_id / "logs"
    assert sorted(os.listdir(logs)) == ["0.err", "0.out"]  # the capture files are gone
    assert (logs / "0.out").read_text().count("\n") == 3  # ready, first, second


def test_follow_all_tasks_marks_each_line_with_its_node(cov_home):
    task = ct.electron(talker)

    go = go_file()

    @ct.lattice
    def wf():
        return [task(PAUSE, str(go)), task(0.1)]

    run_id = ct.dispatch(wf)()
    follower = Follower(run_id)
    check_live(follower, "0", PAUSE, go=go)
    texts = follower.texts()
    assert "== 0 talker (RUNNING) ==" in texts
    # nodes 1 and 2 are the first talker's parameters, 4 the second one's
    assert any(t.startswith("[3 stdout] second ") for t in texts), texts


def test_logs_of_a_failed_run_go_to_one_stream_with_the_traceback(run_cov, tmp_path):
    run_id = run_cov("dispatch", str(WORKFLOWS / "failing.py"), "-q").stdout.strip()
    assert run_cov("wait", run_id, "-q").returncode == 3
    proc = run_cov("logs", run_id)  # what `cov logs RUN > f` keeps: stdout
    assert proc.returncode == 0 and proc.stderr == ""
    text = proc.stdout
    assert "== 2 divide (FAILED) ==" in text
    assert "[2 stderr] Traceback (most recent call last):" in text
    assert "[2 stderr] ZeroDivisionError: division by zero" in text
    only = run_cov("logs", run_id, "2", "--stream", "stderr")
    assert only.stdout.startswith("Traceback (most recent call last):")  # unmarked, no header
    assert "ZeroDivisionError" in only.stdout and only.stderr == ""
    assert run_cov("logs", run_id, "2", "--stream", "stdout").stdout == ""


def test_stream_picks_one_and_both_keep_each_streams_order(run_cov, tmp_path):
    path = _script(tmp_path, """
        import sys
        import covalent as ct

        @ct.electron
        def noisy():
            for i in range(3):
                print(f"out {i}")
                print(f"err {i}", file=sys.stderr)
            print("no newline at the end", end="")
            return 1

        @ct.lattice
        def wf():
            return noisy()
    """)
    run_id = run_cov("dispatch", str(path), "-q").stdout.strip()
    assert run_cov("wait", run_id, "-q").returncode == 0
    both = run_cov("logs", run_id).stdout.splitlines()
    assert both == ["== 0 noisy (COMPLETED) ==", "[0 stdout] out 0", "[0 stdout] out 1",
                    "[0 stdout] out 2", "[0 stdout] no newline at the end",
                    "[0 stderr] err 0", "[0 stderr] err 1", "[0 stderr] err 2"]
    assert run_cov("logs", run_id, "0", "--stream", "stdout").stdout == \
        "out 0\nout 1\nout 2\nno newline at the end"
    assert run_cov("logs", run_id, "--stream", "stderr").stdout == \
        "== 0 noisy ==\nerr 0\nerr 1\nerr 2\n"


def test_logs_of_a_parent_include_its_child_runs_failed_tasks(run_cov, tmp_path):
    path = _script(tmp_path, """
        import covalent as ct

        @ct.electron
        def fine(x):
            print("fine", x)
            return x

        @ct.electron
        def broken(x):
            print("inner about to fail")
            raise RuntimeError(f"inner failure {x}")

        @ct.electron
        @ct.lattice
        def inner(x):
            return broken(fine(x))

        @ct.lattice
        def outer(x=1):
            return inner(x)
    """)
    run_id = run_cov("dispatch", str(path), "-q").stdout.strip()
    assert run_cov("wait", run_id, "-q").returncode == 3
    text = run_cov("logs", run_id).stdout
    child = next(line for line in text.splitlines() if "in child run" in line)
    child_id = child.split("in child run ")[1].split()[0]
    short = child_id[:8]
    assert child.startswith(f"== {short}:") and " broken (FAILED) " in child, text
    assert f"[{short}:" in text and "stderr] RuntimeError: inner failure 1" in text, text
    assert "inner about to fail" in text
    assert "fine 1" not in text  # the child's tasks that did not fail are not shown
    node = int(child.split()[1].split(":")[1])
    direct = run_cov("logs", child_id, str(node), "--stream", "stderr").stdout
    assert "RuntimeError: inner failure 1" in direct


def test_live_output_of_a_dead_worker_and_of_a_retried_attempt(run_cov, cov_home, tmp_path):
    """Output that went live stays the task's when its worker dies (kill -9 of itself), and a
    retry's output replaces the failed attempt's; no capture file is left behind."""
    path = _script(tmp_path, """
        import os, signal, time
        import covalent as ct

        @ct.electron
        def dies():
            print("said before dying", flush=True)
            time.sleep(0.6)  # long enough to have gone live
            os.kill(os.getpid(), signal.SIGKILL)

        @ct.electron(executor=ct.executor.LocalExecutor(retries=1))
        def flaky(marker):
            first = not os.path.exists(marker)
            open(marker, "a").close()
            print("attempt one" if first else "attempt two", flush=True)
            time.sleep(0.6)
            if first:
                raise RuntimeError("first attempt fails")
            return 2

        @ct.lattice
        def wf(marker):
            return [dies(), flaky(marker)]
    """)
    run_id = run_cov("dispatch", str(path), "-q", "-a", f"marker={tmp_path / 'marker'}").stdout.strip()
    assert run_cov("wait", run_id, "-q").returncode == 3
    logs = cov_home / run_id / "logs"
    assert (logs / "0.out").read_text() == "said before dying\n"
    flaky = next(p for p in logs.glob("*.out") if "attempt" in p.read_text())
    assert flaky.read_text() == "attempt two\n"
    deadline = time.time() + 10  # the workers let go of the run's capture files once it ended
    while [n for n in os.listdir(logs) if n.startswith(".capture-")] and time.time() < deadline:
        time.sleep(0.1)
    assert not [n for n in os.listdir(logs) if n.startswith(".capture-")]
