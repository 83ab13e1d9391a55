"""File transfers on the Slurm executor, on the real single-node cluster: from the login node
(the job copies; the run's files are on the shared filesystem) and through SSH (the runner
copies over the login connection). Run under ``flock /tmp/cov-slurm-tests.lock``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tests.compat.test_file_transfers import REMOTE_USER
from tests.infra.executors import SlurmLogin, dispatch_script, run_result, wait_status


def test_slurm_job_copies_before_and_after(slurm_cluster: Any, cov_home: Path,
                                           run_cov: Callable, tmp_path: Path) -> None:
    src = tmp_path / "input.txt"
    src.write_text("cluster input")
    back = tmp_path / "back" / "out.txt"
    run_id = dispatch_script(run_cov, tmp_path, f"""
        cluster = ct.executor.SlurmExecutor(poll_freq=0.3, missing_grace=3, use_srun=False,
                                            options={{"partition": "debug"}})
        conn = ct.fs_strategies.ExecutorConnection()

        @ct.electron(executor=cluster, files=[
            ct.fs.FileTransfer({str(src)!r}, {str(tmp_path / "scratch" / "in.txt")!r}),
            ct.fs.TransferToRemote({str(back)!r}, {str(tmp_path / "scratch" / "out.txt")!r},
                                   strategy=conn)])
        def job(files=[]):
            with open(files[0][1]) as f, open(files[1][0], "w") as g:
                g.write(f.read() + " processed")
            return [os.environ.get("SLURM_JOB_ID"), files]

        @ct.electron(executor=cluster, files=[ct.fs.FileTransfer("/nonexistent/in.txt", "/tmp/x")])
        def broken(files=[]):
            return 1

        @ct.lattice
        def wf():
            return [job(), broken()]
        """)
    status = wait_status(run_cov, run_id, timeout=90)
    assert status["status"] == "FAILED", status
    tasks = {t["name"]: t for t in status["tasks"]}
    assert tasks["job"]["status"] == "COMPLETED", tasks["job"]
    assert "/nonexistent/in.txt" in tasks["broken"]["error"]
    assert back.read_text() == "cluster input processed"


def test_slurm_through_ssh_copies_over_the_login_connection(
        slurm_login: SlurmLogin, cov_home: Path, run_cov: Callable, tmp_path: Path,
        shared_dir: Path) -> None:
    """The runner's files sit in a 0700 directory the cluster user cannot read: only the
    runner's copy over the login connection can move them."""
    src = tmp_path / "private-input.txt"
    src.write_text("login data")
    back = tmp_path / "back" / "result.txt"
    on_cluster = shared_dir / "cluster"
    run_id = dispatch_script(run_cov, tmp_path, f"""
        cluster = ct.executor.SlurmExecutor(
            {slurm_login.executor_args(str(shared_dir / "work"))},
            poll_freq=0.3, missing_grace=3, use_srun=False, options={{"partition": "debug"}})
        conn = ct.fs_strategies.ExecutorConnection()

        @ct.electron(executor=cluster, files=[
            ct.fs.TransferFromRemote({str(src)!r}, {str(on_cluster / "in.txt")!r}, strategy=conn),
            ct.fs.TransferToRemote({str(back)!r}, {str(on_cluster / "out.txt")!r}, strategy=conn)])
        def job(files=[]):
            import getpass
            with open(files[0][1]) as f, open(files[1][0], "w") as g:
                g.write(f.read().upper())
            return getpass.getuser()

        @ct.lattice
        def wf():
            return job()
        """)
    status = wait_status(run_cov, run_id, timeout=90)
    assert status["status"] == "COMPLETED", status
    assert run_result(run_cov, run_id) == REMOTE_USER
    assert back.read_text() == "LOGIN DATA"

