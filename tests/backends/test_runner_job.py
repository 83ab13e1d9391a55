"""The runner as a Slurm job (``cov dispatch --as-job``, ``cov runner start --as-job``).

On the session's real single-node Slurm (node ``localhost``: the "login node" and the compute
node are one machine here, so the tests can also look at the job's processes). Each test has
its own runs home and cancels its runner jobs at the end. The "login-node" commands are the
``cov`` CLI run by the test, as a user runs them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

import pytest

from runner.layout import runner_job_path, runners_dir
from runner.runner_job.submit import JobRequest, job_name, render_script
from tests.backends.test_slurm import _handles, _squeue, _until
from tests.infra.executors import dispatch_script

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[2]

# A task reports the runner job it ran in: its worker's ancestors include the runner process,
# started by the job's script, whose environment has SLURM_JOB_ID (the worker itself has its
# dispatch's environment, as every local task does).
WHERE = """
        def runner_job():
            pid = os.getpid()
            while pid > 1:
                try:
                    env = open(f"/proc/{pid}/environ", "rb").read().split(b"\\0")
                except OSError:
                    return None
                for item in env:
                    if item.startswith(b"SLURM_JOB_ID="):
                        return item.split(b"=", 1)[1].decode()
                pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            return None
        """


def _record(home: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(runner_job_path(home).read_text())
    except (OSError, ValueError):
        return None


def _job_of(pid: int) -> Optional[str]:
    """The SLURM_JOB_ID in a process's environment ("" if none; None if it is gone)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"SLURM_JOB_ID="):
            return item.split(b"=", 1)[1].decode()
    return ""


class RunnerWatch:
    """What the runs home shows about runners, looked at again and again during a test."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.jobs: List[str] = []  # every job id the record named, in order
        self.runner_jobs: Dict[int, str] = {}  # heartbeat pid -> the job it runs in
        self.placeholders: Set[str] = set()  # heartbeats of runners started on this host
        self.unserved = 0  # looks that found no heartbeat (queued, or at the handover)

    def look(self) -> None:
        record = _record(self.home)
        if record and (not self.jobs or self.jobs[-1] != str(record["job_id"])):
            self.jobs.append(str(record["job_id"]))
        try:
            names = os.listdir(runners_dir(self.home))
        except FileNotFoundError:
            return
        self.unserved += not any(name.endswith(".json") for name in names)
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                info = json.loads((runners_dir(self.home) / name).read_text())
            except (OSError, ValueError):
                continue
            if str(info.get("id", "")).endswith(":starting"):
                self.placeholders.add(name)
            job = _job_of(int(info["pid"]))
            if job is not None:
                self.runner_jobs[int(info["pid"])] = job


@pytest.fixture
def job_home(slurm_home: Path) -> Iterator[Path]:  # noqa: F811
    """``slurm_home``; its runner jobs (and any job of their name) are cancelled at the end."""
    yield slurm_home
    from runner.runner_job.submit import cancel_job

    cancel_job(slurm_home)
    subprocess.run(["scancel", f"--name={job_name(slurm_home)}"], capture_output=True)


def _jobcomp_state(cluster: Any, job_id: str) -> Optional[str]:
    """A finished job's JobState from the jobcomp file."""
    try:
        lines = cluster.jobcomp_file.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if fields.get("JobId") == job_id:
            return fields.get("JobState")
    return None


# -- the sbatch script (no cluster) -------------------------------------------------------------
def test_runner_job_script_quotes_a_hostile_home() -> None:
    """Golden file; the home's quotes, spaces, ``$`` and ``%`` reach sbatch and the shell as
    plain characters."""
    home = Path("/tmp/we'ird \"home\" 100%/$x")
    text = render_script(home, JobRequest(time="00:30:00", partition="debug queue", cpus=4,
                                          margin=60, runner_args=["--poll"]))
    text = text.replace(sys.executable, "PYTHON").replace(str(REPO), "REPO")
    golden = GOLDEN / "runner_job_hostile.sh"
    if os.environ.get("COV_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert job_name(home) == job_name(Path(str(home) + "/")) != job_name(Path("/tmp/other"))


# -- user mistakes (no cluster) -----------------------------------------------------------------
def test_as_job_without_sbatch_is_one_error_line(cov_home: Path, run_cov: Callable,
                                                 tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    for args in (["dispatch", "--as-job", "workflows/hello.py"],
                 ["runner", "start", "--as-job"]):
        result = run_cov(*args, env={"PATH": str(empty)})
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: --as-job needs Slurm, and "
                                                       "sbatch is not on PATH"), result.stderr
        assert "Traceback" not in result.stderr
    assert not cov_home.exists() or not [p for p in cov_home.iterdir()
                                         if not p.name.startswith(".")]  # no run was created


@pytest.mark.parametrize("args,message", [
    (["--as-job", "--job-time", "1:xx"], "Error: --job-time '1:xx' is not a Slurm time limit"),
    (["--as-job", "--job-time", "0"], "Error: --job-time '0' is not a Slurm time limit"),
    (["--job-time", "10"], "Error: --job-time applies to the runner job only (add --as-job)"),
    (["--job-partition", "x"], "Error: --job-partition applies to the runner job only"),
], ids=["malformed", "zero", "time-without-as-job", "partition-without-as-job"])
def test_job_options_are_checked_before_anything_runs(cov_home: Path, run_cov: Callable,
                                                      args: List[str], message: str) -> None:
    result = run_cov("dispatch", "workflows/hello.py", *args)
    assert result.returncode == 1 and result.stderr.startswith(message), result.stderr
    assert not cov_home.exists() or not [p for p in cov_home.iterdir()
                                         if not p.name.startswith(".")]


def _write_record(home: Path, job_id: str, age: float) -> None:
    path = runner_job_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"job_id": job_id, "chain": [job_id], "request": {}}))
    then = time.time() - age
    os.utime(path, (then, then))


def test_a_runner_job_counts_as_live_from_its_record_where_squeue_cannot_tell(
        cov_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """Without Slurm's commands here (a copied home, a laptop): a record confirmed in the last
    10 s is a live runner without asking; one squeue cannot confirm is trusted for 2 minutes,
    then not; and starting a runner then falls back to this host, saying why, as the record's
    job cannot be resubmitted."""
    from runner.daemon import ensure_running
    from runner.liveness import live_runner, read_runners

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for age, alive in ((1, True), (60, True), (200, False)):
        _write_record(cov_home, "4242", age)
        found = live_runner(cov_home)
        assert (found is not None) == alive, (age, found)
        if alive:
            assert found["job_id"] == "4242" and found["id"] == "slurm-job:4242"
    pid = ensure_running(cov_home)
    assert pid is not None and _record(cov_home) is None
    assert [r["pid"] for r in read_runners(cov_home)] == [pid]
    assert capsys.readouterr().err == (
        "warning: runner job 4242 has ended and cannot be submitted again (--as-job needs "
        "Slurm, and sbatch is not on PATH here): starting a runner on this host instead\n")


def test_a_leaving_runner_job_sees_a_run_that_arrived_as_it_decided(
        cov_home: Path, run_cov: Callable) -> None:
    """The idle runner job removes its record, then looks for unfinished runs created since its
    last rescan (one that saw the record and counted on the job): a new one keeps it serving;
    one created before, or a finished one, does not. And the margin of the handover."""
    from runner.runner_job.serve import _arrived_since, default_margin

    before = time.time() - 1
    result = run_cov("dispatch", "-q", "workflows/hello.py", env={"COV_NO_RUNNER": "1"})
    assert result.returncode == 0, result.stderr
    assert _arrived_since(cov_home, before)
    assert not _arrived_since(cov_home, time.time() + 5)
    assert run_cov("wait", result.stdout.strip(), "-q").returncode == 0  # a runner finishes it
    assert not _arrived_since(cov_home, before)
    assert [default_margin(s) for s in (30, 60, 3600, 86400)] == [10, 20, 300, 300]


# -- on the cluster -----------------------------------------------------------------------------
def test_dispatch_as_job_hands_over_before_its_walltime_and_completes(
        job_home: Path, slurm_cluster: Any, run_cov: Callable, tmp_path: Path) -> None:
    """A 1-minute runner job and a Slurm task of 60 s: the job hands over to its successor 20 s
    before its end (a third of the walltime), the successor re-attaches to the task's job
    (never resubmitted) and finishes the run. Meanwhile the login node's ``cov status`` and
    ``cov wait`` start no runner of their own, though the run is unserved for a moment at the
    handover: every runner seen is a process of a recorded runner job."""
    run_id = dispatch_script(run_cov, tmp_path, WHERE + """
        @ct.electron
        def first():
            return runner_job()

        @ct.electron(executor="cluster")
        def slow(job):
            time.sleep(60)
            return job

        @ct.electron
        def last(job):
            return [job, runner_job()]

        @ct.lattice
        def wf():
            return last(slow(first()))
        """, "--as-job", "--job-time", "1", "--job-partition", "debug")
    watch = RunnerWatch(job_home)
    watch.look()
    first_job = watch.jobs[0]
    assert _squeue(first_job)[first_job] in ("PENDING", "RUNNING", "CONFIGURING")
    waiter = subprocess.Popen([sys.executable, "-m", "covalent_cli.cli", "wait", run_id, "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=str(REPO))
    said: List[str] = []
    deadline = time.monotonic() + 150
    while waiter.poll() is None and time.monotonic() < deadline:
        watch.look()
        status = run_cov("status", run_id, "--json")
        assert status.returncode == 0, status.stderr
        said.append(status.stderr)
        time.sleep(0.5)
    assert waiter.poll() is not None, "the run did not finish in 150 s"
    out, err = waiter.communicate()
    assert waiter.returncode == 0, err
    said.append(err)
    result = json.loads(run_cov("result", run_id, "--json").stdout)["result"]
    print(f"runner jobs {watch.jobs}; {watch.unserved} looks found no runner heartbeat")
    chain = _record(job_home)["chain"] if _record(job_home) else watch.jobs
    assert len(watch.jobs) >= 2 and watch.jobs[0] == first_job, watch.jobs
    # the first local task ran in the first runner job, the last one in its successor
    assert result[0] == first_job and result[1] == watch.jobs[-1] != first_job, (result, chain)
    assert len(_handles(job_home, run_id)[1]) == 1  # the Slurm task: one job, re-attached
    assert not [line for line in said if "started one" in line], said
    assert not watch.placeholders, watch.placeholders
    assert watch.runner_jobs and set(watch.runner_jobs.values()) <= set(watch.jobs), \
        watch.runner_jobs
    # the first job ended by itself before its limit; the last one leaves when idle
    assert _until(lambda: _jobcomp_state(slurm_cluster, first_job), 30) == "COMPLETED"
    _until(lambda: _record(job_home) is None, 40, "the last runner job to leave")
    assert _until(lambda: _jobcomp_state(slurm_cluster, watch.jobs[-1]), 30) == "COMPLETED"


def test_runner_start_as_job_serves_later_dispatches_even_while_queued(
        job_home: Path, slurm_cluster: Any, run_cov: Callable, tmp_path: Path) -> None:
    """The runner job waits in the queue (behind a job of its name: ``singleton``); a plain
    ``cov dispatch`` and ``cov status`` meanwhile start no runner on the login node (squeue
    says the job is coming), and the run completes once the job starts. (First: a runner job
    sbatch refuses is one error line, and no run is dispatched.)"""
    refused = run_cov("dispatch", "--as-job", "--job-partition", "nosuch", "workflows/hello.py")
    assert refused.returncode == 1, refused
    assert refused.stderr.startswith("Error: cannot submit the runner as a Slurm job: sbatch "
                                     "failed: ") and "partition" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not [p for p in job_home.iterdir() if not p.name.startswith(".")]  # no run
    blocker = subprocess.run(["sbatch", "--parsable", f"--job-name={job_name(job_home)}",
                              "--partition=debug", "--output=/dev/null", "--wrap", "sleep 60"],
                             capture_output=True, text=True, check=True).stdout.strip()
    started = run_cov("runner", "start", "--as-job", "--job-partition", "debug")
    assert started.returncode == 0, started.stderr
    assert "(submitted now)" in started.stdout, started.stdout
    job = _record(job_home)["job_id"]
    again = run_cov("runner", "start", "--as-job")
    assert f"Slurm job {job} (already serving the home" in again.stdout, again.stdout
    assert _squeue(job)[job] == "PENDING"
    run_id = dispatch_script(run_cov, tmp_path, WHERE + """
        @ct.electron
        def where():
            return runner_job()

        @ct.lattice
        def wf():
            return where()
        """)
    status = run_cov("status", run_id)
    listed = run_cov("runner", "status")
    assert "started one" not in status.stderr, status.stderr
    assert f"Slurm job {job}  PENDING" in listed.stdout or \
        f"Slurm job {job}  alive" in listed.stdout, listed.stdout
    assert not [n for n in os.listdir(runners_dir(job_home)) if n.endswith(".json")]
    assert _squeue(job)[job] == "PENDING"
    subprocess.run(["scancel", blocker], check=True)  # the runner job may start now
    waited = run_cov("wait", run_id, "--timeout", "60", "-q")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(run_cov("result", run_id, "--json").stdout)["result"] == job
    _until(lambda: _record(job_home) is None, 40, "the runner job to leave when idle")


def test_a_killed_runner_job_is_resubmitted_by_the_next_login_command(
        job_home: Path, slurm_cluster: Any, run_cov: Callable, tmp_path: Path) -> None:
    """``scancel`` of the runner job (as preemption or a node failure would end it) while its
    task runs: the next ``cov wait`` finds the run unserved and the record left, submits the
    runner job again (not a runner on the login node), and the run completes there."""
    marker = tmp_path / "attempts"
    run_id = dispatch_script(run_cov, tmp_path, WHERE + f"""
        @ct.electron
        def napper():
            with open({str(marker)!r}, "a") as f:
                f.write(runner_job() + "\\n")
            time.sleep(4)
            return runner_job()

        @ct.lattice
        def wf():
            return napper()
        """, "--as-job")
    first = _record(job_home)["job_id"]
    _until(lambda: marker.exists() and marker.read_text().strip(), 30, "the task to start")
    subprocess.run(["scancel", first], check=True)
    _until(lambda: _squeue(first).get(first, "COMPLETED") in ("CANCELLED", "COMPLETED"), 20)
    waited = run_cov("wait", run_id, "--timeout", "60", "-q")
    assert waited.returncode == 0, waited.stderr
    assert "no runner was serving" in waited.stderr, waited.stderr
    second = json.loads(run_cov("result", run_id, "--json").stdout)["result"]
    assert second != first and marker.read_text().split() == [first, second]
    heartbeats = [n for n in os.listdir(runners_dir(job_home)) if n.endswith(".json")]
    assert all(_job_of(int(n.rsplit("-", 1)[1][:-5])) in (None, second) for n in heartbeats)
