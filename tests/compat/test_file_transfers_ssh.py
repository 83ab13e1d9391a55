"""File transfers and leptons on the SSH executor, against the real test sshd (user covtest).

Two ways a remote task's files move: ``ExecutorConnection`` (the runner copies over the SSH
executor's own connection, SFTP) and ``Rsync`` (rsync over ssh, run by the task on the host).
The runner's side of the files sits in pytest's 0700 directories, which the test user cannot
read or write: only the runner's copy over the connection can have moved them.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

import covalent_cli as ct
from tests.compat.test_file_transfers import REMOTE_USER, rsync_config
from tests.infra.fixtures import SSHHost


@pytest.fixture
def on_host(sshd_host: SSHHost) -> ct.executor.SSHExecutor:
    return ct.executor.SSHExecutor(hostname=sshd_host.name, ssh_config=sshd_host.ssh_config,
                                   remote_workdir="/tmp/cov-ft-ssh-work")


def whoami():
    import getpass
    return getpass.getuser()


def test_executor_connection_copies_in_before_and_back_after(
        cov_home: Path, tmp_path: Path, shared_dir: Path, on_host) -> None:
    private = tmp_path / "runner-side"
    (private / "inputs" / "more").mkdir(parents=True)
    (private / "input.txt").write_text("runner data")
    (private / "inputs" / "a.txt").write_text("A")
    (private / "inputs" / "more" / "b.txt").write_text("B")
    host_dir = shared_dir / "on-host"  # made by the copy, as the test user
    conn = ct.fs_strategies.ExecutorConnection()
    transfers = [
        ct.fs.TransferFromRemote(str(private / "input.txt"), str(host_dir / "input.txt"),
                                 strategy=conn),
        ct.fs.TransferFromRemote(str(private / "inputs") + "/", str(host_dir / "tree") + "/",
                                 strategy=conn),
        ct.fs.TransferToRemote(str(private / "back" / "output.txt"), str(host_dir / "output.txt"),
                               strategy=conn),
        # relative on the host: from the task's directory there (remote_workdir)
        ct.fs.TransferFromRemote(str(private / "input.txt"), "relative-copy.txt", strategy=conn),
    ]

    @ct.electron(executor=on_host, files=transfers)
    def process(files=[]):
        import getpass
        import os
        with open(files[0][1]) as f, open(files[2][0], "w") as g:
            g.write(f.read().upper())
        tree = files[1][1]
        return [getpass.getuser(), sorted(os.listdir(tree)), open(tree + "more/b.txt").read(),
                open(files[3][1]).read(), os.getcwd()]

    @ct.lattice
    def wf():
        return process()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.get_node_result(0)["stderr"]
    assert result.result == [REMOTE_USER, ["a.txt", "more"], "B", "runner data",
                             "/tmp/cov-ft-ssh-work"]
    assert (private / "back" / "output.txt").read_text() == "RUNNER DATA"
    import pwd
    assert pwd.getpwuid((host_dir / "input.txt").stat().st_uid).pw_name == REMOTE_USER


def test_executor_connection_failures_name_the_path(cov_home: Path, tmp_path: Path,
                                                    shared_dir: Path, on_host,
                                                    run_cov: Callable) -> None:
    conn = ct.fs_strategies.ExecutorConnection()
    missing = tmp_path / "not-there.txt"
    ran = shared_dir / "ran"

    @ct.electron(executor=on_host, files=[ct.fs.TransferFromRemote(
        str(missing), str(shared_dir / "in.txt"), strategy=conn)])
    def needs_input(files=[]):
        open(str(ran), "w").close()

    @ct.electron(executor=on_host, files=[ct.fs.TransferToRemote(
        str(tmp_path / "out.txt"), str(shared_dir / "never-written.txt"), strategy=conn)])
    def writes_nothing(files=[]):
        return "done"

    @ct.lattice
    def wf():
        return [needs_input(), writes_nothing()]

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED
    assert not ran.exists()  # the task never started
    status = json.loads(run_cov("status", result.dispatch_id, "--json").stdout)
    errors = {t["name"]: t["error"] or "" for t in status["tasks"]}
    assert str(missing) in errors["needs_input"] and "before the task" in errors["needs_input"]
    assert "no such file or directory on this machine" in errors["needs_input"]
    after = errors["writes_nothing"]
    assert str(shared_dir / "never-written.txt") in after and "after the task" in after
    assert "on the task's host" in after
    logs = run_cov("logs", result.dispatch_id, "1")
    assert "never-written.txt" in logs.stdout + logs.stderr


def test_rsync_runs_on_the_task_host(cov_home: Path, shared_dir: Path, sshd_host: SSHHost,
                                     on_host) -> None:
    """The task's own host rsyncs over ssh (here to the same sshd, with a key of its own)."""
    key = shared_dir / "covtest_key"
    shutil.copy(sshd_host.key_file, key)
    subprocess.run(["chown", f"{REMOTE_USER}:", str(key)], check=True)
    key.chmod(0o600)
    config = rsync_config(sshd_host, shared_dir)
    source = shared_dir / "rsync-in.txt"
    source.write_text("via rsync")
    source.chmod(0o644)
    strategy = ct.fs_strategies.Rsync(user=REMOTE_USER, host=sshd_host.hostname,
                                      private_key_path=str(key), port=sshd_host.port,
                                      ssh_config=str(config))

    @ct.electron(executor=on_host, files=[ct.fs.TransferFromRemote(
        str(source), str(shared_dir / "rsync-local" / "copy.txt"), strategy=strategy)])
    def read_copy(files=[]):
        import getpass
        with open(files[0][1]) as f:
            return [getpass.getuser(), f.read()]

    @ct.lattice
    def wf():
        return read_copy()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.get_node_result(0)["stderr"]
    assert result.result == [REMOTE_USER, "via rsync"]


def test_leptons_run_on_the_ssh_host(cov_home: Path, on_host) -> None:
    """A lepton's wrapper travels by value: the host has no cov."""
    user = ct.Lepton("python", library_name="getpass", function_name="getuser",
                     executor=on_host)
    shell = ct.Lepton("bash", command="me=$(whoami)", argtypes=[(str, ct.Lepton.OUTPUT)],
                      named_outputs=["me"], executor=on_host)

    @ct.lattice
    def wf():
        return [user(), shell()]

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == [REMOTE_USER, REMOTE_USER]
