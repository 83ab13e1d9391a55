"""A full disk while tasks print: the tasks do not fail; what they print waits for space, like
their results do, and lands whole in ``logs/<node>.out`` once space is freed."""
from __future__ import annotations

import json
import textwrap
import time

from tests.fault.harness import read_log, wait_until
from tests.reliability.test_full_disk import _disk_home, fill, small_disk  # noqa: F401

PRINTER = textwrap.dedent('''
    import os
    import sys
    import time

    import covalent as ct


    @ct.electron
    def chatty(i, gate, log):
        ctx = ct.get_context()
        with open(log, "a") as f:
            f.write(f"{ctx.node_id} {ctx.attempt} {os.getpid()}\\n")
        while not os.path.exists(gate):  # print only once the disk is full
            time.sleep(0.01)
        line = f"{i:03d}" + "x" * 96 + "\\n"
        for _ in range(5000):  # 500 kB to stdout
            sys.stdout.write(line)
        os.write(2, b"to fd 2 " * 1000)
        return i


    @ct.lattice
    def wf(gate, log, n=4):
        return [chatty(i, gate, log) for i in range(n)]
''')


def test_a_full_disk_while_tasks_print_delays_them_and_keeps_their_output(tmp_path,
                                                                        small_disk):  # noqa: F811
    home = _disk_home(tmp_path, small_disk, autostart=False)
    script = tmp_path / "printer.py"
    script.write_text(PRINTER)
    gate, log = tmp_path / "gate", tmp_path / "side-effects.log"
    proc = home.cov("dispatch", "-q", str(script), "-a", f"gate={gate}", "-a", f"log={log}")
    assert proc.returncode == 0, proc.stderr
    run_dir = home.path / proc.stdout.strip()
    runner = home.start_runner("--workers", "2", idle_timeout=30)
    try:
        assert wait_until(lambda: len(read_log(log)) >= 2, 30)
        filler = fill(small_disk)
        gate.touch()
        time.sleep(3)
        from runner.rundir import RunDir

        state = RunDir(run_dir).state()
        failed = {n: t.error or t.exception for n, t in state.tasks.items()
                  if t.status == "FAILED"}
        assert not failed, failed
        filler.unlink()
        wait = home.cov("wait", run_dir.name, "--timeout", "60", "-q")
        assert wait.returncode == 0, home.cov("status", run_dir.name).stdout
        assert json.loads(home.cov("result", run_dir.name, "--json").stdout)["result"] == \
            [0, 1, 2, 3]
        outs = sorted((run_dir / "logs").glob("[0-9]*.out"))
        assert len(outs) == 4
        for out in outs:
            text = out.read_text()
            assert len(text) == 5000 * 100, (out.name, len(text))
            assert len({line[:3] for line in text.splitlines()}) == 1  # its own lines only
        # the short stderr, whole: in the workers' logs packs (format 2.0), or in its own file
        # when it went live (the task had run for a while when it wrote it)
        run = RunDir(run_dir)
        chatty = [n.id for n in run.manifest.nodes if n.name == "chatty"]
        assert [len(run.read_log(n, "stderr")) for n in chatty] == [8000] * 4
        assert runner.poll() is None
    finally:
        home.stop_all()
