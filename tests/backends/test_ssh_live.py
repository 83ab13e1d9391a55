"""Live output of SSH tasks against the real sshd hosts: what a running task prints reaches
``cov logs -f`` while it runs, with the outputs copied back (the default) and on a shared
filesystem; the whole logs still land at the end."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cloudpickle

import covalent_cli as ct
import tests.live
from runner.ssh import protocol
from runner.rundir import RunDir
from tests.backends.test_ssh import hosts, ssh_home  # noqa: F401 - fixtures
from tests.live import Follower, check_live, talker

cloudpickle.register_pickle_by_value(tests.live)  # the remote host has no cov, no tests
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PAUSE = 4.0


def _follow(home: Path, executor) -> str:
    task = ct.electron(talker, executor=executor)

    @ct.lattice
    def wf():
        return task(PAUSE)

    run_id = ct.dispatch(wf)()
    delays = check_live(Follower(run_id, "0"), "0", PAUSE)
    print("ssh live-output delays (s):", delays)
    return run_id


def test_follow_shows_a_running_ssh_task_as_it_prints(ssh_home, hosts):  # noqa: F811
    run_id = _follow(ssh_home, ct.executor.SSHExecutor(hostname="covtest"))
    result = ct.get_result(run_id, wait=True)
    assert result.result == "done"
    run = RunDir(ssh_home / run_id)  # the logs are packed (format 2.0) once the task ended
    out = run.read_log(0, "stdout").splitlines()
    assert [line.split()[0] for line in out] == ["first", "second"]  # whole, once
    assert run.read_log(0, "stderr").startswith("warn ")
    assert run.log_location(0, "stdout") is not None


def test_follow_on_a_shared_filesystem_host(cov_home, hosts, monkeypatch):  # noqa: F811
    monkeypatch.setenv("COV_SSH_CONFIG", str(hosts["config"]))
    run_id = _follow(cov_home, ct.executor.SSHExecutor(
        hostname=hosts["h1"].name, username="root", shared_filesystem=True))
    assert ct.get_result(run_id, wait=True).result == "done"


class _PipeChannel:
    """What ``ChannelReader`` uses of a paramiko channel, over a local ``sh`` process."""

    def __init__(self, proc) -> None:
        self.proc = proc

    def recv(self, size: int) -> bytes:
        return os.read(self.proc.stdout.fileno(), size)

    def recv_exit_status(self) -> int:
        return self.proc.wait()

    def recv_stderr_ready(self) -> bool:
        return False


def test_live_frames_stay_whole_while_the_task_writes_fast_and_ends(tmp_path):
    """The launch script's live loop under /bin/sh: a task writing bursts of lines and ending
    in the middle of them gives frames that rebuild exactly a prefix of its stdout, then the
    whole file comes as before."""
    files = tmp_path / "task dir"  # a space: the loop works inside it
    work = tmp_path / "work"
    writer = ("sh -c 'i=0; while [ $i -lt 40 ]; do j=0; while [ $j -lt 200 ]; do "
              "echo \"burst $i line $j .........................................\"; "
              "j=$((j+1)); done >> \"$1/stdout.log\"; echo e$i >> \"$1/stderr.log\"; "
              "sleep 0.05; i=$((i+1)); done' sh \"$F\"")
    script = protocol.launch_script(str(files), str(work), writer, False,
                                    ["stdout.log", "stderr.log"], 5.0,
                                    live=[("stdout", "stdout.log"), ("stderr", "stderr.log")])
    proc = subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    live = {"stdout": bytearray(), "stderr": bytearray()}
    frames = []

    def on_chunk(stream: str, offset: int, data: bytes) -> None:
        frames.append((stream, offset, len(data)))
        buf = live[stream]
        assert offset <= len(buf), "a gap in the frames"
        buf[offset:offset + len(data)] = data

    reader = protocol.ChannelReader(_PipeChannel(proc), on_chunk)
    assert int(reader.field("pid")) > 0
    assert int(reader.field("rc")) == 0
    final = {name: reader.read(size) for name, size in reader.files()}
    proc.wait(timeout=10)
    assert len(frames) >= 3, frames  # it sent while the task ran (~2 s), not only at the end
    expected = b"".join(f"burst {i} line {j} .........................................\n"
                        .encode() for i in range(40) for j in range(200))
    assert final["stdout.log"] == expected
    assert expected.startswith(bytes(live["stdout"])) and len(live["stdout"]) > 0
    assert final["stderr.log"].startswith(bytes(live["stderr"]))
