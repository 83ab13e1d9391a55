"""A full disk, for real: the home on a small tmpfs the test mounts (we are root), filled to the
last byte by a file, as another user's job would. During a dispatch: nothing half-written, a
clear line, and the next dispatch works once space is freed. During result writes: the run
stays consistent (nothing recorded that is not whole, no task FAILED for the disk's sake) and
finishes by itself once space is freed, without running a finished task again."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import textwrap
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.fault.harness import Home, file_problems, read_log, wait_until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs mounted for this test, unmounted at its end."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs (root needed): {proc.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses one more byte; returns it (delete it to free)."""
    filler = disk / f"filler-{uuid.uuid4().hex[:6]}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler


def _disk_home(tmp_path: Path, disk: Path, autostart: bool) -> Home:
    home = Home(tmp_path, autostart=autostart)
    home.path = disk / "home"
    home.path.mkdir()
    return home


BIG_ARG = textwrap.dedent('''
    import covalent as ct


    @ct.electron
    def size(data):
        return len(data)


    @ct.lattice
    def wf(mb=4):
        return size("x" * (mb << 20))
''')


def test_full_disk_during_dispatch_leaves_nothing_and_the_next_dispatch_works(tmp_path,
                                                                            small_disk):
    home = _disk_home(tmp_path, small_disk, autostart=True)
    script = tmp_path / "big_arg.py"
    script.write_text(BIG_ARG)
    filler = fill(small_disk)
    os.truncate(filler, os.path.getsize(filler) - (2 << 20))  # 2 MB free: the 4 MB pack fails
    try:
        proc = home.cov("dispatch", "-q", str(script))
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: ") and "No space left on device" in last, proc.stderr
        assert "Traceback" not in proc.stderr
        assert [n for n in os.listdir(home.path) if not n.startswith(".runners")] == []
        filler.unlink()  # space is freed: the same command works
        proc = home.cov("dispatch", "-q", "--wait", str(script))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split()[-1] == str(4 << 20)
    finally:
        home.stop_all()


GATED = textwrap.dedent('''
    import os
    import time

    import covalent as ct


    @ct.electron
    def produce(i, gate, log):
        ctx = ct.get_context()
        with open(log, "a") as f:
            f.write(f"{ctx.node_id} {ctx.attempt} {os.getpid()}\\n")
        while not os.path.exists(gate):  # hold the value until the disk is full
            time.sleep(0.01)
        return bytes([i]) * (1 << 20)  # 1 MB to write into a full disk


    @ct.electron
    def check(values):
        return [v[0] for v in values if len(v) == 1 << 20]


    @ct.lattice
    def wf(gate, log, n=6):
        return check([produce(i, gate, log) for i in range(n)])
''')


def test_full_disk_during_result_writes_waits_then_completes_when_space_is_freed(tmp_path,
                                                                               small_disk):
    home = _disk_home(tmp_path, small_disk, autostart=False)
    script = tmp_path / "gated.py"
    script.write_text(GATED)
    gate, log = tmp_path / "gate", tmp_path / "side-effects.log"
    proc = home.cov("dispatch", "-q", str(script), "-a", f"gate={gate}", "-a", f"log={log}")
    assert proc.returncode == 0, proc.stderr
    run_dir = home.path / proc.stdout.strip()
    runner = home.start_runner(idle_timeout=30)
    try:
        assert wait_until(lambda: len(read_log(log)) >= 2, 30)  # workers hold a task each
        filler = fill(small_disk)
        gate.touch()
        time.sleep(3)  # the results cannot be written: nothing may fail or claim to be whole
        assert runner.poll() is None, home.runner_log_text()
        from runner.rundir import RunDir

        state = RunDir(run_dir).state()
        assert state.status == "RUNNING", (state.status, state.error)
        assert not [n for n, t in state.tasks.items() if t.status in ("FAILED", "COMPLETED")]
        filler.unlink()
        wait = home.cov("wait", run_dir.name, "--timeout", "60", "-q")
        assert wait.returncode == 0, home.cov("status", run_dir.name).stdout
        assert json.loads(home.cov("result", run_dir.name, "--json").stdout)["result"] == \
            list(range(6))
        lines = read_log(log)
        assert sorted(n for n, _ in lines) == sorted({n for n, _ in lines})  # each ran once
        problems, torn = file_problems(run_dir)
        assert not problems and torn == 0
        litter = [n for d in ("results", "logs") for n in os.listdir(run_dir / d) if ".tmp-" in n]
        assert not litter
        assert runner.poll() is None  # the same runner saw it through
    finally:
        home.stop_all()
