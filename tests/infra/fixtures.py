"""Pytest fixtures for tests against real components: sshd, network-namespace
"hosts", a single-node Slurm cluster and headless Chromium (Playwright).

Enable them for the whole suite with, in ``tests/conftest.py``::

    pytest_plugins = ["tests.infra.fixtures"]

or on the command line with ``python -m pytest -p tests.infra.fixtures``.

All fixtures are session-scoped (with pytest-xdist: one per worker; tests/infra/parallel.py
keeps the tests of the one Slurm cluster on one worker), start
their component through the shell scripts next to this file, and stop it at the
end of the session. They need root and the Debian packages installed by
``tests/infra/install_system_deps.sh``. If a binary is missing they skip the test
with the reason, except under CI (``CI`` set to a true value), where a missing
component is a failure: CI installs everything, so there they must run.

The scripts' files (keys, configs, logs, PID files) live in one directory per
session, ``/tmp/cov-infra-XXXXXXXX`` (``COV_INFRA_TMPDIR`` changes the parent),
removed at the end of the session unless ``COV_INFRA_KEEP=1``. It is not
pytest's ``tmp_path_factory``: pytest makes its temp dirs 0700 (and resets
``/tmp/pytest-of-root`` to 0700 at every session start), but sshd reads
``authorized_keys`` as the unprivileged user ``covtest``, and Slurm jobs or
SSH sessions running as ``covtest`` must reach ``slurm.conf`` and the munge socket.

Nothing here imports the project's packages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "INFRA_DIR",
    "SSHHost",
    "SlurmCluster",
    "infra_root",
    "sshd_host",
    "netns_hosts",
    "slurm_cluster",
    "chromium_browser",
    "chromium_page",
]

INFRA_DIR = Path(__file__).resolve().parent
"""Directory holding the start/stop scripts."""

TEST_USER = "covtest"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS: List[str] = [
    "--no-sandbox",  # required as root
    "--disable-gpu",
    "--disable-background-networking",  # no outbound connections (closed network)
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
"""Flags for Debian's Chromium on the test machines (see test-infra.md)."""

_SCRIPT_TIMEOUT = 90.0
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def _path_with_sbin(path: Optional[str] = None) -> str:
    """PATH plus the sbin dirs (root's daemons live there; some PATHs lack them)."""
    parts = (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep)
    return os.pathsep.join([p for p in parts if p] + [d for d in _SBIN if d not in parts])


# --------------------------------------------------------------------------- helpers


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI, where every component must be present."""
    reason += " (install with: bash tests/infra/install_system_deps.sh)"
    if _in_ci():
        pytest.fail(f"CI: required test component unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root(what: str) -> None:
    """For a test that needs root for ``what`` (another account, a mount, a namespace): skip
    it with the reason when not root, fail it under CI (which runs as root)."""
    if os.geteuid() != 0:
        reason = f"{what} needs root (.ci/run runs the tests as root)"
        if _in_ci():
            pytest.fail(f"CI: {reason}", pytrace=False)
        pytest.skip(reason)


def _require(what: str, binaries: Sequence[str], root: bool = True) -> None:
    missing = []
    for b in binaries:
        if os.path.isabs(b):
            if not os.access(b, os.X_OK):
                missing.append(b)
        elif shutil.which(b, path=_path_with_sbin()) is None:
            missing.append(b)
    if missing:
        _unavailable(f"{what} needs {', '.join(missing)}, not found")
    if root:
        require_root(what)


def _run_script(script: str, *args: str, env: Optional[Dict[str, str]] = None) -> None:
    cmd = ["bash", str(INFRA_DIR / script), *args]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    full_env["PATH"] = _path_with_sbin(full_env.get("PATH"))
    proc = subprocess.run(
        cmd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=_SCRIPT_TIMEOUT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc={proc.returncode}):\n{proc.stdout}")


def _free_port(addr: str = "127.0.0.1") -> int:
    """A port that is free right now (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


def _session_tag() -> str:
    return uuid.uuid4().hex[:6]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SSHHost:
    """How to reach one test sshd.

    For the loopback sshd: ``hostname='127.0.0.1'``, a free ``port``, no proxy.
    For a network-namespace host: ``hostname == name`` (just a label: the
    connection goes through ``proxy_command``), ``port == 22``.
    """

    name: str
    """Host alias: the ``Host`` in ``ssh_config``; the netns name for namespace hosts."""
    hostname: str
    port: int
    username: str
    key_file: str
    """Private key (ed25519, no passphrase) accepted for ``username``."""
    dir: Path
    """Directory with sshd_config, sshd.log, sshd.pid, keys, known_hosts, ssh_config."""
    proxy_command: Optional[str] = None
    """ProxyCommand to reach the host, e.g. ``ip netns exec covh1-1a2b3c nc 127.0.0.1 22``."""
    known_hosts: str = ""
    """known_hosts file holding this server's host key (under ``name`` or ``[hostname]:port``)."""
    ssh_config: str = ""
    """OpenSSH client config: ``ssh -F ssh_config name CMD`` just works."""

    @property
    def connect_kwargs(self) -> Dict[str, Any]:
        """Paramiko/Fabric ``connect_kwargs``: only our key, no agent, no ~/.ssh keys."""
        return {"key_filename": self.key_file, "look_for_keys": False, "allow_agent": False}

    def fabric_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for ``fabric.Connection(**host.fabric_kwargs())``."""
        kw: Dict[str, Any] = {
            "host": self.hostname,
            "port": self.port,
            "user": self.username,
            "connect_kwargs": self.connect_kwargs,
        }
        if self.proxy_command:
            kw["gateway"] = self.proxy_command  # a str gateway is a ProxyCommand
        return kw

    def ssh_command(self, *remote_command: str) -> List[str]:
        """argv for the OpenSSH client, e.g. ``subprocess.run(host.ssh_command('hostname'))``."""
        return ["ssh", "-F", self.ssh_config, self.name, *remote_command]


@dataclass(frozen=True)
class SlurmCluster:
    """A running single-node Slurm cluster (node ``localhost``, partition ``debug``; also
    ``preemptible`` and ``urgent`` for preemption, two fake GPUs, memory enforced: see
    tests/infra/slurm.sh).

    Client commands need ``SLURM_CONF=conf``; the ``slurm_cluster`` fixture sets it
    in ``os.environ`` for the session. ``sacct`` does not work (no slurmdbd): use
    ``scontrol show job -o ID`` (finished jobs are kept 300 s) or ``jobcomp_file``.
    """

    dir: Path
    conf: Path
    """Path of slurm.conf (the value for ``SLURM_CONF``)."""
    slurmctld_port: int
    slurmd_port: int
    partition: str = "debug"
    node: str = "localhost"
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def env(self) -> Dict[str, str]:
        """Environment additions for client commands (``SLURM_CONF``)."""
        return {"SLURM_CONF": str(self.conf)}

    @property
    def jobcomp_file(self) -> Path:
        """One line per finished job (``JobState=... ExitCode=...``), from jobcomp/filetxt."""
        return self.dir / "log" / "jobcomp.txt"

    @property
    def log_dir(self) -> Path:
        return self.dir / "log"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def infra_root() -> Iterator[Path]:
    """Per-session directory (mode 0755, outside pytest's 0700 tmp tree) for the
    infrastructure fixtures' files. Removed at session end unless COV_INFRA_KEEP=1."""
    parent = os.environ.get("COV_INFRA_TMPDIR", "/tmp")
    root = Path(tempfile.mkdtemp(prefix="cov-infra-", dir=parent))
    root.chmod(0o755)
    try:
        yield root
    finally:
        if os.environ.get("COV_INFRA_KEEP", "") in ("", "0"):
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_host(infra_root: Path) -> Iterator[SSHHost]:
    """A private sshd on 127.0.0.1:<free port>, key-only, user ``covtest``.

    ``covtest`` is an unprivileged user with bash and a clean home
    (``/home/covtest``, writable, no .bashrc), so remote commands do not pay for
    root's pyenv .bashrc. Example::

        from fabric import Connection
        c = Connection(**sshd_host.fabric_kwargs())
        c.run("hostname", hide=True)

    Tip: Paramiko does not set TCP_NODELAY; setting it after connecting
    (``c.client.get_transport().sock.setsockopt(socket.IPPROTO_TCP,
    socket.TCP_NODELAY, 1)``) cuts ~40 ms per command.
    """
    _require("sshd_host", ["/usr/sbin/sshd", "ssh-keygen", "useradd", "usermod", "flock"])
    d = infra_root / "sshd"
    last_err: Optional[Exception] = None
    port = 0
    for _ in range(3):  # another process may grab the port between probe and bind
        port = _free_port()
        try:
            _run_script("sshd.sh", "start", str(d), str(port))
            last_err = None
            break
        except RuntimeError as e:
            last_err = e
            _run_script("sshd.sh", "stop", str(d))
    if last_err is not None:
        raise last_err
    host = SSHHost(
        name=TEST_USER,
        hostname="127.0.0.1",
        port=port,
        username=TEST_USER,
        key_file=str(d / "client_key"),
        dir=d,
        known_hosts=str(d / "known_hosts"),
        ssh_config=str(d / "ssh_config"),
    )
    try:
        yield host
    finally:
        _run_script("sshd.sh", "stop", str(d))


@pytest.fixture(scope="session")
def netns_hosts(infra_root: Path) -> Iterator[List[SSHHost]]:
    """Two separate "hosts", each a network namespace (own ``lo``, own port 22)
    with its own hostname and a private sshd on its 127.0.0.1:22, user ``covtest``.

    Names are ``covh1-<tag>`` and ``covh2-<tag>`` with a random tag per session,
    so parallel sessions do not collide; ``hostname`` on each prints its name.
    Reach them through ``proxy_command`` (``ip netns exec NAME nc 127.0.0.1 22``)::

        c = Connection(**netns_hosts[0].fabric_kwargs())   # gateway=proxy_command

    Only network and hostname are separate: files, users and PIDs are shared,
    so give each host its own remote work dir.
    """
    _require("netns_hosts", ["ip", "nc", "unshare", "/usr/sbin/sshd", "ssh-keygen", "flock"])
    tag = _session_tag()
    hosts: List[SSHHost] = []
    started: List[Tuple[str, Path]] = []
    try:
        for i in (1, 2):
            name = f"covh{i}-{tag}"
            d = infra_root / name
            started.append((name, d))
            _run_script("netns_host.sh", "start", name, str(d))
            hosts.append(
                SSHHost(
                    name=name,
                    hostname=name,
                    port=22,
                    username=TEST_USER,
                    key_file=str(d / "client_key"),
                    dir=d,
                    proxy_command=f"ip netns exec {name} nc 127.0.0.1 22",
                    known_hosts=str(d / "known_hosts"),
                    ssh_config=str(d / "ssh_config"),
                )
            )
        yield hosts
    finally:
        for name, d in started:
            try:
                _run_script("netns_host.sh", "stop", name, str(d))
            except Exception:  # keep stopping the others
                pass


@pytest.fixture(scope="session")
def slurm_cluster(infra_root: Path) -> Iterator[SlurmCluster]:
    """A single-node Slurm cluster (slurmctld + slurmd + its own munged) on free
    ports, node ``localhost`` with all CPUs, partition ``debug``, jobs as root.

    Sets ``os.environ['SLURM_CONF']`` for the session (restored afterwards), so
    ``sbatch``/``squeue``/``scontrol``/``scancel`` run by the tests find it.
    With ``batch_sched_delay=0`` a job completes ~1 s after ``sbatch`` (the
    first one ~2 s). ``sacct`` does not work; see :class:`SlurmCluster`.
    """
    _require("slurm_cluster", ["slurmctld", "slurmd", "sinfo", "sbatch", "munged", "munge", "unmunge"])
    d = infra_root / "slurm"
    old_conf = os.environ.get("SLURM_CONF")
    cluster: Optional[SlurmCluster] = None
    last_err: Optional[Exception] = None
    try:
        for _ in range(3):  # the daemons listen on all addresses; retry on a port clash
            ctld, slurmd = _free_port("0.0.0.0"), _free_port("0.0.0.0")
            if ctld == slurmd:
                continue
            env = {"SLURMCTLD_PORT": str(ctld), "SLURMD_PORT": str(slurmd)}
            try:
                _run_script("slurm.sh", "start", str(d), env=env)
            except RuntimeError as e:
                last_err = e
                _run_script("slurm.sh", "stop", str(d))
                continue
            cluster = SlurmCluster(dir=d, conf=d / "slurm.conf", slurmctld_port=ctld, slurmd_port=slurmd)
            break
        if cluster is None:
            raise last_err or RuntimeError("could not start Slurm")
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        try:
            _run_script("slurm.sh", "stop", str(d))
        finally:
            if old_conf is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = old_conf


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright's sync API: a
    ``playwright.sync_api.Browser``, shared by the session (a launch costs ~0.3 s).

    Uses ``/usr/bin/chromium`` through ``executable_path``, so ``playwright
    install`` is never needed (and must not be run). Open a new context per test
    (or use ``chromium_page``)::

        ctx = chromium_browser.new_context(); page = ctx.new_page()
        page.goto("http://127.0.0.1:PORT/"); ...; ctx.close()

    Playwright's sync API refuses to run inside a running asyncio event loop.
    """
    _require("chromium_browser", [CHROMIUM], root=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("chromium_browser needs the Python package playwright")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def chromium_page(chromium_browser: Any) -> Iterator[Any]:
    """A fresh ``playwright.sync_api.Page`` in its own browser context (per test)."""
    ctx = chromium_browser.new_context()
    try:
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        yield page
    finally:
        ctx.close()
