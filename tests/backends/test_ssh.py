"""The SSH executor against real sshd hosts (tests/infra/fixtures.py), as user covtest.

Hosts: ``sshd_host`` (127.0.0.1:<port>) and two network-namespace hosts reached through a
ProxyCommand. All of them are named in one test ssh_config file that ``$COV_SSH_CONFIG`` points
at; the real ``~/.ssh/config`` is never read or touched. The remote Python is the system's
``python3``, which has no cloudpickle: cov ships its own.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

import cloudpickle
import pytest

import covalent_cli as ct
from runner.ssh import AuthFailed, ConnectFailed, HostKeyError, HostSpec, SSHPool
from tests.infra.executors import add_to_config
from tests.processes import run_state, wait_for_pid, wait_pid_gone
from tests.infra.fixtures import SSHHost

# Tasks defined here must travel by value: the remote host has neither cov nor this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

REMOTE_HOME = "/home/covtest"


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hosts(sshd_host: SSHHost, netns_hosts: List[SSHHost], infra_root: Path) -> Dict[str, SSHHost]:
    """The three hosts by role, and ``ssh_config``: one file naming all of them, plus the alias
    ``cov-h1`` for the first namespace host (HostName, ProxyCommand with %h/%p, HostKeyAlias)."""
    h1, h2 = netns_hosts
    alias = (f"Host cov-h1\n  HostName 127.0.0.1\n  Port 22\n  User covtest\n"
             f"  IdentityFile {h1.key_file}\n  IdentitiesOnly yes\n"
             f"  UserKnownHostsFile {h1.known_hosts}\n  HostKeyAlias {h1.name}\n"
             f"  ProxyCommand ip netns exec {h1.name} nc %h %p\n  ServerAliveInterval 5\n")
    jump = (f"Host cov-jump\n  HostName 127.0.0.1\n  Port {sshd_host.port}\n  User covtest\n"
            f"  IdentityFile {sshd_host.key_file}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {sshd_host.known_hosts}\n  ProxyJump covtest\n")
    parts = [alias, jump] + [Path(h.ssh_config).read_text() for h in (sshd_host, h1, h2)]
    parts.append("Host *\n  ProxyJump none\n")  # fabric would take "none" for a host name
    config = infra_root / "cov-ssh-test-config"
    config.write_text("\n".join(parts))
    config.chmod(0o644)
    return {"local": sshd_host, "h1": h1, "h2": h2, "config": config}  # type: ignore[dict-item]


@pytest.fixture
def ssh_home(cov_home: Path, hosts: Dict[str, SSHHost], monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Path]:
    """``cov_home`` with ``$COV_SSH_CONFIG`` set and named executors in the config file."""
    monkeypatch.setenv("COV_SSH_CONFIG", str(hosts["config"]))
    add_to_config(
        "executors:\n"
        "  gpu-box:\n    type: ssh\n    hostname: cov-h1\n    max_concurrent: 2\n"
        "  ssh:\n    retry_wait_time: 0.2\n    max_connection_attempts: 3\n"
        "    remote_workdir: /tmp/cov-ssh-test-work\n")
    yield cov_home


def _sshd_session_processes(listener: int) -> List[int]:
    """The sshd processes below the listener (per connection: the privileged monitor and the
    user's child that holds the socket), not the shells and tasks they started."""
    found, todo = [], [listener]
    while todo:
        parent = todo.pop()
        out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout
        for pid in map(int, out.split()):
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "sshd":
                    found.append(pid)
                    todo.append(pid)
    return found


# -- tasks (pickled by value) ---------------------------------------------------------------------
def hostname() -> str:
    return socket.gethostname()


def gather(*names: str) -> List[str]:
    return list(names)


def chatty(x: int) -> int:
    print(f"stdout line {x}")
    print(f"stderr line {x}", file=sys.stderr)
    os.system(f"echo child process {x}")
    return x * 2


def fails(x: int) -> int:
    print("about to fail")
    raise ValueError(f"remote failure {x}")


def sleeper(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


def window(i: int) -> tuple:
    start = time.time()
    time.sleep(0.05)
    return (i, start, time.time())


def big(data: bytes) -> bytes:
    return data[::-1] + b"!"


def sessions(xs: list) -> list:
    return xs


# -- tests ----------------------------------------------------------------------------------------
def test_tasks_on_two_hosts_and_locally(ssh_home, hosts):
    h1, h2 = hosts["h1"], hosts["h2"]
    on_h1 = ct.electron(hostname, executor="gpu-box")  # config: alias cov-h1 via ProxyCommand
    on_h2 = ct.electron(hostname, executor=ct.executor.SSHExecutor(hostname=h2.name))
    here = ct.electron(hostname)
    together = ct.electron(gather)

    @ct.lattice
    def wf():
        return together(on_h1(), on_h2(), here())

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == [h1.name, h2.name, socket.gethostname()]
    state = run_state(ssh_home, result.dispatch_id)
    assert state.tasks[0].host == h1.name and state.tasks[0].pid
    assert state.tasks[1].host == h2.name and state.tasks[0].handle["workdir"]


def test_a_packed_local_result_is_shipped_to_an_ssh_task(ssh_home, hosts):
    """Format 2.0: a local task's small outcome is in its worker's pack; an SSH task that
    takes it as an input gets its bytes through the same reader (``make_bundle``)."""
    here = ct.electron(hostname)
    there = ct.electron(sessions, executor="gpu-box")

    @ct.lattice
    def wf():
        return there([here(), here()])

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == [socket.gethostname()] * 2
    from runner.rundir import RunDir

    run = RunDir(ssh_home / result.dispatch_id)
    local = [n.id for n in run.manifest.nodes if n.name == "hostname"]
    assert all(run.outcome_location(n) is not None for n in local)  # packed, not files


def test_stdout_stderr_and_remote_traceback(ssh_home, hosts):
    executor = ct.executor.SSHExecutor(hostname="covtest")
    ok = ct.electron(chatty, executor=executor)
    bad = ct.electron(fails, executor=executor)

    @ct.lattice
    def wf():
        return [ok(3), bad(4)]

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED
    good = result.get_node_result(0)
    assert good["output"].get_deserialized() == 6
    assert good["stdout"] == "stdout line 3\nchild process 3\n"
    assert good["stderr"] == "stderr line 3\n"
    failed = result.get_node_result(2)  # node 1 is the parameter 3
    assert failed["status"] == ct.status.FAILED
    assert failed["stdout"] == "about to fail\n"
    assert "Traceback" in failed["stderr"] and "in fails" in failed["stderr"]
    assert "ValueError: remote failure 4" in failed["stderr"]
    assert run_state(ssh_home, result.dispatch_id).tasks[2].attempt == 1  # not retried


def test_wrong_key_fails_at_once_with_a_clear_error(ssh_home, hosts, tmp_path):
    key = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    target = hosts["local"]
    task = ct.electron(hostname, executor=ct.executor.SSHExecutor(
        hostname="covtest", ssh_key_file=str(key), retry_wait_time=5, max_connection_attempts=5))

    @ct.lattice
    def wf():
        return task()

    started = time.time()
    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED
    error = result.get_node_result(0)["error"]
    assert "authentication failed" in error and f"127.0.0.1:{target.port}" in error
    assert str(key) in error
    assert time.time() - started < 5  # no retries with 5 s waits


def test_host_down_is_retried_then_fails_naming_host_and_cause(ssh_home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    task = ct.electron(hostname, executor=ct.executor.SSHExecutor(
        hostname="127.0.0.1", port=port, username="covtest"))

    @ct.lattice
    def wf():
        return task()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED
    error = result.get_node_result(0)["error"]
    assert f"127.0.0.1:{port}" in error and "after 3 attempts" in error
    assert "connection refused" in error


def test_host_keys_unknown_changed_and_accept_new(hosts, tmp_path):
    local = hosts["local"]
    base = dict(user="covtest", port=local.port, key_file=local.key_file, ssh_config="none",
                max_connection_attempts=1)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="is unknown") as info:
        SSHPool().host(HostSpec("127.0.0.1", known_hosts=str(empty), **base)).run("true")
    assert "SHA256:" in str(info.value)

    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(f"[127.0.0.1]:{local.port} " + " ".join(
        Path(f"{other}.pub").read_text().split()[:2]) + "\n")
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED"):
        SSHPool().host(HostSpec("127.0.0.1", known_hosts=str(changed),
                                strict_host_key_checking="accept-new", **base)).run("true")

    learned = tmp_path / "learned_known_hosts"
    host = SSHPool().host(HostSpec("127.0.0.1", known_hosts=str(learned),
                                   strict_host_key_checking="accept-new", **base))
    assert host.run("id -un").text == "covtest"
    assert learned.read_text().startswith(f"[127.0.0.1]:{local.port} ssh-ed25519 ")
    host.close()


def test_proxy_jump_through_a_jump_host(hosts):
    host = SSHPool().host(HostSpec("cov-jump", ssh_config=str(hosts["config"])))
    assert host.run("id -un", check=True).text == "covtest"
    assert "via ProxyJump covtest" in host.description
    host.close()


def test_auth_and_config_errors_from_the_connection_module(hosts, tmp_path):
    local = hosts["local"]
    with pytest.raises(AuthFailed, match="does not exist"):
        SSHPool().host(HostSpec("covtest", key_file=str(tmp_path / "nope"),
                                ssh_config=str(hosts["config"]))).run("true")
    with pytest.raises(ConnectFailed, match="ssh_config file .* does not exist"):
        SSHPool().host(HostSpec("covtest", ssh_config=str(tmp_path / "none.cfg"))).run("true")
    assert local.port


def test_connection_killed_mid_task_is_resumed(ssh_home, hosts):
    # keepalive=1: heartbeat lines come every second while the task runs
    task = ct.electron(sleeper, executor=ct.executor.SSHExecutor(hostname="covtest", keepalive=1))

    @ct.lattice
    def wf():
        return task(2.5, 42)

    dispatch_id = ct.dispatch(wf)()
    pid = wait_for_pid(ssh_home, dispatch_id, 0)
    killed = _sshd_session_processes(int((hosts["local"].dir / "sshd.pid").read_text()))
    assert killed, "no sshd process serves the runner's connection"
    for child in killed:  # the monitor and the unprivileged child: the TCP connection drops
        os.kill(child, signal.SIGKILL)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == 42
    assert run_state(ssh_home, dispatch_id).tasks[0].pid == pid  # the same process, not a rerun
    log = (ssh_home / ".runners" / "runner.log").read_text()
    assert "while running task sleeper; resuming" in log


def test_cancel_kills_the_remote_process_group(ssh_home, hosts):
    task = ct.electron(sleeper, executor=ct.executor.SSHExecutor(hostname=hosts["h2"].name))

    @ct.lattice
    def wf():
        return task(60, 1)

    dispatch_id = ct.dispatch(wf)()
    pid = wait_for_pid(ssh_home, dispatch_id, 0)
    assert not wait_pid_gone(pid, timeout=0.2)
    ct.cancel(dispatch_id)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.CANCELLED
    assert wait_pid_gone(pid), f"remote task pid {pid} still alive after cancel"


def test_restarted_runner_reattaches_to_the_running_remote_task(ssh_home, hosts):
    task = ct.electron(sleeper, executor=ct.executor.SSHExecutor(hostname="cov-h1"))

    @ct.lattice
    def wf():
        return task(2, 7)

    dispatch_id = ct.dispatch(wf)()
    pid = wait_for_pid(ssh_home, dispatch_id, 0)
    from runner.liveness import read_runners
    from runner.daemon import ensure_running

    for info in read_runners(ssh_home):
        os.kill(int(info["pid"]), signal.SIGKILL)
    time.sleep(0.2)
    ensure_running(ssh_home)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == 7
    state = run_state(ssh_home, dispatch_id).tasks[0]
    assert state.pid == pid and state.attempt == 1  # waited for, not started again


def ssh_env_var() -> str:
    return os.environ.get("COV_PRELUDE_SAYS", "") + " " + os.getcwd()


def test_executor_ssh_uses_the_config_sections_defaults_and_prelude(ssh_home, hosts):
    config = Path(os.environ["COV_CONFIG"])
    config.write_text(config.read_text().replace(
        "  ssh:\n", "  ssh:\n    hostname: covtest\n    prelude: ['export COV_PRELUDE_SAYS=hi']\n"
        "    create_unique_workdir: true\n"))
    task = ct.electron(ssh_env_var, executor="ssh")

    @ct.lattice
    def wf():
        return task()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    said, cwd = result.result.split(" ")
    assert said == "hi"
    assert cwd == f"/tmp/cov-ssh-test-work/{result.dispatch_id}/node_0"
    assert run_state(ssh_home, result.dispatch_id).tasks[0].host == socket.gethostname()


def test_50_mb_argument_and_result(ssh_home):
    data = os.urandom(50 * 1024 * 1024)
    task = ct.electron(big, executor=ct.executor.SSHExecutor(hostname="covtest"))

    @ct.lattice
    def wf(blob):
        return task(blob)

    result = ct.dispatch_sync(wf)(data)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == data[::-1] + b"!"
    leftovers = Path(REMOTE_HOME, ".cache/cov", result.dispatch_id)
    deadline = time.time() + 5
    while leftovers.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not leftovers.exists(), "remote task files were not cleaned up"


def test_100_tasks_through_max_concurrent_4(ssh_home):
    task = ct.electron(window, executor=ct.executor.SSHExecutor(hostname="covtest",
                                                                max_concurrent=4))
    collect = ct.electron(sessions)

    @ct.lattice
    def wf():
        return collect([task(i) for i in range(100)])

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    rows = result.result
    assert [r[0] for r in rows] == list(range(100))
    events = sorted([(r[1], 1) for r in rows] + [(r[2], -1) for r in rows])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert 2 <= peak <= 4


def test_shared_filesystem_nothing_is_copied(cov_home, hosts, monkeypatch):
    """The host sees the run directory at the same path and writes into it as its owner (run
    directories are their owner's only): the user there is ours, root, so the test logs in as
    root (the hosts' authorized_keys file serves every user)."""
    monkeypatch.setenv("COV_SSH_CONFIG", str(hosts["config"]))
    task = ct.electron(chatty, executor=ct.executor.SSHExecutor(
        hostname=hosts["h1"].name, username="root", shared_filesystem=True))

    @ct.lattice
    def wf():
        return task(5)

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.get_node_result(0)["error"]
    assert result.result == 10
    assert result.get_node_result(0)["stdout"] == "stdout line 5\nchild process 5\n"
    assert (cov_home / result.dispatch_id / "ssh").is_dir()  # the bundle went there
    assert not Path("/root/.cache/cov", result.dispatch_id).exists()  # nothing was copied


def test_cov_check(ssh_home, run_cov, hosts, infra_root):
    env = {"COV_SSH_CONFIG": str(hosts["config"])}
    ok = run_cov("check", "cov-h1", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "python" in ok.stdout and "3." in ok.stdout
    assert "cloudpickle" in ok.stdout and "ships its own copy" in ok.stdout
    assert hosts["h1"].name in ok.stdout
    named = run_cov("check", "gpu-box", "--json", env=env)  # an executor in the config file
    assert named.returncode == 0, named.stderr
    report = json.loads(named.stdout)
    assert report["usable"] and report["remote_hostname"] == hosts["h1"].name

    fake = infra_root / "fake-python"
    fake.write_text("#!/bin/sh\necho '{\"python\": [3, 6, 15], \"executable\": \"/old/python\", "
                    "\"cloudpickle\": \"1.6.0\", \"home\": \"/home/covtest\", \"host\": \"old\"}'\n")
    fake.chmod(0o755)
    bad = run_cov("check", "covtest", "--python", str(fake), env=env)
    assert bad.returncode == 1
    assert "3.6.15" in bad.stdout + bad.stderr
    assert "cannot be loaded by 3.6" in bad.stdout + bad.stderr

    down = run_cov("check", f"covtest@127.0.0.1:{_free_port()}", "--attempts", "1", env=env)
    assert down.returncode == 1 and "connection refused" in down.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
