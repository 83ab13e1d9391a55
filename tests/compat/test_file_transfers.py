"""File transfers (``@ct.electron(files=[...])``) on the local executor, as Covalent's how-tos
write them (file_transfers_for_workflows, file_transfers_to_from_remote): Shutil and Rsync
locally, Rsync over ssh to the real test sshd, the ``files`` argument, the order of the copies,
and a failing transfer that names its path in ``cov status`` and ``cov logs``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

import covalent_cli as ct
from tests.infra.fixtures import SSHHost

REMOTE_USER = "covtest"


def test_local_copy_before_and_after_and_the_files_argument(cov_home: Path,
                                                            tmp_path: Path) -> None:
    src = tmp_path / "in" / "data.txt"
    src.parent.mkdir()
    src.write_text("input data")
    folder = tmp_path / "tree"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    dest = tmp_path / "work" / "data.txt"
    out = tmp_path / "work" / "result.txt"
    kept = tmp_path / "kept" / "result.txt"
    transfers = [ct.fs.FileTransfer(str(src), str(dest)),  # default: Shutil, before
                 ct.fs.FileTransfer(ct.fs.Folder(str(folder)), str(tmp_path / "copy") + "/",
                                    strategy=ct.fs_strategies.Rsync()),
                 ct.fs.FileTransfer(str(out), str(kept), order=ct.fs.Order.AFTER)]

    @ct.electron(files=transfers)
    def work(suffix, files=[]):
        (from_file, to_file), tree, (result, _) = files
        assert not os.path.exists(files[2][1])  # the after-transfer has not run yet
        with open(to_file) as f, open(result, "w") as g:
            g.write(f.read() + suffix)
        return [list(pair) for pair in files] + [sorted(os.listdir(tree[1]))]

    @ct.lattice
    def wf():
        return work("!")

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    pairs = result.result
    assert pairs[0] == [str(src), str(dest)]
    assert pairs[1] == [str(folder) + "/", str(tmp_path / "copy") + "/"]  # a folder's contents
    assert pairs[3] == ["sub"]
    assert kept.read_text() == "input data!"  # copied after the task
    assert (tmp_path / "copy" / "sub" / "a.txt").read_text() == "a"


def test_failing_transfer_fails_the_task_naming_the_path(cov_home: Path, run_cov: Callable,
                                                         tmp_path: Path) -> None:
    missing = tmp_path / "no-such-input.csv"
    ran = tmp_path / "ran"

    @ct.electron(files=[ct.fs.FileTransfer(str(missing), str(tmp_path / "x.csv"))])
    def never(files=[]):
        ran.touch()

    @ct.lattice
    def wf():
        return never()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED and not ran.exists()
    status = json.loads(run_cov("status", result.dispatch_id, "--json").stdout)
    task = status["tasks"][0]
    assert task["status"] == "FAILED"
    assert str(missing) in task["error"] and "before the task" in task["error"]
    assert "no such file or directory" in task["error"]
    logs = run_cov("logs", result.dispatch_id, "0")
    assert f"file transfer {missing} -> " in logs.stdout + logs.stderr


def test_transfer_definitions_follow_covalent(tmp_path: Path) -> None:
    to_remote = ct.fs.TransferToRemote("/remote/out.txt", "/local/out.txt",
                                       strategy=ct.fs_strategies.Rsync(user="u", host="h"))
    assert (to_remote.from_file.filepath, to_remote.to_file.filepath) == \
        ("/local/out.txt", "/remote/out.txt")
    assert to_remote.order == ct.fs.Order.AFTER and to_remote.to_file.is_remote
    from_remote = ct.fs.TransferFromRemote("/remote/in/", "/local/in/",
                                           strategy=ct.fs_strategies.Rsync(user="u", host="h"))
    assert from_remote.order == ct.fs.Order.BEFORE and from_remote.from_file.is_dir
    assert isinstance(ct.fs.FileTransfer("/a", "/b").strategy, ct.fs_strategies.Shutil)
    with pytest.raises(ValueError, match="directory path"):
        ct.fs.TransferFromRemote("/remote/in/", "/local/in")
    with pytest.raises(ValueError, match="remote->remote"):
        ct.fs.FileTransfer(ct.fs.File("/a", is_remote=True), ct.fs.File("/b", is_remote=True))
    with pytest.raises(ValueError, match="local files only"):
        ct.fs.TransferFromRemote("/a", "/b", strategy=ct.fs_strategies.Shutil())
    with pytest.raises(NotImplementedError, match="not supported by cov"):
        ct.fs_strategies.S3()
    with pytest.raises(NotImplementedError, match="not supported by cov"):
        ct.fs.File("s3://bucket/key")
    with pytest.raises(TypeError, match="FileTransfer"):
        ct.electron(files=["/a"])(lambda files=[]: None)


def rsync_config(host: SSHHost, base: Path) -> Path:
    """An OpenSSH client config reaching ``host`` by its address (known host key only)."""
    known = base / "known_hosts"
    known.write_text(Path(host.known_hosts).read_text())
    config = base / "ssh_config"
    config.write_text(f"Host {host.hostname}\n  UserKnownHostsFile {known}\n"
                      "  StrictHostKeyChecking yes\n")
    for path in (known, config):
        path.chmod(0o644)
    return config


def test_rsync_over_ssh_to_the_real_sshd(cov_home: Path, tmp_path: Path, sshd_host: SSHHost,
                                          shared_dir: Path) -> None:
    """TransferFromRemote before, TransferToRemote after, both through ssh as the test user
    (the files it writes on the ssh side are the test user's)."""
    remote_in = shared_dir / "remote-input.txt"
    remote_in.write_text("from the host")
    remote_in.chmod(0o644)
    remote_out = shared_dir / "remote-output.txt"
    strategy = ct.fs_strategies.Rsync(user=REMOTE_USER, host=sshd_host.hostname,
                                      private_key_path=sshd_host.key_file, port=sshd_host.port,
                                      ssh_config=str(rsync_config(sshd_host, tmp_path)))
    local_in, local_out = tmp_path / "local-input.txt", tmp_path / "local-output.txt"

    @ct.electron(files=[ct.fs.TransferFromRemote(str(remote_in), str(local_in), strategy=strategy),
                        ct.fs.TransferToRemote(str(remote_out), str(local_out), strategy=strategy)])
    def process(files=[]):
        downloaded, upload = files[0][1], files[1][0]
        with open(downloaded) as f, open(upload, "w") as g:
            g.write(f.read().upper())
        return files

    @ct.lattice
    def wf():
        return process()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == [(str(remote_in), str(local_in)), (str(local_out), str(remote_out))]
    assert remote_out.read_text() == "FROM THE HOST"
    import pwd
    assert pwd.getpwuid(remote_out.stat().st_uid).pw_name == REMOTE_USER  # written over ssh


def test_rsync_failure_names_the_path_and_rsyncs_reason(cov_home: Path, tmp_path: Path,
                                                        sshd_host: SSHHost) -> None:
    strategy = ct.fs_strategies.Rsync(user=REMOTE_USER, host=sshd_host.hostname,
                                      private_key_path=sshd_host.key_file, port=sshd_host.port,
                                      ssh_config=str(rsync_config(sshd_host, tmp_path)))

    @ct.electron(files=[ct.fs.TransferFromRemote("/nonexistent/cov-input.dat",
                                                 str(tmp_path / "in.dat"), strategy=strategy)])
    def never(files=[]):
        return 1

    @ct.lattice
    def wf():
        return never()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED
    stderr = result.get_node_result(0)["stderr"]
    assert "file transfer /nonexistent/cov-input.dat ->" in stderr
    assert "rsync exited with code" in stderr and "No such file or directory" in stderr


def test_the_example_workflow_runs_as_it_is(cov_home: Path, run_cov: Callable) -> None:
    done = run_cov("dispatch", "workflows/file_transfer.py", "--wait", "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "HELLO FROM A FILE" in done.stdout


def test_lepton_with_file_transfer(cov_home: Path, tmp_path: Path) -> None:
    """Leptons take ``files`` too: the copy happens before the command runs."""
    src = tmp_path / "numbers.txt"
    src.write_text("3\n4\n")
    dest = tmp_path / "copy.txt"
    count = ct.Lepton("bash", command=f"lines=$(wc -l < {dest})",
                      argtypes=[(int, ct.Lepton.OUTPUT)], named_outputs=["lines"],
                      files=[ct.fs.FileTransfer(str(src), str(dest))])

    @ct.lattice
    def wf():
        return count()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == 2


def test_destination_left_out_is_a_temporary_file(cov_home: Path, tmp_path: Path) -> None:
    src = tmp_path / "source.txt"
    src.write_text("hello")
    transfer = ct.fs.FileTransfer(str(src))  # to: /tmp/<uuid>, created before the copy

    @ct.electron(files=[transfer])
    def read(files=[]):
        with open(files[0][1]) as f:
            return [files[0][1], f.read()]

    @ct.lattice
    def wf():
        return read()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == [transfer.to_file.filepath, "hello"]
    assert transfer.to_file.filepath.startswith("/tmp/")
    os.unlink(transfer.to_file.filepath)
