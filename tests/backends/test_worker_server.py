"""The persistent worker's protocol, against the real ``worker_server.py`` started from the
shipped files (as on a host without cov), talking over pipes instead of an SSH channel:
pid then result files, live output while a task runs, a directory it cannot prepare, and
tasks that outlive the worker when its stdin ends."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import cloudpickle
import pytest

from runner import layout
from runner.outcome import read_outcome_header
from runner.ssh import protocol, remote

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _Pipe:
    """A process's stdout read as a channel (what ``ChannelReader`` needs)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def recv(self, size: int) -> bytes:
        return os.read(self.proc.stdout.fileno(), size)

    def recv_exit_status(self) -> int:
        return self.proc.wait()

    def recv_stderr_ready(self) -> bool:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Tuple[subprocess.Popen, protocol.ChannelReader]]:
    files, name = remote._worker_files()
    lib = tmp_path / "lib" / name
    lib.mkdir(parents=True)
    for file_name, data in files.items():
        (lib / file_name).write_bytes(data)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(cloudpickle.__file__))  # cloudpickle
    proc = subprocess.Popen([sys.executable, "-u", str(lib / "worker_server.py"), "1", "0.1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                            cwd=tmp_path)
    reader = protocol.ChannelReader(_Pipe(proc))
    assert int(reader.field("ready")) == proc.pid
    yield proc, reader
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _send(proc: subprocess.Popen, tmp_path: Path, ident: str, fn: Any, *args: Any) -> str:
    f = str(tmp_path / "attempts" / ident)
    bundle = pickle.dumps({"fn": cloudpickle.dumps({"fn": fn}), "cwd": str(tmp_path),
                           "inputs": [("arg", i, pickle.dumps(a)) for i, a in enumerate(args)]})
    names = (layout.SSH_OUTCOME, layout.SSH_STDOUT, layout.SSH_STDERR, layout.SSH_LAUNCH_LOG)
    request = {"id": ident, "dir": f, "workdir": str(tmp_path),
               "bundle": f"{f}/{layout.SSH_BUNDLE}",
               "args": [f"{f}/{layout.SSH_BUNDLE}"] + [f"{f}/{n}" for n in names[:3]],
               "pid_file": f"{f}/{layout.SSH_PID}", "launch_log": f"{f}/{layout.SSH_LAUNCH_LOG}",
               "send_back": [[n, f"{f}/{n}"] for n in names],
               "live": [["stdout", f"{f}/{layout.SSH_STDOUT}"]], "remove": []}
    data = json.dumps(request).encode()
    proc.stdin.write(f"@cov run {len(data)} {len(bundle)}\n".encode() + data + bundle)
    proc.stdin.flush()
    return f


def _frames(reader: protocol.ChannelReader, until: str) -> List[Tuple[str, List[str], Any]]:
    """The frames up to ``@cov done UNTIL``: (kind, words, bytes or files)."""
    got: List[Tuple[str, List[str], Any]] = []
    while True:
        line = reader.line()
        if not line.startswith("@cov "):
            continue
        words = line.split()[1:]
        if words[0] == "chunk":
            got.append(("chunk", words, reader.read(int(words[4]))))
        elif words[0] == "done":
            files: Dict[str, bytes] = {}
            for _ in range(int(words[3])):
                name, _, size = reader.line().rpartition(" ")
                files[name] = reader.read(int(size))
            got.append(("done", words, files))
            if words[1] == until:
                return got
        else:
            got.append((words[0], words, None))


def add(a: int, b: int) -> int:
    return a + b


def talks(pause: float) -> str:
    print("hello from the task", flush=True)
    time.sleep(pause)
    return "said"


def test_a_task_runs_in_its_own_session_and_its_files_come_back(server, tmp_path):
    proc, reader = server
    f = _send(proc, tmp_path, "1", add, 2, 3)
    frames = _frames(reader, "1")
    assert [k for k, _, _ in frames] == ["pid", "done"]
    pid = int(frames[0][1][2])
    assert Path(f, layout.SSH_PID).read_text().strip() == str(pid)
    rc, files = int(frames[1][1][2]), frames[1][2]
    assert rc == 0
    out = tmp_path / "outcome"
    out.write_bytes(files[layout.SSH_OUTCOME])
    header = read_outcome_header(str(out))
    assert header["ok"] and header["pid"] == pid
    assert pickle.loads(files[layout.SSH_OUTCOME].split(b"\n", 1)[1]) == 5


def test_live_output_comes_while_the_task_runs(server, tmp_path):
    proc, reader = server
    _send(proc, tmp_path, "7", talks, 0.6)
    frames = _frames(reader, "7")
    kinds = [k for k, _, _ in frames]
    assert kinds.index("chunk") < kinds.index("done")
    chunk = next(data for k, _, data in frames if k == "chunk")
    assert chunk == b"hello from the task\n"
    assert frames[-1][2][layout.SSH_STDOUT] == b"hello from the task\n"  # whole, at the end


def test_a_directory_it_cannot_make_is_exit_90_with_the_reason(server, tmp_path):
    proc, reader = server
    (tmp_path / "attempts").write_text("a file where the directory should be")
    _send(proc, tmp_path, "2", add, 1, 1)
    kind, words, files = _frames(reader, "2")[-1]
    assert kind == "done" and words[2] == "90"
    assert b"cannot prepare" in files[layout.SSH_LAUNCH_LOG]


def test_tasks_outlive_the_worker_when_its_channel_ends(server, tmp_path):
    proc, reader = server
    f = _send(proc, tmp_path, "3", talks, 1.0)
    assert reader.field("pid").split()[0] == "3"
    proc.stdin.close()  # what a dropped connection does to it
    assert proc.wait(timeout=10) == 0
    outcome = Path(f, layout.SSH_OUTCOME)
    deadline = time.time() + 20
    while not outcome.exists() and time.time() < deadline:
        time.sleep(0.05)
    header = read_outcome_header(str(outcome))
    assert header is not None and header["ok"], "the task died with the worker"
