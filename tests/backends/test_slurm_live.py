"""Live output of Slurm tasks: ``cov logs -f`` shows what a running job's task prints while it
runs, in login-node mode (the job writes into the run directory on the shared filesystem) and
through SSH (the backend fetches what the remote logs gained while the job runs)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tests.infra.executors import SlurmLogin, dispatch_script
from tests.live import Follower, check_live, go_file

PAUSE = 4.0
TALKER = """
        import sys

        @ct.electron(executor={executor})
        def talker(pause, go):
            if go:  # tests.live.talker's handshake: the follower is up before "first"
                print("ready", flush=True)
                deadline = time.time() + 300
                while not os.path.exists(go) and time.time() < deadline:
                    time.sleep(0.05)
            print(f"first {{time.time():.3f}}", flush=True)
            print(f"warn {{time.time():.3f}}", file=sys.stderr, flush=True)
            time.sleep(pause)
            print(f"second {{time.time():.3f}}", flush=True)
            return "done"

        @ct.lattice
        def wf():
            return talker({pause}, {go!r})
        """


def test_follow_shows_a_running_slurm_task_as_it_prints(slurm_home: Path,  # noqa: F811
                                                         run_cov: Callable,
                                                         tmp_path: Path) -> None:
    go = go_file()
    run_id = dispatch_script(run_cov, tmp_path, TALKER.format(executor='"cluster"', pause=PAUSE,
                                                              go=str(go)))
    delays = check_live(Follower(run_id, "0"), "0", PAUSE, go=go)
    print("slurm live-output delays (s):", delays)
    assert run_cov("result", run_id).stdout.strip() == "'done'"


def test_follow_shows_a_running_slurm_task_through_ssh_as_it_prints(
        slurm_login: SlurmLogin, sshd_host: Any, cov_home: Path, run_cov: Callable,
        tmp_path: Path) -> None:
    """``address`` set, no shared filesystem: the job's logs are on the cluster, yet the first
    lines reach ``cov logs -f`` while the task sleeps, within a second of being printed; the
    whole files replace the live copies at the end. ``poll_freq=10``: the outcome check (which
    also copies whole logs) runs every 5 s, as with the default 30, so only the live fetch can
    be this quick."""
    workdir = f"/home/{sshd_host.username}/cov-slurm-live"
    executor = (f"ct.executor.SlurmExecutor({slurm_login.executor_args(workdir)}, "
                f"poll_freq=10, missing_grace=3, options={{'partition': 'debug'}})")
    run_id = dispatch_script(run_cov, tmp_path, TALKER.format(executor=executor, pause=PAUSE, go=""))
    delays = check_live(Follower(run_id, "0"), "0", PAUSE)
    print("slurm-through-ssh live-output delays (s):", delays)
    assert run_cov("result", run_id).stdout.strip() == "'done'"
    out = run_cov("logs", run_id, "0", "--stream", "stdout").stdout
    assert out.count("first ") == 1 and out.count("second ") == 1, out
