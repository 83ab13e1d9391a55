"""DepsBash/DepsPip inside call_before/call_after, reused nodes' times, cancel reaching a
sublattice's child run (local and SSH), and the clear errors of what cov does not support."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

import covalent_cli as ct
from covalent_cli.errors import NotSupportedByCov
from runner.rundir import RunDir
from tests.processes import wait_pid_gone


def append(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def read(path):
    with open(path) as f:
        return f.read().split()


def test_deps_bash_and_pip_inside_call_before_and_after(cov_home, tmp_path):
    log = tmp_path / "order.log"

    @ct.electron(call_before=[ct.DepsBash([f"echo bash-before >> {log}"]),
                              ct.DepsCall(append, args=[str(log), "call-before"])],
                 call_after=ct.DepsBash(f"echo bash-after >> {log}"))
    def task(path):
        return append(path, "task")

    @ct.lattice
    def wf(path):
        return task(path)

    result = ct.dispatch_sync(wf)(str(log))
    assert result.status == ct.status.COMPLETED, result.error
    assert read(log) == ["bash-before", "call-before", "task", "bash-after"]
    hooks = result.lattice.transport_graph.get_node_value(0, "metadata")["hooks"]
    assert ct.DepsBash().from_dict(hooks["call_after"][0]).commands == \
        [f"echo bash-after >> {log}"]

    # a DepsPip there runs pip in the task's environment: a package no index has fails the task
    @ct.electron(call_before=[ct.DepsPip(packages=["cov-no-such-package-13"])])
    def needs_pip():
        return 1

    @ct.lattice
    def wf2():
        return needs_pip()

    result = ct.dispatch_sync(wf2)()
    assert result.status == ct.status.FAILED
    node = result.get_node_result(0)
    assert "cov-no-such-package-13" in (node["error"] or "") + (node["stderr"] or "")


def test_reused_nodes_start_and_end_at_once(cov_home, tmp_path):
    @ct.electron
    def slow(x):
        time.sleep(0.3)
        return x

    @ct.electron
    def plus(a, b):
        return a + b

    @ct.lattice
    def wf(a, b):
        return plus(slow(a), b)

    first = ct.get_result(ct.dispatch(wf)(1, 2), wait=True)
    assert first.result == 3
    again = ct.get_result(ct.redispatch(first.dispatch_id, reuse_previous_results=True)(1, 5),
                          wait=True)
    assert again.result == 6
    reused = again.get_node_result(0)
    assert reused["start_time"] == reused["end_time"]  # Covalent's convention for reuse
    assert reused["start_time"] >= first.end_time
    rerun = again.get_node_result(2)  # plus: its input changed, it ran again
    assert rerun["node_name"] == "plus" and rerun["start_time"] < rerun["end_time"]


def nap(seconds, pid_file=None):
    import os as _os
    import time as _time

    if pid_file:
        with open(pid_file + ".tmp", "w") as f:
            f.write(str(_os.getpid()))
        _os.rename(pid_file + ".tmp", pid_file)
    _time.sleep(seconds)
    return seconds


@pytest.fixture
def pid_file(tmp_path):
    """A path the task (also as the SSH test user) writes its pid to."""
    shared = Path(tempfile.mkdtemp(prefix="cov-compat-"))
    shared.chmod(0o777)
    yield shared / "pid"
    shutil.rmtree(shared, ignore_errors=True)


def _running_child(parent_id: str, pid_file: Path, timeout: float = 30):
    """The child run of node 0 once its task runs, and the task's pid."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        tg = ct.get_result(parent_id).lattice.transport_graph
        child = tg.get_node_value(0, "sub_dispatch_id")
        if child and pid_file.exists():
            return child, int(pid_file.read_text())
        time.sleep(0.05)
    raise AssertionError("the sublattice's task never ran")


@pytest.mark.parametrize("form", ["run", "task_ids"])
def test_cancel_reaches_a_running_sublattice(cov_home, form, pid_file):
    sub = ct.lattice(ct.electron(nap))
    sub.__name__ = "sub"

    @ct.lattice
    def wf(seconds, pid_file):
        return ct.electron(sub)(seconds, pid_file)

    dispatch_id = ct.dispatch(wf)(60, str(pid_file))
    child_id, pid = _running_child(dispatch_id, pid_file)
    started = time.time()
    if form == "run":
        ct.cancel(dispatch_id)
    else:
        ct.cancel(dispatch_id, task_ids=[0])
    assert time.time() - started < 2  # returns promptly
    parent = ct.get_result(dispatch_id, wait=True, timeout=20)
    child = ct.get_result(child_id, wait=True, timeout=20)
    assert time.time() - started < 15
    assert parent.status == ct.status.CANCELLED
    assert child.status == ct.status.CANCELLED
    assert child.get_node_result(0)["status"] == ct.status.CANCELLED
    assert wait_pid_gone(pid)  # the task's process was stopped, not left to finish


def test_cancel_reaches_a_sublattices_ssh_task(cov_home, sshd_host, monkeypatch, pid_file):
    monkeypatch.setenv("COV_SSH_CONFIG", str(sshd_host.ssh_config))
    remote = ct.electron(nap, executor=ct.executor.SSHExecutor(hostname="covtest"))
    sub = ct.lattice(remote)
    sub.__name__ = "remote_sub"

    @ct.lattice
    def wf(seconds, pid_file):
        return ct.electron(sub)(seconds, pid_file)

    dispatch_id = ct.dispatch(wf)(120, str(pid_file))
    child_id, pid = _running_child(dispatch_id, pid_file, timeout=60)
    ct.cancel(dispatch_id)
    child = ct.get_result(child_id, wait=True, timeout=30)
    assert child.status == ct.status.CANCELLED
    assert ct.get_result(dispatch_id, wait=True, timeout=30).status == ct.status.CANCELLED
    assert wait_pid_gone(pid, timeout=15)  # the remote process (sshd on this host) was killed
    assert RunDir(cov_home / child_id).state().tasks[0].status == "CANCELLED"


def test_draw_and_triggers_say_not_supported(run_cov, tmp_path):
    lattice = ct.lattice(ct.electron(nap))
    with pytest.raises(NotSupportedByCov, match=r"draw\(\) is not supported by cov.*cov ui"):
        lattice.draw(1)
    with pytest.raises(NotSupportedByCov, match="triggers are not supported by cov.*cron"):
        ct.triggers.DirTrigger(dir_path="/tmp", event_names="created")
    with pytest.raises(NotSupportedByCov, match="triggers are not supported by cov"):
        ct.lattice(nap, triggers=[object()])
    with pytest.raises(NotImplementedError):
        ct.stop_triggers(["x"])
    script = tmp_path / "draws.py"
    script.write_text("import covalent as ct\nfrom covalent.triggers import TimeTrigger\n"
                      "@ct.lattice(triggers=TimeTrigger(time_gap=5))\ndef wf():\n    return 1\n")
    proc = run_cov("dispatch", str(script))
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ct.triggers.TimeTrigger: triggers are not supported")
    assert "Traceback" not in proc.stderr and "AttributeError" not in proc.stderr
