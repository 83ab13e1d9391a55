"""The Slurm backend: golden sbatch scripts and parsers first, then a real Slurm cluster.

The cluster is the session's ``slurm_cluster`` (single node ``localhost``, 2+ CPUs, no
``sacct``: states come from ``squeue -t all`` and the jobcomp file). Workflows are dispatched
with the ``cov`` CLI from script files, as users do; executors poll the scheduler every 0.3 s
(the default is 30 s). Regenerate the golden scripts with ``COV_UPDATE_GOLDEN=1``.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from runner.backends.base import Task
from runner.backends.slurm.client import (base_id, lookup, parse_config, parse_jobcomp,
                                          parse_sacct, parse_squeue)
from runner.backends.slurm.jobs import SlurmJob, JobTable, lost_message
from runner.backends.slurm.script import (array_spec, directive, python_command,
                                          render_script, shell_path)
from runner.backends.slurm.settings import SettingsError, parse_settings
from tests.infra.executors import SlurmLogin, dispatch_script, run_result, wait_status

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[2]

# -- the generated script (no cluster) -----------------------------------------------------------
SCRIPTS: Dict[str, Dict[str, Any]] = {
    "array_defaults": dict(config={}, root="/shared/runs/4f1c", tasks=[(0, 1), (2, 1), (4, 2)],
                           array=True, name="cov-4f1c0000"),
    "single_everything": dict(
        config={"options": {"partition": "gpu", "cpus_per_task": 4, "J": "my job",
                            "comment": 'a "quoted" #1 \\ $HOME', "exclusive": True,
                            "parsable": "", "mail-type": False},
                "variables": {"OMP_NUM_THREADS": "4", "GREETING": "it's $HOME; `x`"},
                "conda_env": "my env", "prerun_commands": ["module load cuda/12", "nvidia-smi"],
                "postrun_commands": "echo done", "srun_options": {"n": 1, "gpus": 1, "x": True},
                "srun_append": "nsys profile", "remote_workdir": "~/scratch dir",
                "create_unique_workdir": True, "time_limit": 90,
                "python_path": "/opt/py 3/bin/python"},
        root="/shared/runs/4f1c", tasks=[(7, 3)], array=False, name="cov-4f1c0000-train"),
    "hostile_root": dict(
        config={"use_srun": False, "array_parallelism": 2, "options": {"time": "10"},
                "time_limit": 600},
        root="/tmp/we'ird \"home\" 100%/$x/run", tasks=[(1, 1), (3, 1), (5, 1)], array=True,
        name="cov-deadbeef"),
}


@pytest.mark.parametrize("case", sorted(SCRIPTS))
def test_sbatch_script_matches_golden_file(case: str) -> None:
    spec = SCRIPTS[case]
    settings = parse_settings(spec["config"])
    text = render_script(settings, root=spec["root"], dispatch_id="4f1c0000-1111-2222",
                         tasks=spec["tasks"], name=spec["name"],
                         python=python_command(settings, "/usr/bin/python3"), array=spec["array"])
    path = GOLDEN / f"{case}.sh"
    if os.environ.get("COV_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"regenerate with COV_UPDATE_GOLDEN=1 if intended: {path}"
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)  # valid shell


def test_script_quoting_survives_bash(tmp_path: Path) -> None:
    """Variables and the worker's paths reach the job exactly, whatever they contain."""
    weird = tmp_path / "a b'c\"d $e %f"
    settings = parse_settings({"use_srun": False, "variables": {"V": "x'y\"z $HOME `id`"},
                               "prerun_commands": ['printf "%s\\n" "$V" > "$COV_ROOT/v"']})
    text = render_script(settings, root=str(weird), dispatch_id="d", tasks=[(4, 1)],
                         name="n", python="printf '%s\\n'", array=False)
    (weird / "slurm").mkdir(parents=True)
    out = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"{weird}/slurm/worker.py",
                                       f"{weird}/slurm/bundles/4.1.pkl",
                                       f"{weird}/results/4.pkl", f"{weird}/logs/4.out",
                                       f"{weird}/logs/4.err"]
    assert (weird / "v").read_text() == "x'y\"z $HOME `id`\n"


def test_directives_and_paths() -> None:
    assert directive("partition", "debug") == "#SBATCH --partition=debug"
    assert directive("exclusive", True) == "#SBATCH --exclusive"
    assert directive("t", 5) == "#SBATCH -t 5"
    assert directive("comment", 'a "b" #c') == '#SBATCH --comment="a \\"b\\" #c"'
    assert array_spec(1, 256) == "0" and array_spec(50, 256) == "0-49"
    assert array_spec(50, 8) == "0-49%8" and array_spec(50, 0) == "0-49"
    assert shell_path("~/x y") == "\"$HOME\"/'x y'" and shell_path("rel") == '"$HOME"/rel'
    with pytest.raises(SettingsError):
        directive("comment", "two\nlines")
    with pytest.raises(SettingsError, match="sbatch option"):
        parse_settings({"options": {"bad key!": 1}})
    with pytest.raises(SettingsError, match="poll_freq"):
        parse_settings({"poll_freq": "often"})
    assert parse_settings({}).poll_freq == 30.0  # polite unless told otherwise
    assert parse_settings({"time_limit": 61}).time_minutes == 2


def test_parsers() -> None:
    assert parse_squeue("12_[3-5%2]|PENDING|JobArrayTaskLimit\n12_1|RUNNING|None\n7|TIMEOUT|"
                        "TimeLimit\n") == {
        "12_3": parse_squeue("x|PENDING|JobArrayTaskLimit")["x"],
        "12_4": parse_squeue("x|PENDING|JobArrayTaskLimit")["x"],
        "12_5": parse_squeue("x|PENDING|JobArrayTaskLimit")["x"],
        "12_1": parse_squeue("x|RUNNING|None")["x"], "7": parse_squeue("x|TIMEOUT|TimeLimit")["x"]}
    comp = parse_jobcomp(
        "JobId=5 UserId=root(0) Name=wrap JobState=COMPLETED ArrayJobId=1 ArrayTaskId=3 "
        "ExitCode=0:0\nJobId=7 Name=x JobState=TIMEOUT ExitCode=0:15\n")
    assert comp["1_3"].state == "COMPLETED" and comp["7"].state == "TIMEOUT"
    assert parse_sacct("12_1|CANCELLED by 0|0:15\n12_1.batch|CANCELLED|0:15\n")["12_1"].state \
        == "CANCELLED"
    assert parse_config("MaxArraySize            = 1001\nJobCompType = jobcomp/filetxt\n") == \
        {"MaxArraySize": "1001", "JobCompType": "jobcomp/filetxt"}
    assert base_id("12_4") == "12" and base_id("7") == "7"


def _job(node: int, job_id: str) -> SlurmJob:
    task = Task(run="/runs/r", dispatch_id="r", node=node, name="t", attempt=1, fn=(0, 0),
                inputs=[])
    return SlurmJob(task, job_id=job_id)


def test_job_table_grace_periods_and_requeue() -> None:
    """Ended without an outcome: overdue after the grace period (5 s at most when the
    scheduler killed it), once a second answer past the requeue window still shows the end;
    pending again (requeued): not ended any more."""
    table = JobTable(missing_grace=60, requeue_window=10)
    done, killed, gone, requeued = (_job(0, "7_0"), _job(1, "7_1"), _job(2, "8"),
                                    _job(3, "7_3"))
    for job in (done, killed, gone, requeued):
        table.add(job)
    answer = parse_squeue("7_0|COMPLETED|None\n7_1|TIMEOUT|TimeLimit\n7_3|FAILED|None\n")
    assert table.unknown(answer) == ["8"]
    assert table.apply(answer, now=100.0)
    assert table.confirm_at == 110.0 and table.overdue(500.0) == []  # one answer proves nothing
    assert not table.apply(answer, now=111.0)  # nothing changed; grace clocks keep running
    assert table.overdue_at == 105.0 and [j.key for j in table.overdue(111.0)] == [(
        "/runs/r", 1)]
    assert table.apply(parse_squeue("7_0|COMPLETED|\n7_1|TIMEOUT|\n7_3|PENDING|BeginTime"),
                       now=130.0)
    assert requeued.ended_since == 0.0 and gone.state == "VANISHED"
    assert {j.task.node for j in table.overdue(160.0)} == {0, 1, 2}
    table.pop(("/runs/r", 1))
    assert set(table.by_run["/runs/r"]) == {0, 2, 3}
    message = lost_message(killed, 60, "/runs/r/slurm/jobs/7_1.out", "*** DUE TO TIME LIMIT ***\n")
    assert message == ("Slurm job 7_1 ended TIMEOUT (TimeLimit) without writing an outcome; end "
                       "of the job's output (/runs/r/slurm/jobs/7_1.out):\n*** DUE TO TIME "
                       "LIMIT ***")
    assert "gone from the scheduler" in lost_message(gone, 60, "x", "")
    assert "within 60 s" in lost_message(done, 60, "x", "")


def test_job_looking_ended_while_it_is_requeued_keeps_its_task() -> None:
    """The requeue race, answer by answer: Slurm kills the old run of a requeued job and may
    show ``FAILED (NonZeroExitCode)`` before the job is PENDING again with its restart count
    one higher. Only an end that lasts past the requeue window fails the task."""
    table = JobTable(missing_grace=1, requeue_window=10)
    job = _job(0, "9")
    table.add(job)
    table.apply(parse_squeue("9|RUNNING|None|0|"), now=0.0)
    table.apply(parse_squeue("9|FAILED|NonZeroExitCode|0|"), now=1.0)
    assert table.confirm_at == 11.0 and table.overdue(9.0) == []  # grace alone: failed at 2 s
    table.apply(parse_squeue("9|FAILED|NonZeroExitCode|1|"), now=5.0)  # requeued meanwhile
    assert job.ended_since == 5.0 and job.restarts == 1 and table.confirm_at == 15.0
    table.apply(parse_squeue("9|PENDING|BeginTime|1|"), now=6.0)
    assert job.ended_since == 0.0 and table.confirm_at == float("inf")
    for state in ("REQUEUED", "REQUEUE_HOLD", "COMPLETING", "RUNNING"):
        table.apply(parse_squeue(f"9|{state}|None|1|"), now=7.0)
        assert job.ended_since == 0.0, state
    table.apply(parse_squeue("9|FAILED|NonZeroExitCode|1|"), now=20.0)  # the rerun failed
    assert table.apply(parse_squeue("9|FAILED|NonZeroExitCode|1|"), now=29.0) is False
    assert table.overdue(29.5) == []  # 9 s < the window
    table.apply(parse_squeue("9|FAILED|NonZeroExitCode|1|"), now=30.0)
    assert table.overdue(30.0) == [job] and table.overdue_at == 21.0
    assert JobTable(missing_grace=1, requeue_window=0).requeue_window == 0  # opt out


def test_array_elements_never_started_share_the_arrays_record() -> None:
    """Elements cancelled while pending show only as the array's own record (``123``)."""
    infos = parse_squeue("123|CANCELLED|None\n123_0|CANCELLED|None\n")
    assert lookup(infos, "123_7").state == "CANCELLED" and lookup(infos, "124_0") is None
    assert parse_jobcomp("JobId=123 JobState=CANCELLED ArrayJobId=123 ArrayTaskId=4294967294 "
                         "ExitCode=0:0\n")["123"].state == "CANCELLED"


# -- helpers for the real-cluster tests (slurm_home: tests/infra/executors.py) -------------------
@pytest.fixture(scope="module")
def time_limited_run(slurm_cluster: Any, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[Dict[str, Any]]:
    """A run whose task outlives its ``time_limit``, started before the other cluster tests
    and checked after them (``test_time_limit_...``), because Slurm enforces time limits on a
    30-second tick: waiting in line would cost up to 30 s. ``time_limit=30`` becomes
    ``--time=1`` (whole minutes, Slurm's unit); once the job runs, a thread moves its end time
    to now, as an admin can (``scontrol update EndTime``), so Slurm's own enforcement kills it
    at the next tick without the minute's wait. The run has its own runs home."""
    base = tmp_path_factory.mktemp("time-limit")
    home, config = base / "home", base / "config.yaml"
    config.write_text("runner:\n  idle_timeout: 3\n  rescan_interval: 0.5\n")
    env = {**os.environ, "COV_HOME": str(home), "COV_CONFIG": str(config)}

    def cov(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "covalent_cli.cli", *args], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=str(REPO))

    found: Dict[str, Any] = {"cov": cov, "home": home}
    found["run_id"] = dispatch_script(cov, base, """
        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, time_limit=30,
                                                        use_srun=False))
        def slow():
            time.sleep(300)

        @ct.lattice
        def limited():
            return slow()
        """)

    def shorten() -> None:
        try:
            job = _until(lambda: _handles(home, found["run_id"]).get(0), what="the job id")[0]
            _until(lambda: _squeue(job).get(job) == "RUNNING", what="the job to run")
            found["job"] = job
            found["scontrol"] = subprocess.run(["scontrol", "show", "job", job],
                                               capture_output=True, text=True).stdout
            subprocess.run(["scontrol", "update", f"JobId={job}", "EndTime=now"], check=True)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            found["error"] = exc

    thread = threading.Thread(target=shorten, daemon=True)
    thread.start()
    yield found
    thread.join(timeout=60)
    from runner.daemon import stop_runners

    stop_runners(home)


def _events(home: Path, run_id: str) -> List[Dict[str, Any]]:
    lines = (home / run_id / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _handles(home: Path, run_id: str) -> Dict[int, List[str]]:
    """node -> every job id recorded for it (a resubmission would add a second one)."""
    found: Dict[int, List[str]] = {}
    for event in _events(home, run_id):
        if event["ev"] == "handle" and "job_id" in event["handle"]:
            ids = found.setdefault(event["node"], [])
            if event["handle"]["job_id"] not in ids:
                ids.append(event["handle"]["job_id"])
    return found


def _until(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def _squeue(*job_ids: str) -> Dict[str, str]:
    """Each job's state per ``squeue -t all`` (elements never started share the array's)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-r", "-j",
                          ",".join(sorted({base_id(j) for j in job_ids})), "-o", "%i|%T|"],
                         capture_output=True, text=True).stdout
    infos = parse_squeue(out)
    return {j: info.state for j in job_ids for info in [lookup(infos, j)] if info is not None}


def _requeue(job: str) -> None:
    """``scontrol requeue``, then start the job again as soon as Slurm allows. Slurm holds a
    requeued job until its old run's credential expires (``cred_expire``: 120 s by default, 5 s
    on the test cluster): a job started earlier (``StartTime=now`` at once) is refused by
    slurmd ("Job credential revoked") and Slurm ends it FAILED (NonZeroExitCode) for good.
    That was this test's flakiness. The job is released only past its EligibleTime."""
    subprocess.run(["scontrol", "requeue", job], check=True)
    _until(lambda: _squeue(job).get(job) == "PENDING", what="the job to be requeued")
    info = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True,
                          text=True).stdout
    eligible = datetime.fromisoformat(info.split("EligibleTime=", 1)[1].split()[0])
    _until(lambda: datetime.now() > eligible, what="the requeued job to be eligible")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)


def _task(status: Dict[str, Any], name: str) -> Dict[str, Any]:
    return next(t for t in status["tasks"] if t["name"] == name)


# -- a real cluster ------------------------------------------------------------------------------
@pytest.mark.usefixtures("time_limited_run")  # starts it now; checked near the end
def test_mixed_workflow_slurm_and_local(slurm_home: Path, run_cov: Callable,
                                        tmp_path: Path) -> None:
    """Tasks on the named Slurm executor, on a SlurmExecutor object and locally, chained."""
    run_id = dispatch_script(run_cov, tmp_path, """
        obj = ct.executor.SlurmExecutor(poll_freq=0.3, missing_grace=3, use_srun=False)

        @ct.electron(executor="cluster")
        def on_slurm(x):
            return {"x": x * 10, "job": os.environ.get("SLURM_JOB_ID")}

        @ct.electron(executor=obj)
        def on_slurm_too(d):
            return {"x": d["x"] + 1, "job": os.environ.get("SLURM_JOB_ID")}

        @ct.electron
        def here(a, b):
            return {"sum": a["x"] + b["x"], "local_job": os.environ.get("SLURM_JOB_ID"),
                    "jobs": [a["job"], b["job"]]}

        @ct.lattice
        def mixed(n=4):
            a = on_slurm(n)
            return here(a, on_slurm_too(a))
        """)
    status = wait_status(run_cov, run_id)
    assert status["status"] == "COMPLETED", json.dumps(status["tasks"])
    value = run_result(run_cov, run_id)
    assert value["sum"] == 40 + 41 and value["local_job"] is None
    assert all(value["jobs"]) and value["jobs"][0] != value["jobs"][1]
    jobs = {t["name"]: t["job_id"] for t in status["tasks"] if t["kind"] == "electron"}
    assert jobs["on_slurm"] and jobs["on_slurm_too"] and not jobs["here"]
    assert not list((slurm_home / run_id / "slurm" / "bundles").iterdir())  # cleanup=True


def test_task_raising_fails_with_its_traceback(slurm_home: Path, run_cov: Callable,
                                              tmp_path: Path) -> None:
    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor="cluster")
        def explode(x):
            print("about to fail")
            raise ValueError(f"bad value {x}")

        @ct.lattice
        def failing():
            return explode(7)
        """)
    status = wait_status(run_cov, run_id)
    task = _task(status, "explode")
    assert status["status"] == "FAILED" and task["status"] == "FAILED", status
    assert task["exception"] == "ValueError: bad value 7"
    err = run_cov("logs", run_id, str(task["id"]), "--stream", "stderr").stdout
    assert "Traceback" in err and "raise ValueError" in err and "ValueError: bad value 7" in err
    assert "about to fail" in run_cov("logs", run_id, str(task["id"]), "--stream", "stdout").stdout


def test_retry_is_a_new_job_and_the_failed_outcome_is_not_taken_for_its_result(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    run_id = dispatch_script(run_cov, tmp_path, f"""
        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, missing_grace=1,
                                                        use_srun=False, retries=1))
        def flaky(path={str(marker)!r}):
            if not os.path.exists(path):
                open(path, "w").close()
                raise RuntimeError("the first attempt fails")
            return "second attempt"

        @ct.lattice
        def retried():
            return flaky()
        """)
    status = wait_status(run_cov, run_id)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == "second attempt"
    assert _task(status, "flaky")["attempt"] == 2
    assert len(_handles(slurm_home, run_id)[0]) == 2  # two jobs, one per attempt


def test_options_variables_and_prerun_reach_the_job(cov_home: Path, run_cov: Callable,
                                                    tmp_path: Path, slurm_cluster: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile values, and a runs home whose path has spaces, quotes and a percent sign."""
    home = tmp_path / "run's \"home\" 100%"
    monkeypatch.setenv("COV_HOME", str(home))
    marker = tmp_path / "pre run"
    try:
        run_id = dispatch_script(run_cov, tmp_path, f"""
            ex = ct.executor.SlurmExecutor(
                poll_freq=0.3, missing_grace=3,
                options={{"job-name": "cov job 'one' #1", "comment": 'say "hi" \\\\ $HOME',
                         "partition": "debug", "cpus_per_task": 1}},
                variables={{"GREETING": "it's $HOME `x`"}},
                prerun_commands=["echo \\"pre $COV_NODE $SLURM_JOB_NAME\\" > {str(marker)!r}"],
                postrun_commands=["echo post-ran"], time_limit=300)

            @ct.electron(executor=ex)
            def inspect():
                return {{k: os.environ.get(k) for k in ("SLURM_JOB_NAME", "GREETING",
                                                        "SLURM_CPUS_PER_TASK", "SLURM_JOB_ID")}}

            @ct.lattice
            def options():
                return inspect()
            """)
        status = wait_status(run_cov, run_id)
        assert status["status"] == "COMPLETED", status
        env = run_result(run_cov, run_id)
        assert env["SLURM_JOB_NAME"] == "cov job 'one' #1"
        assert env["GREETING"] == "it's $HOME `x`"
        assert env["SLURM_CPUS_PER_TASK"] == "1"
        assert marker.read_text() == "pre 0 cov job 'one' #1\n"
        info = subprocess.run(["scontrol", "show", "job", env["SLURM_JOB_ID"]],
                              capture_output=True, text=True).stdout
        assert 'Comment=say "hi" \\ $HOME' in info and "TimeLimit=00:05:00" in info
        log = home / run_id / "slurm" / "jobs" / f"{env['SLURM_JOB_ID']}.out"
        assert log.read_text() == "post-ran\n"  # the job's own output, not the task's
    finally:
        from runner.daemon import stop_runners

        stop_runners(home)


def test_scancel_from_outside_cancels_the_task(slurm_home: Path, run_cov: Callable,
                                              tmp_path: Path) -> None:
    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor="cluster")
        def sleepy():
            time.sleep(300)

        @ct.lattice
        def victim():
            return sleepy()
        """)
    job = _until(lambda: _handles(slurm_home, run_id).get(0), what="the job id")[0]
    subprocess.run(["scancel", job], check=True)
    status = wait_status(run_cov, run_id)
    assert _task(status, "sleepy")["status"] == "CANCELLED", status
    assert _squeue(job)[job] == "CANCELLED"


def test_cov_cancel_scancels_the_jobs(slurm_home: Path, run_cov: Callable,
                                      tmp_path: Path) -> None:
    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor="cluster")
        def sleepy(i):
            time.sleep(300)

        @ct.lattice
        def many():
            return [sleepy(i) for i in range(4)]
        """)
    handles = _until(lambda: len(_handles(slurm_home, run_id)) == 4 and
                     _handles(slurm_home, run_id), what="4 job ids")
    jobs = [ids[0] for ids in handles.values()]
    _until(lambda: "RUNNING" in _squeue(*jobs).values(), what="a running job")
    assert run_cov("cancel", run_id).returncode == 0
    status = wait_status(run_cov, run_id)
    assert status["status"] == "CANCELLED", status
    assert {t["status"] for t in status["tasks"] if t["name"] == "sleepy"} == {"CANCELLED"}
    states = _until(lambda: (lambda s: all(v == "CANCELLED" for v in s.values()) and s)(
        _squeue(*jobs)), timeout=10, what="the jobs to be cancelled")
    assert set(states) == set(jobs)  # running and pending elements alike


def test_runner_killed_and_restarted_reattaches_without_resubmitting(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:
    from runner.liveness import read_runners

    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor="cluster")
        def step(i):
            time.sleep(1)
            return i

        @ct.electron
        def collect(xs):
            return xs

        @ct.lattice
        def restart(n=6):
            return collect([step(i) for i in range(n)])
        """)
    before = _until(lambda: len(_handles(slurm_home, run_id)) == 6 and
                    _handles(slurm_home, run_id), what="6 job ids")
    jobs = [ids[0] for ids in before.values()]
    _until(lambda: (lambda s: "RUNNING" in s and "PENDING" in s)(list(_squeue(*jobs).values())),
           what="jobs both running and queued")
    runner = next(r for r in read_runners(slurm_home) if r["alive"])
    os.kill(int(runner["pid"]), signal.SIGKILL)
    _until(lambda: not any(r["alive"] for r in read_runners(slurm_home)), timeout=10,
           what="the runner to die")
    assert run_cov("runner", "start").returncode == 0
    status = wait_status(run_cov, run_id)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == list(range(6))
    after = _handles(slurm_home, run_id)
    assert after == before  # the same job per task, none submitted twice
    assert {t["attempt"] for t in status["tasks"] if t["name"] == "step"} == {1}
    assert set(_squeue(*jobs).values()) == {"COMPLETED"}


def test_ssh_mode_submits_through_the_login_node(slurm_login: SlurmLogin, sshd_host: Any,
                                                 cov_home: Path, run_cov: Callable,
                                                 tmp_path: Path) -> None:
    """``address`` set: sbatch/squeue run over SSH as the remote user (``covtest``); bundles go
    up and outcomes and logs come back (no shared filesystem); cloudpickle is shipped by
    ``runner.ssh.remote.prepare`` if the cluster's Python lacks it. The login node's
    environment (here ``SLURM_CONF``) comes from ``bashrc_path``, as with Covalent's plugin."""
    workdir = f"/home/{sshd_host.username}/cov-slurm-test"
    run_id = dispatch_script(run_cov, tmp_path, f"""
        cluster = ct.executor.SlurmExecutor(
            {slurm_login.executor_args(workdir)},
            poll_freq=0.3, missing_grace=3, options={{"partition": "debug"}})

        @ct.electron(executor=cluster)
        def where(i):
            import getpass
            print(f"task {{i}} says hi")
            return [getpass.getuser(), os.getcwd(), os.environ["SLURM_JOB_ID"], i * 2]

        @ct.electron
        def gather(rows):
            return rows

        @ct.lattice
        def remote(n=3):
            return gather([where(i) for i in range(n)])
        """)
    status = wait_status(run_cov, run_id, timeout=60)
    assert status["status"] == "COMPLETED", status
    rows = run_result(run_cov, run_id)
    assert [r[3] for r in rows] == [0, 2, 4]
    assert {r[0] for r in rows} == {sshd_host.username} and {r[1] for r in rows} == {workdir}
    handles = _handles(cov_home, run_id)
    assert len({base_id(ids[0]) for ids in handles.values()}) == 1  # one array
    node = _task(status, "where")["id"]
    assert "says hi" in run_cov("logs", run_id, str(node), "--stream", "stdout").stdout
    remote = Path(workdir) / ".cov" / run_id
    assert (remote / "slurm" / "worker.py").is_file()
    _until(lambda: not list((remote / "slurm" / "bundles").iterdir()), timeout=5,
           what="the remote bundles to be cleaned up")


def test_requeued_job_reruns_or_exits_if_its_task_already_succeeded(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:
    """A running job requeued (as preemption does) runs the task again and the task completes
    with the same job; a finished job requeued finds its outcome and exits without running the
    task a third time. See ``_requeue`` for the job's way back to the queue."""
    marker = tmp_path / "starts"
    run_id = dispatch_script(run_cov, tmp_path, f"""
        @ct.electron(executor="cluster")
        def once(path={str(marker)!r}):
            with open(path, "a") as f:
                f.write("start\\n")
            with open(path) as f:
                if f.read().count("start") == 1:
                    time.sleep(60)  # the first run is requeued while here
            return "done"

        @ct.lattice
        def requeued():
            return once()
        """)

    job = _until(lambda: _handles(slurm_home, run_id).get(0), what="the job id")[0]
    _until(lambda: marker.exists() and _squeue(job).get(job) == "RUNNING", what="a running job")
    _requeue(job)
    status = wait_status(run_cov, run_id)
    assert status["status"] == "COMPLETED", json.dumps(_task(status, "once"))
    assert run_result(run_cov, run_id) == "done"
    assert marker.read_text() == "start\n" * 2
    assert _handles(slurm_home, run_id) == {0: [job]} and _task(status, "once")["attempt"] == 1
    _requeue(job)  # finished: the worker sees the successful outcome and exits at once
    _until(lambda: (lambda info: "Restarts=2" in info and "JobState=COMPLETED" in info)(
        subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True,
                       text=True).stdout), what="the twice-requeued job to complete")
    assert marker.read_text() == "start\n" * 2


def _squeue_tap(directory: Path) -> Path:
    """A ``slurm_path`` whose ``squeue`` is the real one, each answer line also appended to
    ``directory/answers`` after the time it was given: the test sees what the runner saw."""
    directory.mkdir()
    for name in ("sbatch", "scancel", "scontrol", "sacct"):
        found = shutil.which(name)
        if found:
            (directory / name).symlink_to(found)
    answers = directory / "answers"
    (directory / "squeue").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        out=$({shlex.quote(str(shutil.which("squeue")))} "$@"); rc=$?
        printf '%s\\n' "$out"
        now=$(date +%s.%N)
        printf '%s\\n' "$out" | sed "s/^/$now /" >> {shlex.quote(str(answers))}
        exit $rc
        """))
    (directory / "squeue").chmod(0o755)
    return answers


def _answers(path: Path, job: str) -> List[Tuple[float, str, int]]:
    """(time, state, restart count) of each squeue answer line about ``job``."""
    found = []
    for line in path.read_text().splitlines() if path.exists() else ():
        stamp, _, rest = line.partition(" ")
        parts = rest.split("|")
        if len(parts) >= 3 and parts[0] == job:
            found.append((float(stamp), parts[1], int(parts[3]) if parts[3:4] != [""] and
                          len(parts) > 3 else 0))
    return found


def test_job_looking_failed_then_requeued_within_the_window_keeps_its_task(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:
    """The requeue race on purpose: the job first ends FAILED (NonZeroExitCode) without an
    outcome, as a requeued job's killed run can look, and the test lets the runner see that
    answer again and again, longer than ``missing_grace``, before it requeues the job. The
    task must not fail in that window; the requeued job runs it to completion."""
    answers = _squeue_tap(tmp_path / "slurm-bin")
    mark = shlex.quote(str(tmp_path / "first run failed"))
    first_run_fails = f"[ -e {mark} ] || {{ touch {mark}; exit 3; }}"
    run_id = dispatch_script(run_cov, tmp_path, f"""
        @ct.electron(executor=ct.executor.SlurmExecutor(
            poll_freq=0.3, missing_grace=1, requeue_window=30, use_srun=False,
            slurm_path={str(tmp_path / "slurm-bin")!r},
            prerun_commands=[{first_run_fails!r}]))
        def survivor():
            return "ran after the requeue"

        @ct.lattice
        def raced():
            return survivor()
        """)
    job = _until(lambda: _handles(slurm_home, run_id).get(0), what="the job id")[0]

    def task_status() -> str:
        return _task(json.loads(run_cov("status", run_id, "--json").stdout), "survivor")["status"]

    def failed_long_enough() -> bool:  # answers showing FAILED, spanning > missing_grace
        seen = [t for t, state, _ in _answers(answers, job) if state == "FAILED"]
        return len(seen) >= 3 and seen[-1] - seen[0] > 1.5 or task_status() == "FAILED"

    _until(failed_long_enough, what="the runner to see the job FAILED for longer than 1 s")
    assert task_status() not in ("FAILED", "COMPLETED")
    _requeue(job)
    status = wait_status(run_cov, run_id)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == "ran after the requeue"
    assert _handles(slurm_home, run_id) == {0: [job]} and _task(status, "survivor")["attempt"] == 1
    assert "Restarts=1" in subprocess.run(["scontrol", "show", "job", "-o", job],
                                          capture_output=True, text=True).stdout


def test_time_limit_kills_the_job_and_the_task_fails_with_timeout(
        time_limited_run: Dict[str, Any]) -> None:
    """See ``time_limited_run``: the task's job was killed by Slurm for its time limit."""
    cov, run_id = time_limited_run["cov"], time_limited_run["run_id"]
    status = wait_status(cov, run_id, timeout=60)
    assert "error" not in time_limited_run, time_limited_run.get("error")
    job = time_limited_run["job"]
    assert "TimeLimit=00:01:00" in time_limited_run["scontrol"]  # time_limit=30 s -> 1 min
    task = _task(status, "slow")
    assert task["status"] == "FAILED", status
    assert f"Slurm job {job} ended TIMEOUT" in task["error"]
    assert "DUE TO TIME LIMIT" in task["error"]  # slurmstepd's line from the job's output


def test_fan_out_of_50_goes_out_as_one_array(slurm_home: Path, run_cov: Callable,
                                             tmp_path: Path, slurm_cluster: Any) -> None:
    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, use_srun=False))
        def square(i):
            return i * i

        @ct.electron
        def add(xs):
            return sum(xs)

        @ct.lattice
        def fan(n=50):
            return add([square(i) for i in range(n)])
        """)
    status = wait_status(run_cov, run_id, timeout=80)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == sum(i * i for i in range(50))
    handles = _handles(slurm_home, run_id)
    assert len(handles) == 50 and all(len(ids) == 1 for ids in handles.values())
    arrays = {base_id(ids[0]) for ids in handles.values()}
    assert len(arrays) == 1, arrays  # one sbatch for the whole fan-out
    (array,) = arrays
    assert sorted(int(ids[0].split("_")[1]) for ids in handles.values()) == list(range(50))
    # The scheduler's side: 50 elements of that array, and no other job of this run.
    states = _squeue(*[ids[0] for ids in handles.values()])
    assert len(states) == 50 and set(states.values()) == {"COMPLETED"}
    ours = [line for line in subprocess.run(["squeue", "-h", "-t", "all", "-r", "-o", "%i|%j"],
                                            capture_output=True, text=True).stdout.split()
            if line.endswith(f"|cov-{run_id[:8]}")]
    assert len(ours) == 50 and {base_id(line.split("|")[0]) for line in ours} == {array}
    comp = parse_jobcomp(slurm_cluster.jobcomp_file.read_text())
    assert sum(1 for key in comp if key.startswith(f"{array}_")) == 50
