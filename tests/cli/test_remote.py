"""``cov dispatch --on HOST``, ``cov ... --on HOST`` and ``cov pull HOST RUN`` against the real
loopback sshd (tests/infra/fixtures.py), as user ``covtest``.

The "laptop" is this process (root, runs home ``cov_home``); the host is ``covtest`` reached
through an ssh_config alias, with cov from this worktree under the project's venv, and its own
runs home and config (set in the executor's prelude, as a user's ``module load`` would).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from runner.layout import ENV, MANIFEST
from tests.conftest import REPO
from tests.infra.fixtures import SSHHost

# The system's Python 3.11 (the venv's interpreter may live under /root, closed to covtest) with
# a readable copy of cov and of its dependencies from this venv: "cov installed there".
REMOTE_PYTHON = "/usr/bin/python3"


def _requirement_closure(name: str) -> List[importlib.metadata.Distribution]:
    """The installed distributions ``name`` needs, itself excluded (extras left out)."""
    found: Dict[str, importlib.metadata.Distribution] = {}
    todo = [req for req in importlib.metadata.requires(name) or [] if "extra ==" not in req]
    while todo:
        wanted = re.split(r"[\s;<>=!~\[(]", todo.pop().strip(), maxsplit=1)[0]
        key = re.sub(r"[-_.]+", "-", wanted).lower()
        if key in found:
            continue
        try:
            dist = importlib.metadata.distribution(wanted)
        except importlib.metadata.PackageNotFoundError:
            continue
        found[key] = dist
        todo.extend(req for req in dist.requires or [] if "extra ==" not in req)
    return list(found.values())


@pytest.fixture(scope="session")
def remote_path() -> Iterator[str]:
    """PYTHONPATH for covtest: cov's packages and the files of its dependencies, copied from
    this checkout and venv into a world-readable folder (wherever CI cloned the project)."""
    base = Path(tempfile.mkdtemp(prefix="cov-remote-site-",
                                 dir=os.environ.get("COV_INFRA_TMPDIR", "/tmp")))
    for package in ("covalent_cli", "runner", "webui"):
        shutil.copytree(REPO / package, base / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for dist in _requirement_closure("cov"):
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # scripts outside site-packages; caches are rebuilt
            source = Path(str(dist.locate_file(file)))
            if source.is_file():
                (base / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, base / file)
    for folder, dirs, files in os.walk(base):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    yield str(base)
    shutil.rmtree(base, ignore_errors=True)

SCRIPT = '''
import getpass
import os

import covalent as ct

@ct.electron
def who(x):
    return [getpass.getuser(), x * 2]

@ct.electron
def boom(x):
    raise ValueError("no good")

@ct.lattice
def wf(x=3, fail=False):
    return boom(x) if fail else who(x)

print("script loaded")
'''

BIG = '''
import covalent as ct

@ct.electron
def size(blob):
    return len(blob)

@ct.lattice
def wf(blob):
    return size(blob)

ct.dispatch(wf)(os.urandom(60_000_000))
'''


@pytest.fixture
def remote(sshd_host: SSHHost, infra_root: Path, tmp_path: Path, cov_home: Path,
           monkeypatch: pytest.MonkeyPatch, remote_path: str) -> Iterator[Dict[str, Path]]:
    """Executor ``lab`` (ssh_config alias ``covtest``) with a runs home and config of its own,
    owned by covtest; its runners are stopped at the end."""
    base = Path(os.environ.get("COV_INFRA_TMPDIR", "/tmp")) / f"cov-remote-{tmp_path.name}"
    base.mkdir(mode=0o755)
    home, config = base / "runs", base / "config.yaml"
    config.write_text("runner:\n  idle_timeout: 3\n  rescan_interval: 0.5\n"
                      "  heartbeat_interval: 1\n")
    os.chown(base, 1001, 1001)
    os.chown(config, 1001, 1001)
    ssh_config = infra_root / "cov-remote-ssh-config"
    ssh_config.write_text(Path(sshd_host.ssh_config).read_text() + "\nHost *\n  ProxyJump none\n")
    monkeypatch.setenv("COV_SSH_CONFIG", str(ssh_config))
    local_config = Path(os.environ["COV_CONFIG"])
    local_config.write_text(local_config.read_text() + textwrap.dedent(f"""\
        executors:
          lab:
            type: ssh
            hostname: {sshd_host.name}
            python_path: {REMOTE_PYTHON}
            prelude:
              - export PYTHONPATH={remote_path}
              - export COV_HOME={home}
              - export COV_CONFIG={config}
        """))
    yield {"home": home, "config": config}
    import subprocess

    subprocess.run(["runuser", "-u", "covtest", "--", "env", f"PYTHONPATH={remote_path}",
                    f"COV_HOME={home}", f"COV_CONFIG={config}", REMOTE_PYTHON, "-m",
                    "covalent_cli.cli", "runner", "stop"], capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ns_remote(remote: Dict[str, Path], netns_hosts: List[SSHHost], infra_root: Path
              ) -> Dict[str, Path]:
    """Executor ``lab-ns`` as well: alias ``ns-jump``, reached by ProxyJump through the first
    namespace host (itself behind a ProxyCommand) to that host's own 127.0.0.1:22."""
    h1 = netns_hosts[0]
    ssh_config = Path(os.environ["COV_SSH_CONFIG"])
    ssh_config.write_text(
        f"Host ns-jump\n  HostName 127.0.0.1\n  Port 22\n  User covtest\n"
        f"  IdentityFile {h1.key_file}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {h1.known_hosts}\n  HostKeyAlias {h1.name}\n"
        f"  ProxyJump {h1.name}\n\n" + Path(h1.ssh_config).read_text() + "\n" +
        ssh_config.read_text())
    config = Path(os.environ["COV_CONFIG"])
    text = config.read_text()
    lab = text[text.index("  lab:\n"):]
    config.write_text(text + lab.replace("  lab:\n", "  lab-ns:\n", 1).replace(
        "hostname: covtest", "hostname: ns-jump"))
    return {**remote, "hostname": Path(h1.name)}


def _local_runs(home: Path) -> list:
    return sorted(p.name for p in home.iterdir() if not p.name.startswith(".")) \
        if home.exists() else []


def test_dispatch_on_runs_there_and_status_wait_result_relay(
        remote: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:
    script = tmp_path / "wf.py"  # in pytest's 0700 tree: covtest cannot read it
    script.write_text(SCRIPT)
    done = run_cov("dispatch", "--on", "lab", str(script), "-a", "x=21", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    (run_id,) = doc["dispatch_ids"]
    assert "script loaded" in done.stderr  # the script's prints: not in the JSON document
    assert doc["home"] == str(remote["home"])
    assert (remote["home"] / run_id / MANIFEST).exists()
    assert not (remote["home"] / run_id / ENV).exists()  # this machine's env stays here

    waited = run_cov("wait", "--on", "lab", run_id)
    assert waited.returncode == 0, waited.stderr
    result = run_cov("result", run_id, "--on", "lab", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"] == ["covtest", 42]  # ran as the remote user
    status = run_cov("status", "--on", "lab", run_id, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "COMPLETED"
    listed = run_cov("runs", "--on", "lab", "--json")
    assert run_id in listed.stdout

    # Nothing ran here: no run, no runner in the local home.
    assert _local_runs(cov_home) == []
    assert not (cov_home / ".runners").exists()


def test_failed_run_and_unknown_run_keep_their_exit_codes(
        remote: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:
    script = tmp_path / "wf.py"
    script.write_text(SCRIPT)
    done = run_cov("dispatch", "--on", "lab", str(script), "-a", "fail=true", "--wait")
    local_failed = run_cov("dispatch", str(script), "-a", "fail=true", "--wait")
    assert done.returncode == local_failed.returncode != 0  # as a local failed run
    assert "FAILED" in done.stderr and "0: boom" in done.stderr
    missing = run_cov("status", "--on", "lab", "nosuchrun")
    local_missing = run_cov("status", "nosuchrun")
    assert missing.returncode == local_missing.returncode != 0
    assert missing.stderr.strip().splitlines() == [  # the host's one line, naming its home
        local_missing.stderr.strip().replace(str(cov_home), str(remote["home"]))]


def test_pull_then_local_commands_work_with_the_host_gone(
        remote: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:
    script = tmp_path / "wf.py"
    script.write_text(SCRIPT)
    done = run_cov("dispatch", "--on", "lab", str(script), "-q", "--wait")
    assert done.returncode == 0, done.stderr
    printed, run_id, value = done.stdout.splitlines()  # as a local dispatch -q --wait prints
    assert printed == "script loaded" and value == "['covtest', 6]"
    pulled = run_cov("pull", "lab", run_id[:8])
    assert pulled.returncode == 0, pulled.stderr
    assert f"Pulled {run_id}" in pulled.stdout
    again = run_cov("pull", "lab", run_id)
    assert "(0 file(s) copied)" in again.stdout  # incremental: nothing changed

    # The host is gone: an executor pointing nowhere, and the local commands do not care.
    offline = {"COV_SSH_CONFIG": "/nonexistent"}
    status = run_cov("status", run_id, "--json", env=offline)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "COMPLETED"
    result = run_cov("result", run_id, "--json", env=offline)
    assert json.loads(result.stdout)["result"] == ["covtest", 6]
    assert _local_runs(cov_home) == [run_id]


def test_connection_dropped_mid_ship_leaves_no_half_run(
        remote: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:
    """The connection is closed while the run's 60 MB travel: the host shows no run (neither
    in ``cov runs`` nor as a directory) until a whole one arrives."""
    from covalent_cli.cli.remote_on import remote_cov
    from runner.remote_run import RemoteRunError, ship

    script = tmp_path / "big.py"
    script.write_text("import os\n" + BIG)
    staging = tmp_path / "staging"
    built = run_cov("dispatch", str(script), "--json",
                    env={"COV_HOME": str(staging), "COV_NO_RUNNER": "1"})
    assert built.returncode == 0, built.stderr
    (run_id,) = json.loads(built.stdout)["dispatch_ids"]
    lab = remote_cov("lab")
    home = lab.probe()
    remote["home"].mkdir(exist_ok=True)
    os.chown(remote["home"], 1001, 1001)

    def cut_when_arriving() -> None:  # close the TCP connection once bytes have landed
        deadline = time.time() + 60
        while time.time() < deadline:
            partial = [p for p in remote["home"].glob(".tmp-ship-*/*/*")]
            if partial:
                lab.host.transport().sock.close()
                return
            time.sleep(0.005)

    cutter = threading.Thread(target=cut_when_arriving)
    cutter.start()
    with pytest.raises(RemoteRunError):
        ship(lab, staging / run_id, home)
    cutter.join()
    lab.host.close()
    time.sleep(1)  # the remote tar sees EOF and exits
    assert not (remote["home"] / run_id).exists()
    listed = run_cov("runs", "--on", "lab", "--json")
    assert listed.returncode == 0, listed.stderr
    assert run_id not in listed.stdout

    # Shipped again over a new connection, it arrives whole and runs there.
    lab = remote_cov("lab")
    ship(lab, staging / run_id, home)
    assert not list(remote["home"].glob(".tmp-ship-*"))  # the dropped attempt's leftovers too
    lab.start_runner(home)
    lab.host.close()
    waited = run_cov("wait", "--on", "lab", run_id)
    assert waited.returncode == 0, waited.stderr
    result = run_cov("result", "--on", "lab", run_id, "--json")
    assert json.loads(result.stdout)["result"] == 60_000_000


def test_dispatch_on_through_proxyjump_to_a_namespace_host(
        ns_remote: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:
    script = tmp_path / "where.py"
    script.write_text("import socket\nimport covalent as ct\n\n@ct.electron\ndef where():\n"
                      "    return socket.gethostname()\n\n@ct.lattice\ndef wf():\n"
                      "    return where()\n")
    done = run_cov("dispatch", "--on", "lab-ns", str(script), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # the shape of a local ``dispatch --wait --json``
    (run,) = doc["runs"]
    assert run["status"] == "COMPLETED" and doc["dispatch_ids"] == [run["dispatch_id"]]
    assert run["result"] == str(ns_remote["hostname"])  # ran on the namespace host
    listed = run_cov("runs", "--on", "lab-ns", "-q")
    (run_id,) = listed.stdout.split()
    result = run_cov("result", "--on", "lab-ns", run_id, "--json")
    assert json.loads(result.stdout)["result"] == str(ns_remote["hostname"])
    assert _local_runs(cov_home) == []


def test_on_without_a_host_or_command_is_a_one_line_usage_error(cov_home: Path, run_cov) -> None:
    helped = run_cov("status", "--on", "lab", "--help")
    assert helped.returncode == 0 and "Usage: cov status" in helped.stdout
    for command in ("status", "logs", "wait", "result", "cancel", "runs", "rm", "dispatch"):
        shown = run_cov(command, "--help")
        assert shown.returncode == 0 and re.search(r"^  --on HOST +\S", shown.stdout, re.M), \
            command  # listed, with a help text
    for argv in (["status", "--on"], ["--on", "lab"], ["ui", "--on", "lab"]):
        done = run_cov(*argv)
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0 and len(lines) == 1 and lines[0].startswith("Error: "), argv


def test_executor_names_mean_what_the_host_configures(
        remote: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:
    """Executor ``there`` exists only in the host's config file: the run is built with it."""
    remote["config"].write_text(remote["config"].read_text() +
                                "executors:\n  there:\n    type: local\n")
    script = tmp_path / "named.py"
    script.write_text("import covalent as ct\n\n@ct.electron(executor='there')\ndef f():\n"
                      "    return 'ok'\n\n@ct.lattice\ndef wf():\n    return f()\n")
    local = run_cov("dispatch", str(script), "--dry-run")
    assert local.returncode != 0 and "unknown executor 'there'" in local.stderr
    done = run_cov("dispatch", "--on", "lab", str(script), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["result"] == "ok"
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("cov-dispatch-on-*/"
                                                                ".host-config.yaml"))


def test_dispatch_on_a_login_node_runs_the_tasks_as_slurm_jobs_there(
        remote: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path,
        slurm_cluster: Any) -> None:
    """The host's executor ``cluster`` is Slurm (in its config only); its jobs run as the
    host's user and the result comes back through ``--on``."""
    config = Path(os.environ["COV_CONFIG"])
    config.write_text(config.read_text().replace(
        f"      - export COV_CONFIG={remote['config']}\n",
        f"      - export COV_CONFIG={remote['config']}\n"
        f"      - export SLURM_CONF={slurm_cluster.conf}\n"))
    remote["config"].write_text(remote["config"].read_text() + textwrap.dedent("""\
        executors:
          cluster:
            type: slurm
            poll_freq: 0.3
            missing_grace: 1
            options:
              partition: debug
        """))
    script = tmp_path / "job.py"
    script.write_text("import getpass, os\nimport covalent as ct\n\n"
                      "@ct.electron(executor='cluster')\ndef f():\n"
                      "    return [getpass.getuser(), bool(os.environ.get('SLURM_JOB_ID'))]\n\n"
                      "@ct.lattice\ndef wf():\n    return f()\n")
    done = run_cov("dispatch", "--on", "lab", str(script), "--wait", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["result"] == ["covtest", True]
    assert _local_runs(cov_home) == []


def test_pull_of_an_unfinished_run_is_a_snapshot_no_runner_here_runs(
        remote: Dict[str, Path], cov_home: Path, run_cov, tmp_path: Path) -> None:
    """A running run comes as a consistent snapshot: the ended task with its result, the
    waiting one unfinished; no runner here serves it (a local runner is up all along), local
    readers work, a local waiter is told to wait there; pulling again brings the rest,
    copying only what changed."""
    from runner.layout import EVENTS, PULLED_FROM

    base = remote["home"].parent
    go, ran = base / "go", base / "ran"
    script = tmp_path / "gate.py"
    script.write_text(
        "import getpass, os, time\nimport covalent as ct\n\n"
        "@ct.electron\ndef first():\n    return 'early'\n\n"
        "@ct.electron\ndef gate(x):\n"
        f"    with open({str(ran)!r}, 'a') as f:\n        f.write(getpass.getuser() + '\\n')\n"
        f"    while not os.path.exists({str(go)!r}):\n        time.sleep(0.05)\n"
        "    return x + ' then through'\n\n"
        "@ct.lattice\ndef wf():\n    return gate(first())\n")
    ran.write_text("")
    os.chown(ran, 1001, 1001)
    done = run_cov("dispatch", "--on", "lab", str(script), "-q")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[-1]
    deadline = time.time() + 60  # until gate runs there (first ended, its result written)
    while not ran.read_text() and time.time() < deadline:
        time.sleep(0.05)
    assert ran.read_text() == "covtest\n"
    assert run_cov("runner", "start").returncode == 0  # a local runner, up before the pull

    early = run_cov("pull", "lab", run_id[:8])
    assert early.returncode == 0, early.stderr
    assert "a snapshot" in early.stderr and "RUNNING" in early.stderr
    local = cov_home / run_id
    assert json.loads((local / PULLED_FROM).read_text())["host"] == "lab"
    status = run_cov("status", run_id, "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    tasks = {t["name"]: t for t in doc["tasks"]}
    assert doc["status"] == "RUNNING" and tasks["first"]["status"] == "COMPLETED"
    assert tasks["gate"]["status"] != "COMPLETED"
    assert json.loads(run_cov("result", run_id, str(tasks["first"]["id"]), "--json").stdout
                      )["result"] == "early"  # an ended task's result came with its event
    waited = run_cov("wait", run_id)
    lines = waited.stderr.strip().splitlines()
    assert waited.returncode != 0 and len(lines) == 1 and "pulled from lab" in lines[0]
    cancelled = run_cov("cancel", run_id)  # the host's run: cancelled there, not here
    lines = cancelled.stderr.strip().splitlines()
    assert cancelled.returncode != 0 and len(lines) == 1 and "--on lab" in lines[0]
    other = {"COV_HOME": str(tmp_path / "other-home")}  # a second copy, removed unfinished
    assert run_cov("pull", "lab", run_id, env=other).returncode == 0
    removed = run_cov("rm", run_id, env=other)  # nothing here to cancel first: at once
    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "other-home" / run_id).exists()
    journal = (local / EVENTS).read_bytes()

    go.write_text("")
    assert run_cov("wait", "--on", "lab", run_id).returncode == 0
    assert (local / EVENTS).read_bytes() == journal  # no runner here touched the copy
    assert ran.read_text() == "covtest\n"  # gate ran once, there
    second = run_cov("pull", "lab", run_id)
    assert second.returncode == 0, second.stderr
    assert "snapshot" not in second.stderr
    copied = int(re.search(r"\((\d+) file", second.stdout).group(1))
    total = sum(1 for p in local.rglob("*") if p.is_file() and p.name != PULLED_FROM)
    assert 0 < copied < total  # only what changed: the manifest, the first result... stay
    assert (local / EVENTS).read_bytes().startswith(journal)
    assert json.loads(run_cov("result", run_id, "--json").stdout)["result"] == \
        "early then through"
    assert json.loads((local / PULLED_FROM).read_text())["status"] == "COMPLETED"

    result_file = next(p for p in local.rglob("*") if p.is_file() and
                       p.name.endswith(".pkl") and "result" in str(p.relative_to(cov_home)))
    result_file.unlink()
    third = run_cov("pull", "lab", run_id)
    assert "(1 file(s) copied)" in third.stdout  # size and mtime match for all the others
