"""Smoke tests: each real-component fixture in tests/infra/fixtures.py works.

Fast (a few seconds in total, most of it the first Slurm job). They need the
fixtures registered as a plugin (``pytest_plugins = ["tests.infra.fixtures"]``
in tests/conftest.py, or ``-p tests.infra.fixtures``).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, List

from fabric import Connection

from tests.infra.fixtures import SlurmCluster, SSHHost


def _scontrol_job(job_id: str) -> dict:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def test_slurm_node_idle(slurm_cluster: SlurmCluster) -> None:
    # Runs first on purpose: slurmctld schedules its first job only ~3 s after it
    # starts, so the sshd/netns/chromium tests below overlap that wait.
    r = subprocess.run(["sinfo", "-h", "-n", slurm_cluster.node, "-o", "%t %P %G"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # the default partition first, then the two for preemption tests; the node's fake GPUs
    assert r.stdout.splitlines() == [f"idle {p} gpu:2" for p in (
        slurm_cluster.partition + "*", "preemptible", "urgent")], r.stdout


def test_sshd_fabric_run_put_get(sshd_host: SSHHost, tmp_path: Path) -> None:
    with Connection(**sshd_host.fabric_kwargs()) as c:
        r = c.run("id -un; echo $HOME; test -w $HOME && echo writable", hide=True, in_stream=False)
        user, home, writable = r.stdout.split()
        assert user == "covtest" and writable == "writable"
        assert c.run("exit 3", hide=True, warn=True, in_stream=False).exited == 3

        local = tmp_path / "up.txt"
        local.write_text("hello\n" * 100)
        remote = f"{home}/smoke-{os.getpid()}.txt"
        c.put(str(local), remote)
        c.get(remote, str(tmp_path / "down.txt"))
        c.run(f"rm -f {remote}", hide=True, in_stream=False)
    assert (tmp_path / "down.txt").read_text() == local.read_text()


def test_sshd_openssh_client(sshd_host: SSHHost) -> None:
    r = subprocess.run(
        sshd_host.ssh_command("echo", "ok"), capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_netns_hosts_are_separate_hosts(netns_hosts: List[SSHHost]) -> None:
    assert len(netns_hosts) == 2
    seen = []
    for h in netns_hosts:
        assert h.proxy_command and h.port == 22
        with Connection(**h.fabric_kwargs()) as c:
            out = c.run("hostname; id -un; cat /proc/net/dev | grep -c :", hide=True, in_stream=False).stdout.split()
        hostname, user, n_ifaces = out
        assert hostname == h.name and user == "covtest"
        assert n_ifaces == "1"  # only lo inside the namespace
        seen.append(hostname)
    assert len(set(seen)) == 2
    # the OpenSSH client works through the ProxyCommand too
    r = subprocess.run(
        netns_hosts[1].ssh_command("hostname"), capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == netns_hosts[1].name


def test_chromium_opens_data_url(chromium_page: Any) -> None:
    chromium_page.goto("data:text/html,<title>smoke</title><button id=b onclick=\"this.textContent='clicked'\">go</button>")
    assert chromium_page.title() == "smoke"
    chromium_page.click("#b")
    assert chromium_page.inner_text("#b") == "clicked"


def test_slurm_sbatch_completes(slurm_cluster: SlurmCluster) -> None:
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.conf)
    out = slurm_cluster.dir / "smoke-%j.out"
    job_id = subprocess.run(
        ["sbatch", "--parsable", "-o", str(out), "--wrap", "hostname; echo slurm-ok"],
        capture_output=True, text=True, check=True, cwd=slurm_cluster.dir,
    ).stdout.strip().split(";")[0]
    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline:
        info = _scontrol_job(job_id)
        state = info.get("JobState", "")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            break
        time.sleep(0.05)
    assert state == "COMPLETED", info
    assert info["ExitCode"] == "0:0"
    assert "slurm-ok" in Path(str(out).replace("%j", job_id)).read_text()
