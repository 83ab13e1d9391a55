"""Slurm resources, multi-rank tasks, dead jobs and held jobs, on the real single-node cluster.

Named resources are checked at dispatch (an unknown one is refused with the valid names); a job
whose worker dies (killed, no Python) is reported from the outcome its script writes, within
seconds although the executor asks the scheduler only every 30 s; ``ntasks=2`` under ``srun``
runs the function on both ranks and takes rank 0's result; a held job shows its job id and
Slurm's reason in ``cov status``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from runner.backends.slurm.jobs import SlurmJob, exit_message
from runner.backends.slurm.script import render_script
from runner.backends.slurm.settings import SettingsError, parse_settings
from tests.backends.test_slurm import _events, _handles, _squeue, _task, _until
from tests.infra.executors import dispatch_script, wait_status
from tests.backends.test_slurm import GOLDEN, _job


# -- no cluster ----------------------------------------------------------------------------------
def test_named_resources_become_sbatch_options_and_win_over_options() -> None:
    settings = parse_settings({"cpus_per_task": 4, "mem": "8G", "gpus": "a100:2",
                               "time": "01:30:00", "partition": "gpu", "account": "proj1",
                               "qos": "long", "constraint": "skylake&ib", "ntasks": 2,
                               "options": {"partition": "short", "exclusive": True}})
    assert settings.options == (
        ("cpus-per-task", "4"), ("mem", "8G"), ("gpus", "a100:2"), ("time", "01:30:00"),
        ("partition", "gpu"), ("account", "proj1"), ("qos", "long"),
        ("constraint", "skylake&ib"), ("ntasks", "2"), ("exclusive", True))
    text = render_script(settings, root="/r", dispatch_id="d", tasks=[(1, 1)], name="n",
                         python="python3", array=False)
    assert "#SBATCH --time=01:30:00\n" in text and "#SBATCH --partition=gpu\n" in text
    assert '#SBATCH --constraint="skylake&ib"\n' in text  # quoted as sbatch reads it
    assert "export CUDA_VISIBLE_DEVICES" in text  # a GPU request: Slurm's GPU ids if unset


@pytest.mark.parametrize("config, message", [
    ({"cpu_per_task": 2}, "unknown Slurm executor parameter 'cpu_per_task' (did you mean "
                          "'cpus_per_task'?); valid: account, address"),
    ({"mem": "lots"}, "'mem' must be a size such as 8G"),
    ({"time": "soon"}, "'time' must be a time limit"),
    ({"ntasks": 0}, "'ntasks' must be a whole number above 0"),
    ({"gpus": "a100:x"}, "'gpus' must be a number of GPUs"),
    ({"max_requeues": -1}, "'max_requeues' must be a whole number"),
])
def test_bad_resources_are_refused_with_what_to_write(config: Dict[str, Any], message: str
                                                      ) -> None:
    with pytest.raises(SettingsError) as error:
        parse_settings(config)
    assert message in str(error.value)


def test_requeue_and_ranks_script_matches_golden_file() -> None:
    settings = parse_settings({"max_requeues": 2, "signal_delay": 120, "ntasks": 4,
                               "partition": "debug", "time": "00:30:00"})
    text = render_script(settings, root="/shared/runs/4f1c", dispatch_id="4f1c0000-1111-2222",
                         tasks=[(2, 1), (5, 3)], name="cov-4f1c0000", python="python3",
                         array=True)
    path = GOLDEN / "requeue_ranks.sh"
    if os.environ.get("COV_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"regenerate with COV_UPDATE_GOLDEN=1 if intended: {path}"
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)


def test_the_job_script_passes_the_warning_on_and_keeps_the_workers_status(
        tmp_path: Path) -> None:
    """The script as Slurm runs it, with a stand-in worker: USR1 sent to the batch shell (what
    ``--signal=B:USR1@N`` does) reaches the worker, which goes on and exits 5; the script
    exits with that status, and writes no outcome of its own after a warning."""
    (tmp_path / "results").mkdir()
    (tmp_path / "slurm").mkdir()
    worker = tmp_path / "slurm" / "worker.py"
    worker.write_text("import signal, sys, time\n"
                      "got = []\n"
                      "signal.signal(signal.SIGUSR1, lambda *a: got.append(1))\n"
                      "open(sys.argv[3], 'w').write('ready')\n"
                      "while not got:\n    time.sleep(0.05)\n"
                      "open(sys.argv[3], 'a').write(' warned')\n"
                      "sys.exit(5)\n")
    (tmp_path / "logs").mkdir()
    text = render_script(parse_settings({"max_requeues": 1, "use_srun": False}),
                         root=str(tmp_path), dispatch_id="d", tasks=[(1, 1)], name="n",
                         python=sys.executable, array=False)
    proc = subprocess.Popen(["bash", "-c", text], env={**os.environ, "SLURM_JOB_ID": "7"})
    out = tmp_path / "logs" / "1.out"
    _until(lambda: out.exists() and out.read_text() == "ready", timeout=20, what="the worker")
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=20) == 5
    assert out.read_text() == "ready warned"
    assert not (tmp_path / "results" / "1.pkl").exists()  # warned: the time limit decides


def test_gpu_fallback_sets_cuda_visible_devices_from_slurms_ids(tmp_path: Path) -> None:
    """Where Slurm has no gres.conf to set CUDA_VISIBLE_DEVICES, the job uses its GPU ids;
    a value Slurm set is kept."""
    text = render_script(parse_settings({"gres": "gpu:2", "use_srun": False}), root=str(tmp_path),
                         dispatch_id="d", tasks=[(1, 1)], name="n",
                         python='echo "$CUDA_VISIBLE_DEVICES" #', array=False)
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_GPUS": "2,3"}
    out = subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "2,3"
    env["CUDA_VISIBLE_DEVICES"] = "0,1"
    out = subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "0,1"


def test_a_dead_workers_exit_status_is_explained() -> None:
    job = _job(0, "41")
    killed = exit_message(job, 137, "/r/slurm/jobs/41.out",
                          "slurmstepd: error: Detected 1 oom_kill event in StepId=41.0\n")
    assert killed.startswith("Slurm job 41 ended OUT_OF_MEMORY: the task's process exited "
                             "with status 137 (killed by SIGKILL (out of memory, or kill -9))")
    assert "oom_kill event" in killed
    missing = exit_message(job, 127, "/r/slurm/jobs/41.out", "")
    assert "status 127 (no such command: check python_path or conda_env)" in missing


def test_dispatch_refuses_an_unknown_slurm_parameter(cov_home: Path, run_cov: Callable,
                                                     tmp_path: Path) -> None:
    script = tmp_path / "wf.py"
    script.write_text("import covalent as ct\n\n"
                      "@ct.electron(executor=ct.executor.SlurmExecutor(cpu_per_task=2))\n"
                      "def f():\n    return 1\n\n"
                      "@ct.lattice\ndef wf():\n    return f()\n")
    result = run_cov("dispatch", str(script))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "unknown Slurm executor parameter 'cpu_per_task'" in lines[0], result.stderr
    assert "cpus_per_task" in lines[0] and "partition" in lines[0] and "mem" in lines[0]
    assert not list(cov_home.glob("*/manifest.yaml"))  # nothing was dispatched


# -- the real cluster ----------------------------------------------------------------------------
def _ended_at(home: Path, run_id: str, node: int) -> float:
    ends = [e["t"] for e in _events(home, run_id) if e["ev"] == "end" and e["node"] == node]
    return float(ends[-1])


@pytest.mark.parametrize("use_srun", [False, True], ids=["batch-step", "srun"])
def test_a_killed_worker_is_reported_from_its_jobs_script_at_once(
        slurm_home: Path, run_cov: Callable, tmp_path: Path, use_srun: bool) -> None:
    """``poll_freq=30``: the scheduler is asked every 30 s or more, so only the outcome the
    job script writes when its worker dies can tell the runner within seconds. The worker is
    killed with SIGKILL (as the kernel's OOM killer does); the latency from the kill to the
    task's end event is printed (the target: 15 s after Slurm records the end)."""
    pid_file = tmp_path / "pid"
    run_id = dispatch_script(run_cov, tmp_path, f"""
        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=30, use_srun={use_srun},
                                                        options={{"partition": "debug"}}))
        def victim():
            with open({str(pid_file)!r} + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename({str(pid_file)!r} + ".tmp", {str(pid_file)!r})
            time.sleep(300)

        @ct.lattice
        def wf():
            return victim()
        """)
    _until(pid_file.exists, timeout=60, what="the task to run")
    killed = time.time()
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    status = wait_status(run_cov, run_id, timeout=60)
    latency = _ended_at(slurm_home, run_id, 0) - killed
    print(f"killed worker ({'srun' if use_srun else 'batch step'}) reported after "
          f"{latency:.2f} s (poll_freq 30 s)")
    task = _task(status, "victim")
    job = _handles(slurm_home, run_id)[0][0]
    assert task["status"] == "FAILED", task
    assert task["error"].startswith(f"Slurm job {job}: the task's process exited with status "
                                    "137 (killed by SIGKILL"), task["error"]
    if use_srun:  # srun's own words are in the job's output, hence in the error
        assert "Killed" in task["error"] or "killed" in task["error"].split("\n", 1)[1]
    assert task["job_id"] == job
    assert latency < 20, latency  # generous; without the script's outcome: 30 s and more


def test_a_missing_python_is_reported_at_once(slurm_home: Path, run_cov: Callable,
                                              tmp_path: Path) -> None:
    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor=ct.executor.SlurmExecutor(
            poll_freq=30, use_srun=False, python_path="/nonexistent/bin/python3",
            options={"partition": "debug"}))
        def unreachable():
            return 1

        @ct.lattice
        def wf():
            return unreachable()
        """)
    status = wait_status(run_cov, run_id, timeout=60)
    task = _task(status, "unreachable")
    assert task["status"] == "FAILED", task
    assert "status 127 (no such command: check python_path" in task["error"], task["error"]
    assert "/nonexistent/bin/python3" in task["error"]  # bash's own line, from the job output
    handle_t = next(e["t"] for e in _events(slurm_home, run_id) if e["ev"] == "handle")
    print(f"missing python reported {_ended_at(slurm_home, run_id, 0) - handle_t:.2f} s "
          "after sbatch (poll_freq 30 s)")
    assert _ended_at(slurm_home, run_id, 0) - handle_t < 20


def test_two_ranks_under_srun_both_run_and_rank_0_gives_the_result(
        slurm_home: Path, run_cov: Callable, tmp_path: Path) -> None:
    """``ntasks=2``: srun starts the worker twice; each rank runs the function (rank 1 ends
    later than rank 0 has its result, which made it skip before) and prints; the result is
    rank 0's, and the task's logs hold both ranks' lines. The time-limit warning sent to the
    batch shell (``scancel --batch -s USR1``, what ``--signal=B:USR1@N`` does) reaches both
    ranks through srun."""
    marks = tmp_path / "ranks"
    marks.mkdir()
    run_id = dispatch_script(run_cov, tmp_path, f"""
        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, ntasks=2,
                                                        partition="debug", max_requeues=1))
        def everywhere():
            rank = int(os.environ["SLURM_PROCID"])
            open(os.path.join({str(marks)!r}, str(rank)), "w").close()
            deadline = time.time() + 60
            while not ct.get_context().time_warning and time.time() < deadline:
                time.sleep(0.05)
            if rank == 1:
                time.sleep(2)  # rank 0 is done by now
            print(f"hello from rank {{rank}} of {{os.environ['SLURM_STEP_NUM_TASKS']}}, "
                  f"warned: {{ct.get_context().time_warning}}", flush=True)
            return f"rank {{rank}}"

        @ct.lattice
        def wf():
            return everywhere()
        """)
    _until(lambda: len(list(marks.iterdir())) == 2, timeout=60, what="both ranks to run")
    job = _handles(slurm_home, run_id)[0][0]
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    status = wait_status(run_cov, run_id, timeout=90)
    assert status["status"] == "COMPLETED", json.dumps(_task(status, "everywhere"))
    assert json.loads(run_cov("result", run_id, "--json").stdout)["result"] == "rank 0"
    out = run_cov("logs", run_id, "0", "--stream", "stdout").stdout
    assert sorted(line for line in out.splitlines() if line.startswith("hello")) == [
        "hello from rank 0 of 2, warned: True", "hello from rank 1 of 2, warned: True"], out


def test_a_held_job_shows_its_id_and_slurms_reason(slurm_home: Path, run_cov: Callable,
                                                   tmp_path: Path) -> None:
    """``sbatch --hold`` (as ``scontrol hold`` would): QUEUED with the job id and Slurm's
    reason JobHeldUser in ``cov status``; released, it runs."""
    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, partition="debug",
                                                        use_srun=False,
                                                        options={"hold": True}))
        def held():
            return "released"

        @ct.lattice
        def wf():
            return held()
        """)
    job = _until(lambda: _handles(slurm_home, run_id).get(0), what="the job id")[0]

    def held_shown() -> List[str]:
        table = run_cov("status", run_id).stdout
        return [line for line in table.splitlines() if "held" in line and
                f"job {job}" in line and "pending: JobHeldUser" in line]

    _until(held_shown, timeout=30, what="the held job's reason in cov status")
    data = json.loads(run_cov("status", run_id, "--json").stdout)
    task = _task(data, "held")
    assert (task["status"], task["job_id"], task["reason"]) == ("QUEUED", job, "JobHeldUser")
    subprocess.run(["scontrol", "release", job], check=True)
    status = wait_status(run_cov, run_id, timeout=60)
    assert status["status"] == "COMPLETED" and _task(status, "held")["reason"] is None
