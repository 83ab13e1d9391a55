"""cov in shell scripts, part 2: Ctrl-C while waiting, `cov wait`'s one line, global options
after the subcommand, completion, `cov runs` labels and filters, `cov rm` by filter, the
dispatch's next-step hints (issue #12, sections 4 and 6)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import REPO, WORKFLOWS

SLOW = """
    import time
    import covalent as ct

    @ct.electron
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    @ct.lattice
    def slow(seconds=60):
        return nap(seconds)
"""


def _slow_script(tmp_path: Path) -> str:
    path = tmp_path / "slow.py"
    path.write_text(textwrap.dedent(SLOW))
    return str(path)


def _cov_popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "covalent_cli.cli", *args], cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_foreground_job)


def _foreground_job() -> None:
    """As a terminal's foreground job: its own process group (Ctrl-C signals all of it,
    the runner the dispatch starts included, unless that one left it), SIGINT not ignored
    (a shell's background jobs ignore it)."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _status(run_cov, run_id: str) -> str:
    return json.loads(run_cov("status", run_id, "--json").stdout)["status"]


def _until_running(run_cov, run_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = json.loads(run_cov("status", run_id, "--json").stdout)["tasks"]
        if any(t["name"] == "nap" and t["status"] == "RUNNING" for t in tasks):
            return
        time.sleep(0.2)
    raise AssertionError("the task never started")


def _sleeping(pid: int) -> bool:
    """In ``time.sleep``, as a waiting cov is between looks (a starting Python never is)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip() in ("hrtimer_nanosleep", "do_nanosleep")
    except OSError:
        return False


def _interrupt(proc: subprocess.Popen) -> tuple:
    """Ctrl-C, to the process group as a terminal sends it, once the process waits (sent
    earlier, it lands in Python's start-up)."""
    deadline = time.monotonic() + 60
    while not _sleeping(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def test_ctrl_c_while_waiting_says_the_run_goes_on_and_how_to_cancel(run_cov, tmp_path):
    """Before: "Interrupted." and nothing about the run, which went on."""
    script = _slow_script(tmp_path)
    proc = _cov_popen("dispatch", script, "--wait")
    line = proc.stdout.readline()
    run_id = line.split()[-1]
    assert line.startswith("Dispatched ") and len(run_id) == 36, line
    _until_running(run_cov, run_id)
    code, _, err = _interrupt(proc)
    assert code == 130, (code, err)
    assert f"Interrupted: run {run_id} goes on without you." in err
    assert f"cov cancel {run_id[:8]}" in err and "Traceback" not in err
    assert _status(run_cov, run_id) == "RUNNING"  # only the waiting stopped

    waiter = _cov_popen("wait", run_id)
    code, out, err = _interrupt(waiter)
    assert code == 130 and out == "" and f"cov cancel {run_id[:8]}" in err, (code, out, err)
    assert _status(run_cov, run_id) == "RUNNING"
    assert run_cov("cancel", run_id).returncode == 0
    assert run_cov("wait", run_id, "-q").returncode == 4


def test_cov_wait_prints_its_outcome_once(run_cov):
    """Before: `RUN: FAILED` and the error on stderr, then `RUN FAILED` on stdout."""
    run_id = run_cov("dispatch", str(WORKFLOWS / "failing.py"), "-q").stdout.strip()
    proc = run_cov("wait", run_id)
    assert proc.returncode == 3
    assert proc.stdout == f"{run_id} FAILED\n"
    assert (proc.stdout + proc.stderr).count("FAILED") == 1, proc.stderr
    assert "The following tasks failed:\n2: divide" in proc.stderr


def test_global_options_work_after_the_subcommand(run_cov, tmp_path, cov_home):
    """Before: `cov status --home X` was "No such option: --home"."""
    other = tmp_path / "other-home"
    run_id = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "--wait", "-q", "--home",
                     str(other)).stdout.split()[0]
    assert (other / run_id).is_dir() and not (cov_home / run_id).exists()
    assert run_cov("runs", "-q", "--home", str(other)).stdout.split() == [run_id]
    assert run_cov("runs", "-q").stdout == ""  # $COV_HOME is still the default
    status = run_cov("status", "latest", "--home", str(other))
    assert status.returncode == 0 and run_id[:8] in status.stdout, status.stderr  # short ids, as git
    assert run_cov("runner", "status", "--home", str(other)).returncode in (0, 1)

    plain = run_cov("status", "nosuchrun")
    assert plain.returncode == 6 and "Traceback" not in plain.stderr
    debug = run_cov("status", "nosuchrun", "--debug")
    assert "Traceback" in debug.stderr and "RunNotFound" in debug.stderr
    run_cov("runner", "stop", "--home", str(other))


def _complete(run_cov, words: str, **env: str) -> list:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    proc = run_cov(env={"_COV_COMPLETE": "bash_complete", "COMP_WORDS": words,
                        "COMP_CWORD": str(cword), **env})
    assert proc.returncode == 0, proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines()]


def test_run_and_node_ids_complete_in_the_shell(run_cov, tmp_path):
    """Before: no completion of run or node ids."""
    run_id = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "-q", "--wait").stdout.split()[0]
    other = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "-q", "--wait").stdout.split()[0]
    assert set(_complete(run_cov, "cov status ")) == {"latest", run_id, other}
    assert _complete(run_cov, f"cov logs {run_id[:6]}") == [run_id]
    assert _complete(run_cov, f"cov rm {run_id} {other[:6]}") == [other]
    tasks = [str(t["id"]) for t in json.loads(run_cov("status", run_id, "--json").stdout)["tasks"]]
    assert len(tasks) == 3  # hello's three tasks, not its parameter or reshaping nodes
    assert _complete(run_cov, f"cov logs {run_id[:8]} ") == tasks
    assert _complete(run_cov, f"cov cancel {run_id} 2 ") == tasks
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _complete(run_cov, f"cov --home {empty} status ") == ["latest"]
    assert _complete(run_cov, f"cov status --home {empty} ") == ["latest"]
    script = run_cov(env={"_COV_COMPLETE": "bash_source"}).stdout
    assert "_cov_completion" in script and "complete " in script


def test_runs_show_and_filter_by_name_tag_and_arguments(run_cov, cov_home):
    """Before: no names or tags, the arguments nowhere in `cov runs`, and `--status bogus`
    listed nothing without a word."""
    mr = str(WORKFLOWS / "map_reduce.py")
    first = run_cov("dispatch", mr, "-a", "n=3", "--name", "sweep-3", "--tag", "sweep",
                    "--tag", "small", "-q").stdout.strip()
    second = run_cov("dispatch", mr, "-a", "n=4", "--name", "sweep-4", "--tag", "sweep",
                     "-q").stdout.strip()
    third = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "-q").stdout.strip()
    for run_id in (first, second, third):
        assert run_cov("wait", run_id, "-q").returncode == 0
    assert "name: sweep-3\ntags:\n- sweep\n- small\n" in (cov_home / first /
                                                          "manifest.yaml").read_text()

    def ids(*args: str) -> list:
        proc = run_cov("runs", "-q", *args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert ids("--tag", "sweep") == [second, first]
    assert ids("--tag", "sweep", "--tag", "small") == [first]
    assert ids("--name", "sweep-*") == [second, first]
    assert ids("--name", "sweep-4") == [second]
    assert ids("--param", "n=4") == [second]
    assert ids("--param", "n=5") == []
    assert ids("--status", "completed") == [third, second, first]

    table = run_cov("runs").stdout.splitlines()
    assert "NAME/TAGS" in table[0] and "ARGUMENTS" in table[0]
    row = next(line for line in table if line.startswith(first))
    assert re.search(r"sweep-3 #sweep #small\s+n=3$", row), row
    rows = {r["dispatch_id"]: r for r in json.loads(run_cov("runs", "--json").stdout)["runs"]}
    assert rows[first]["name"] == "sweep-3" and rows[first]["tags"] == ["sweep", "small"]
    assert rows[first]["inputs"] == {"args": [], "kwargs": {"n": "3"}}
    assert rows[third]["name"] is None and rows[third]["tags"] == []

    bad = run_cov("runs", "--status", "bogus")
    assert bad.returncode == 2
    assert "'bogus' is not a run status; valid: CANCELLED, COMPLETED" in bad.stderr
    assert "FAILED" in bad.stderr and "RUNNING" in bad.stderr


def _backdate(run_dir: Path, days: float) -> None:
    """Make a run look dispatched ``days`` ago (its manifest's ``created``)."""
    from datetime import datetime, timedelta, timezone

    manifest = run_dir / "manifest.yaml"
    text = manifest.read_text()
    when = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()
    manifest.write_text(re.sub(r"\ncreated: [^\n]*\n", f"\ncreated: '{when}'\n", text, count=1))


def test_rm_by_age_and_status_says_what_it_removes(run_cov, cov_home, tmp_path):
    """Before: `cov rm` took only ids; clearing old failed runs needed a jq pipeline."""
    old_failed = run_cov("dispatch", str(WORKFLOWS / "failing.py"), "-q").stdout.strip()
    new_failed = run_cov("dispatch", str(WORKFLOWS / "failing.py"), "-q").stdout.strip()
    old_done = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "-q").stdout.strip()
    old_running = run_cov("dispatch", _slow_script(tmp_path), "-q").stdout.strip()
    for run_id in (old_failed, new_failed, old_done):
        run_cov("wait", run_id, "-q")
    _until_running(run_cov, old_running)
    for run_id in (old_failed, old_done, old_running):
        _backdate(cov_home / run_id, days=8)

    dry = run_cov("rm", "--older-than", "7d", "--status", "FAILED", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [line for line in dry.stdout.splitlines()
                                       if line.startswith(f"Would remove {old_failed}")]
    assert len(dry.stdout.splitlines()) == 1 and (cov_home / old_failed).exists()

    gone = run_cov("rm", "--older-than", "7d", "--status", "FAILED")
    assert gone.stdout == f"Removed {old_failed}\n", gone.stderr
    assert not (cov_home / old_failed).exists()
    assert (cov_home / new_failed).exists() and (cov_home / old_done).exists()

    # By age alone: the running one is kept, saying so; the finished one goes.
    aged = run_cov("rm", "--older-than", "1w")
    assert aged.stdout == f"Removed {old_done}\n", aged.stderr
    assert f"Kept {old_running}: it is RUNNING" in aged.stderr
    assert (cov_home / old_running).exists()
    assert _status(run_cov, old_running) == "RUNNING"

    named = run_cov("rm", old_running, "-q")
    assert named.returncode == 0 and named.stdout == ""
    assert f"{old_running} is RUNNING: cancelling it first" in named.stderr
    assert not (cov_home / old_running).exists()

    assert run_cov("rm").returncode == 2  # neither ids nor a filter
    bad_age = run_cov("rm", "--older-than", "7")
    assert bad_age.returncode == 2 and "90s, 30m, 12h, 7d, 2w" in bad_age.stderr
    assert run_cov("runs", "-q").stdout.split() == [new_failed]


def test_dispatch_says_where_the_run_went_and_what_to_type_next(run_cov, cov_home):
    """Before: only the id and the result; a new user did not know where to look."""
    proc = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "--wait")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.splitlines()[0].split()[-1]
    assert proc.stdout.splitlines()[1] == "{'text': 'HELLO, WORLD!', 'letters': 10}"
    assert f"run directory  {cov_home / run_id}" in proc.stderr
    assert f"cov status {run_id[:8]}" in proc.stderr and f"cov logs {run_id[:8]}" in proc.stderr
    assert "cov ui" in proc.stderr
    quiet = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "--wait", "-q")
    assert quiet.returncode == 0 and "run directory" not in quiet.stderr
    assert os.path.isdir(cov_home / quiet.stdout.split()[0])


def test_a_script_that_dispatches_itself_gets_the_name_and_tags(run_cov, tmp_path):
    """`cov dispatch --name/--tag` label the runs the script's own ct.dispatch makes too."""
    path = tmp_path / "self.py"
    path.write_text(textwrap.dedent("""
        import covalent as ct

        @ct.electron
        def one():
            return 1

        @ct.lattice
        def wf():
            return one()

        if __name__ == "__main__":
            ct.get_result(ct.dispatch(wf)(), wait=True)
    """))
    proc = run_cov("dispatch", str(path), "--name", "mine", "--tag", "self", "-q")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert run_cov("runs", "-q", "--tag", "self", "--name", "mine").stdout.split() == [run_id]
    bad = run_cov("dispatch", str(path), "--name", " ")
    assert bad.returncode == 1 and "--name ' ': give a non-empty one-line label" in bad.stderr
