"""The Slurm backend: golden sbatch scripts and parsers first, then a real Slurm cluster.

The cluster is the session's ``slurm_cluster`` (single node ``localhost``, 2+ CPUs, no
``sacct``: states come from ``squeue -t all`` and the jobcomp file). Workflows are dispatched
with the ``cov`` CLI from script files, as users do; executors poll the scheduler every 0.3 s
(the default is 30 s). Regenerate the golden scripts with ``COV_UPDATE_GOLDEN=1``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

from runner.slurm.client import (base_id, lookup, parse_config, parse_jobcomp, parse_sacct,
                                 parse_squeue)
from runner.slurm.script import array_spec, directive, render_script, shell_path
from runner.slurm.settings import SettingsError, parse_settings

GOLDEN = Path(__file__).parent / "golden"
FAST = {"poll_freq": 0.3, "missing_grace": 3}

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
                "create_unique_workdir": True, "time_limit": 90, "python_path": "/opt/py 3/bin/python"},
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
    from runner.slurm.script import python_command

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


# -- helpers for the real-cluster tests ----------------------------------------------------------
@pytest.fixture
def slurm_home(cov_home: Path, slurm_cluster: Any) -> Path:
    """``cov_home`` plus a named executor ``cluster`` (type slurm, fast polling)."""
    config = Path(os.environ["COV_CONFIG"])
    config.write_text(config.read_text() + textwrap.dedent("""\
        executors:
          cluster:
            type: slurm
            poll_freq: 0.3
            missing_grace: 3
            options:
              partition: debug
        """))
    return cov_home


def _dispatch(run_cov: Callable, tmp_path: Path, source: str, *args: str) -> str:
    script = tmp_path / f"wf_{time.monotonic_ns()}.py"
    script.write_text("import covalent as ct\nimport os, time\n" + textwrap.dedent(source))
    result = run_cov("dispatch", str(script), "-q", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _wait(run_cov: Callable, run_id: str, timeout: float = 60) -> Dict[str, Any]:
    run_cov("wait", run_id, "--timeout", str(timeout), "-q", timeout=timeout + 30)
    result = run_cov("status", run_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _result(run_cov: Callable, run_id: str) -> Any:
    result = run_cov("result", run_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["result"]


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


def _task(status: Dict[str, Any], name: str) -> Dict[str, Any]:
    return next(t for t in status["tasks"] if t["name"] == name)


# -- a real cluster ------------------------------------------------------------------------------
def test_mixed_workflow_slurm_and_local(slurm_home: Path, run_cov: Callable,
                                        tmp_path: Path) -> None:
    """Tasks on the named Slurm executor, on a SlurmExecutor object and locally, chained."""
    run_id = _dispatch(run_cov, tmp_path, """
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
    status = _wait(run_cov, run_id)
    assert status["status"] == "COMPLETED", status
    value = _result(run_cov, run_id)
    assert value["sum"] == 40 + 41 and value["local_job"] is None
    assert all(value["jobs"]) and value["jobs"][0] != value["jobs"][1]
    jobs = {t["name"]: t["job_id"] for t in status["tasks"] if t["kind"] == "electron"}
    assert jobs["on_slurm"] and jobs["on_slurm_too"] and not jobs["here"]
    assert not list((slurm_home / run_id / "slurm" / "bundles").iterdir())  # cleanup=True


def test_fan_out_of_50_goes_out_as_one_array(slurm_home: Path, run_cov: Callable,
                                             tmp_path: Path, slurm_cluster: Any) -> None:
    run_id = _dispatch(run_cov, tmp_path, """
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
    status = _wait(run_cov, run_id, timeout=80)
    assert status["status"] == "COMPLETED", status
    assert _result(run_cov, run_id) == sum(i * i for i in range(50))
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


def test_task_raising_fails_with_its_traceback(slurm_home: Path, run_cov: Callable,
                                              tmp_path: Path) -> None:
    run_id = _dispatch(run_cov, tmp_path, """
        @ct.electron(executor="cluster")
        def explode(x):
            print("about to fail")
            raise ValueError(f"bad value {x}")

        @ct.lattice
        def failing():
            return explode(7)
        """)
    status = _wait(run_cov, run_id)
    task = _task(status, "explode")
    assert status["status"] == "FAILED" and task["status"] == "FAILED", status
    assert task["exception"] == "ValueError: bad value 7"
    err = run_cov("logs", run_id, str(task["id"]), "--stream", "stderr").stderr
    assert "Traceback" in err and "raise ValueError" in err and "ValueError: bad value 7" in err
    assert "about to fail" in run_cov("logs", run_id, str(task["id"]), "--stream", "stdout").stdout


def test_options_variables_and_prerun_reach_the_job(cov_home: Path, run_cov: Callable,
                                                    tmp_path: Path, slurm_cluster: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile values, and a runs home whose path has spaces, quotes and a percent sign."""
    home = tmp_path / "run's \"home\" 100%"
    monkeypatch.setenv("COV_HOME", str(home))
    marker = tmp_path / "pre run"
    try:
        run_id = _dispatch(run_cov, tmp_path, f"""
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
        status = _wait(run_cov, run_id)
        assert status["status"] == "COMPLETED", status
        env = _result(run_cov, run_id)
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
        from runner.service import stop_runners

        stop_runners(home)


def test_time_limit_kills_the_job_and_the_task_fails_with_timeout(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:
    """``time_limit`` becomes ``--time`` (whole minutes, Slurm's unit). Waiting a minute would
    make this test slow, so once the job runs, its end time is moved to now, as an admin can
    (``scontrol update EndTime``): Slurm's own limit enforcement then kills it (TIMEOUT)."""
    run_id = _dispatch(run_cov, tmp_path, """
        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, time_limit=30,
                                                        use_srun=False))
        def slow():
            time.sleep(300)

        @ct.lattice
        def limited():
            return slow()
        """)
    job = _until(lambda: _handles(slurm_home, run_id).get(0), what="the job id")[0]
    _until(lambda: _squeue(job).get(job) == "RUNNING", what="the job to run")
    info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "TimeLimit=00:01:00" in info
    subprocess.run(["scontrol", "update", f"JobId={job}", "EndTime=now"], check=True)
    status = _wait(run_cov, run_id, timeout=60)
    task = _task(status, "slow")
    assert task["status"] == "FAILED", status
    assert f"Slurm job {job} ended TIMEOUT" in task["error"]
    assert "DUE TO TIME LIMIT" in task["error"]  # slurmstepd's line from the job's output


def test_scancel_from_outside_cancels_the_task(slurm_home: Path, run_cov: Callable,
                                              tmp_path: Path) -> None:
    run_id = _dispatch(run_cov, tmp_path, """
        @ct.electron(executor="cluster")
        def sleepy():
            time.sleep(300)

        @ct.lattice
        def victim():
            return sleepy()
        """)
    job = _until(lambda: _handles(slurm_home, run_id).get(0), what="the job id")[0]
    subprocess.run(["scancel", job], check=True)
    status = _wait(run_cov, run_id)
    assert _task(status, "sleepy")["status"] == "CANCELLED", status
    assert _squeue(job)[job] == "CANCELLED"


def test_cov_cancel_scancels_the_jobs(slurm_home: Path, run_cov: Callable,
                                      tmp_path: Path) -> None:
    run_id = _dispatch(run_cov, tmp_path, """
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
    status = _wait(run_cov, run_id)
    assert status["status"] == "CANCELLED", status
    assert {t["status"] for t in status["tasks"] if t["name"] == "sleepy"} == {"CANCELLED"}
    states = _until(lambda: (lambda s: all(v == "CANCELLED" for v in s.values()) and s)(
        _squeue(*jobs)), timeout=10, what="the jobs to be cancelled")
    assert set(states) == set(jobs)  # running and pending elements alike


def test_runner_killed_and_restarted_reattaches_without_resubmitting(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:
    from runner.liveness import read_runners

    run_id = _dispatch(run_cov, tmp_path, """
        @ct.electron(executor="cluster")
        def step(i):
            time.sleep(1.5)
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
    status = _wait(run_cov, run_id)
    assert status["status"] == "COMPLETED", status
    assert _result(run_cov, run_id) == list(range(6))
    after = _handles(slurm_home, run_id)
    assert after == before  # the same job per task, none submitted twice
    assert {t["attempt"] for t in status["tasks"] if t["name"] == "step"} == {1}
    assert set(_squeue(*jobs).values()) == {"COMPLETED"}
