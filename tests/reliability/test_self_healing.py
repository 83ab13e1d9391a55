"""No run stalls silently: every command that waits on or reads an unfinished run starts a
runner when no live one serves it, and says so on one line; a runner that cannot start (a
read-only home) or dies of an error at start is reported, without a restart loop.

Real processes throughout: the runner is killed with SIGKILL or stopped with ``cov runner
stop``; the read-only home is a read-only bind mount (root ignores permission bits)."""
from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, List

import pytest

from runner.liveness import live_runner, pid_alive, read_runners
from runner.rundir import RunDir
from tests.cli.test_cli import assert_one_line_error
from tests.conftest import REPO
from tests.infra.fixtures import require_root

GATED = textwrap.dedent('''
    import os
    import time

    import covalent as ct


    @ct.electron
    def wait_for(path):
        print("waiting", flush=True)
        while not os.path.exists(path):
            time.sleep(0.05)
        return "opened"


    @ct.electron
    def shout(text):
        return text.upper()


    @ct.lattice
    def gated(path):
        return shout(wait_for(path))
''')


def wait_until(condition: Callable[[], object], timeout: float = 60.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


def started_line(run_id: str) -> str:
    return f"no runner was serving {run_id}: started one"


@pytest.fixture
def gated(run_cov, tmp_path: Path, cov_home: Path):
    """Dispatch the gated workflow (its first task waits for ``flag``); returns (id, flag)."""
    script = tmp_path / "gated.py"
    script.write_text(GATED)
    flag = tmp_path / "flag"

    def dispatch(env: dict | None = None) -> str:
        proc = run_cov("dispatch", "-q", str(script), "-a", f"path={flag}", env=env or {})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    return dispatch, flag


def task_running(home: Path, run_id: str) -> bool:
    state = RunDir(home / run_id).state()
    return any(t.status == "RUNNING" for t in state.tasks.values())


def live_pids(home: Path) -> List[int]:
    return [int(r["pid"]) for r in read_runners(home) if r["alive"]]


def kill_runners(home: Path) -> None:
    pids = live_pids(home)
    assert pids, "no runner to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(p) for p in pids), what="the runner to die")


def test_kill_9_of_the_runner_then_cov_wait_finishes(run_cov, gated, cov_home):
    """Before: the run stayed RUNNING and `cov wait` hung with no word."""
    dispatch, flag = gated
    run_id = dispatch()
    wait_until(lambda: task_running(cov_home, run_id), what="the task to run")
    kill_runners(cov_home)
    flag.touch()
    proc = run_cov("wait", run_id, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"{run_id} COMPLETED")
    assert proc.stderr.count(started_line(run_id)) == 1, proc.stderr
    assert run_cov("result", run_id).stdout.strip() == "'OPENED'"


class Terminal:
    """A pseudo-terminal for a command's stderr (so `cov wait` shows its progress line)."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        os.set_blocking(self.master, False)
        self.text = ""

    def read(self) -> str:
        try:
            while True:
                chunk = os.read(self.master, 65536)
                if not chunk:
                    break
                self.text += chunk.decode(errors="replace")
        except (BlockingIOError, OSError):
            pass
        return self.text

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


def sleeping(pid: int) -> bool:
    """In ``time.sleep`` (which a starting Python never is)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip() in ("hrtimer_nanosleep", "do_nanosleep")
    except OSError:
        return False


@pytest.mark.parametrize("command", [["wait"], ["logs", "-f"]])
def test_runner_killed_while_a_command_waits_is_replaced(gated, cov_home, command):
    """The waiter keeps checking while it waits, not only when it starts."""
    dispatch, flag = gated
    run_id = dispatch()
    wait_until(lambda: task_running(cov_home, run_id), what="the task to run")
    out, err = Terminal(), Terminal()
    waiter = subprocess.Popen([sys.executable, "-m", "covalent_cli.cli", *command, run_id],
                              cwd=str(REPO), stdout=out.slave, stderr=err.slave)
    try:
        # Before the kill, the command is in its loop: `cov wait` redraws its progress line,
        # `cov logs -f` sleeps between looks (a task's output shows only once it ends).
        if command == ["wait"]:
            wait_until(lambda: "RUNNING" in err.read(), what="the progress line")
        else:
            wait_until(lambda: sleeping(waiter.pid), what="logs -f to sleep in its loop")
        kill_runners(cov_home)
        wait_until(lambda: (out.read(), err.read(), live_pids(cov_home))[-1], what="a runner")
        flag.touch()
        wait_until(lambda: (out.read(), err.read(), waiter.poll() is not None)[-1], timeout=120,
                   what="the command to end")
    finally:
        waiter.kill()
        waiter.wait()
        out.read(), err.read()
        out.close(), err.close()
    assert waiter.returncode == 0, err.text
    if command == ["wait"]:
        assert out.text.strip().endswith(f"{run_id} COMPLETED")
    assert err.text.count(started_line(run_id)) == 1, err.text


def test_runner_stop_says_runs_resume_and_readers_resume_them(run_cov, gated, cov_home, tmp_path):
    dispatch, flag = gated
    run_id = dispatch()
    wait_until(lambda: task_running(cov_home, run_id), what="the task to run")

    def stop() -> None:
        proc = run_cov("runner", "stop")
        assert proc.returncode == 0, proc.stderr
        assert "Unfinished runs resume when a command next needs them" in proc.stdout
        assert live_runner(cov_home) is None

    stop()
    status = run_cov("status", run_id)
    assert status.returncode == 0 and "RUNNING" in status.stdout, status.stderr
    assert status.stderr.strip() == started_line(run_id)
    wait_until(lambda: live_runner(cov_home, run_id), what="the runner `cov status` started")

    stop()
    result = run_cov("result", run_id)
    assert result.returncode == 5  # not finished yet
    assert started_line(run_id) in result.stderr.splitlines()
    wait_until(lambda: live_runner(cov_home, run_id), what="the runner `cov result` started")

    stop()
    reader = tmp_path / "reader.py"
    reader.write_text("import sys\nimport covalent_cli as ct\n"
                      "print(ct.get_result(sys.argv[1], wait=True).result)\n")
    waiter = subprocess.Popen([sys.executable, str(reader), run_id], cwd=str(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_until(lambda: live_runner(cov_home, run_id), what="the runner get_result started")
        flag.touch()
        out, err = waiter.communicate(timeout=120)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    assert out.strip() == "OPENED"
    assert err.strip() == started_line(run_id)


def test_readers_of_a_served_run_start_nothing(run_cov, gated, cov_home):
    """A live runner's heartbeat is enough: no second runner, no line."""
    dispatch, flag = gated
    run_id = dispatch()
    wait_until(lambda: task_running(cov_home, run_id), what="the task to run")
    before = live_pids(cov_home)
    for command in (("status", run_id), ("result", run_id), ("logs", run_id)):
        proc = run_cov(*command)
        assert started_line(run_id) not in proc.stderr, (command, proc.stderr)
    assert live_pids(cov_home) == before
    flag.touch()
    assert run_cov("wait", run_id, "-q").returncode == 0


@pytest.fixture
def read_only_view(cov_home: Path, tmp_path: Path):
    """``cov_home`` seen through a read-only bind mount (root bypasses permission bits)."""
    require_root("a read-only bind mount")
    view = tmp_path / "ro"
    view.mkdir()
    cov_home.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(cov_home), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_cov_wait_in_a_read_only_home_is_one_error_line(run_cov, gated, cov_home, read_only_view):
    dispatch, _ = gated
    run_id = dispatch(env={"COV_NO_RUNNER": "1"})
    proc = run_cov("--home", str(read_only_view), "wait", run_id, timeout=60)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"Error: no runner serves run {run_id} and none can be started")
    assert "Read-only file system" in lines[0] and "make the runs home writable" in lines[0]
    # A reader still reads, with a warning instead of an error.
    status = run_cov("--home", str(read_only_view), "status", run_id)
    assert status.returncode == 0 and "STARTING" in status.stdout
    assert status.stderr.startswith("warning: no runner serves run")


def test_runner_dying_at_start_is_reported_without_a_restart_loop(run_cov, gated, cov_home,
                                                                 tmp_path):
    """A config the runner cannot start with: `cov wait` shows the runner.log line; readers
    after it back off instead of starting one more failing runner each."""
    dispatch, flag = gated
    run_id = dispatch(env={"COV_NO_RUNNER": "1"})
    broken = tmp_path / "broken.yaml"
    broken.write_text("runner:\n  idle_timeout: soon\n")
    env = {"COV_CONFIG": str(broken)}
    log = cov_home / ".runners" / "runner.log"

    def failures() -> int:
        return log.read_text().count("exited on an error") if log.exists() else 0

    reason = "runner.idle_timeout must be a number of seconds (found 'soon')"
    for attempt in (1, 2):  # each waiter starts one runner, sees it die, and says why
        proc = run_cov("wait", run_id, env=env, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.count("started one") == 1, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"Error: the runner started for run {run_id} exited on an "
                               f"error: config file {broken}: {reason}"), proc.stderr
        assert str(log) in last
        logged = log.read_text().strip().splitlines()[-1]
        assert f"exited on an error: config file {broken}: {reason}; fix it there" in logged
        assert failures() == attempt
    # Two failures in a row: readers hold off for 10 s, start nothing, and say why.
    for _ in range(3):
        status = run_cov("status", run_id, env=env)
        assert status.returncode == 0
        assert "the last one exited on an error" in status.stderr and reason in status.stderr
        assert "started one" not in status.stderr  # said by every start
    assert failures() == 2
    # Config fixed: a waiter tries at once (it does not wait out the readers' backoff).
    flag.touch()
    proc = run_cov("wait", run_id, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert failures() == 2


@pytest.mark.parametrize("whose", ["owned-by-nobody", "dispatched-by-a-colleague"])
def test_someone_elses_run_gets_no_runner(run_cov, gated, cov_home, whose):
    """Reading a run is not running it: for a run not ours (its directory owned by another
    account, or its manifest naming another user: a run copied here) no runner is started."""
    if whose == "owned-by-nobody":
        require_root("a run directory owned by another account")
    dispatch, _ = gated
    run_id = dispatch(env={"COV_NO_RUNNER": "1"})
    run = cov_home / run_id
    if whose == "owned-by-nobody":
        os.chown(run, 65534, 65534)
        by = "uid 65534"
    else:
        manifest = run / "manifest.yaml"
        text = manifest.read_text()
        assert "\nuser: " in text
        manifest.write_text(re.sub(r"\nuser: .*\n", "\nuser: colleague\n", text, count=1))
        by = "colleague"
    status = run_cov("status", run_id)
    assert status.returncode == 0 and status.stderr == "", status.stderr
    waited = run_cov("wait", run_id, timeout=60)
    assert_one_line_error(waited, 1, f"no runner serves run {run_id}, and it was dispatched by "
                          f"{by}: cov starts runners only for your own runs")
    assert not (cov_home / ".runners").exists()  # no runner was ever started


def test_web_ui_starts_a_runner_once_for_an_unfinished_run(gated, cov_home, capfd):
    """The UI's reads of an unfinished run start a runner, saying so once however often the
    browser asks."""
    from webui.live import RunCache

    dispatch, flag = gated
    run_id = dispatch(env={"COV_NO_RUNNER": "1"})
    cache = RunCache(cov_home)
    live = cache.get(run_id)
    live.refresh()
    wait_until(lambda: live_runner(cov_home, run_id), what="the runner the UI started")
    kill_runners(cov_home)
    wait_until(lambda: (live.refresh(), live_runner(cov_home, run_id))[1], what="a second one")
    flag.touch()
    wait_until(lambda: live.refresh().status == "COMPLETED", what="the run to end")
    err = capfd.readouterr().err
    assert err.count(started_line(run_id)) == 1, err
