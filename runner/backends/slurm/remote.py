"""The SSH mode: Slurm's commands on a login node reached through ``runner.ssh``.

``RemoteShell`` runs a command there (``cd DIR && argv``, quoted with ``shlex``; with
``bashrc_path`` set, that file is sourced first, as the Covalent plugin does: sites put
``module load slurm`` or ``SLURM_CONF`` there). Files:

* ``shared_filesystem=True``: the cluster sees the run directory at the same path, so job files
  stay in the run directory (``SharedSite``) and only commands go through SSH;
* otherwise (``RemoteSite``): a copy of the run directory's layout under
  ``<remote_workdir>/.cov/<dispatch id>/`` on the cluster. Bundles go up in one ``tar`` stream
  per submission; finished outcomes and logs come back in one ``tar`` stream per check; the
  copies of finished tasks are removed in one ``rm`` per poll (``cleanup``). While tasks
  run, what their logs gained comes back every ``LIVE_TICK`` in one command for all of them
  (``fetch_live``), so ``cov logs -f`` shows it live.

Version checks and cloudpickle shipping are ``runner.ssh.remote.prepare``'s (once per backend).
"""
from __future__ import annotations

import io
import os
import shlex
import tarfile
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from runner import layout, worker
from runner.backends.base import Task
from runner.backends.slurm.client import Result
from runner.backends.slurm.script import shell_path
from runner.backends.slurm.settings import SlurmSettings
from runner.backends.slurm.site import Identity, SharedSite, outcome_name
from runner.fs import atomic_write
from runner.redact import unmask
from runner.tar_stream import tar_files
from runner.layout import LOGS, RESULTS, SECRETS, SLURM_REMOTE as REMOTE_DIR


class RemoteShell:
    """Commands on the cluster's login node, over the shared SSH connection."""

    def __init__(self, host: Any, bashrc_path: str = "") -> None:
        self.host = host
        self.bashrc = bashrc_path

    def line(self, argv: Sequence[str], cwd: Optional[str] = None) -> str:
        command = shlex.join(argv)
        if cwd:
            command = f"cd {shlex.quote(cwd)} && {command}"
        if self.bashrc:
            command = f"source {shell_path(self.bashrc)} >/dev/null 2>&1; {command}"
            command = f"bash -c {shlex.quote(command)}"
        return command

    def run(self, argv: Sequence[str], cwd: Optional[str] = None,
            timeout: float = 60.0, input: Optional[bytes] = None) -> Result:
        from runner.ssh.connection import SSHError

        try:
            result = self.host.run(self.line(argv, cwd), input=input, timeout=timeout)
        except SSHError as exc:
            return Result(255, "", f"ssh: {exc}")
        return Result(result.exit_code, result.stdout.decode("utf-8", "replace"),
                      result.stderr.decode("utf-8", "replace"))

    def run_bytes(self, command: str, input: Optional[bytes] = None,
                  timeout: float = 120.0) -> Tuple[int, bytes, str]:
        """A raw shell line (tar streams); raises ``SSHError`` if the connection fails."""
        result = self.host.run(command, input=input, timeout=timeout)
        return result.exit_code, result.stdout, result.stderr.decode("utf-8", "replace")


class RemoteSite(SharedSite):
    """Job files in a copy of the run directory on the cluster; outcomes copied back."""

    live = True  # the logs are copies: running tasks' output is fetched (``fetch_live``)

    def __init__(self, shell: RemoteShell, base: str, check_every: float) -> None:
        super().__init__(shell)
        self.remote: RemoteShell = shell
        self.base = base.rstrip("/")  # absolute: <remote home>/<remote_workdir>/.cov
        self.check_every = check_every
        self._last_check: Dict[str, float] = {}
        self._renames: List[Tuple[str, str]] = []
        self._removals: List[str] = []
        self._later: List[str] = []  # shell lines (quoted already) for the next sweep
        # (run, node, attempt, stream) -> bytes of the remote log already in the local one
        self._live: Dict[Tuple[str, int, int, str], int] = {}

    # -- layout (as the job sees it) -------------------------------------------------------------
    def root(self, run: str) -> str:
        return f"{self.base}/{os.path.basename(run)}"

    def jobs_dir(self, run: str) -> str:
        return f"{self.root(run)}/{layout.SLURM_JOBS}"

    def job_log(self, run: str, job_id: str) -> str:
        return f"{self.jobs_dir(run)}/{layout.job_log_file(job_id)}"

    # -- writing -------------------------------------------------------------------------
    def prepare(self, run: str) -> None:
        if run in self._prepared:
            return
        os.makedirs(os.path.join(run, layout.SLURM), exist_ok=True)  # the local copy's side
        root = shlex.quote(self.root(run))
        files = [(layout.slurm_shipped_rel(name), data)
                 for name, data in worker.shipped_files().items()]
        dirs = " ".join(f"{root}/{d}" for d in (RESULTS, LOGS, layout.SLURM_BUNDLES,
                                                  layout.SLURM_JOBS))
        self._checked(f"mkdir -p {dirs} && cd {root} && tar xf -", tar_files(files))
        self._prepared.add(run)

    def write_bundles(self, run: str, bundles: Iterable[Tuple[int, int, bytes]]) -> None:
        """One tar stream; an earlier attempt's outcome and logs there are removed (they would
        look new)."""
        items = list(bundles)
        if not items:
            return
        data = tar_files((layout.slurm_bundle_rel(layout.attempt_name(node, attempt)), data)
                    for node, attempt, data in items)
        root = shlex.quote(self.root(run))
        # its logs too: fetched live before the job starts anew, they would pass for its own
        stale = " ".join(shlex.quote(rel) for n, a, _ in items if a > 1 for rel in
                         (layout.outcome_rel(n), *(layout.log_rel(n, s) for s in layout.STREAMS)))
        command = f"cd {root} && tar xf -"
        if stale:
            command += f" && rm -f -- {stale}"
        self._checked(command, data)

    def write_script(self, run: str, text: str) -> str:
        path = f"{self.jobs_dir(run)}/{layout.submit_script_file(os.urandom(4).hex())}"
        self._checked(f"cat > {shlex.quote(path)}", text.encode())
        return path

    def write_secrets(self, run: str, name: str, text: str) -> str:
        """0600 in a 0700 directory on the cluster (umask 077); the text goes on stdin, never
        on a command line other users see in ``ps``."""
        directory = f"{self.root(run)}/{SECRETS}"
        path, tmp = f"{directory}/{name}", f"{directory}/.{name}.tmp"
        self._checked(f"umask 077 && mkdir -p {shlex.quote(directory)} && chmod 700 "
                      f"{shlex.quote(directory)} && cat > {shlex.quote(tmp)} && mv -f "
                      f"{shlex.quote(tmp)} {shlex.quote(path)}", text.encode())
        return path

    def submitted(self, run: str, path: str, job_id: str) -> None:
        self._renames.append((path, f"{self.jobs_dir(run)}/{layout.job_script_file(job_id)}"))

    def discard_script(self, run: str, path: str) -> None:
        self._removals.append(path)

    # -- reading -------------------------------------------------------------------------
    def outcomes(self, run: str, nodes: Iterable[int], force: bool = False
                 ) -> Optional[Dict[int, Identity]]:
        """List the remote ``results/`` (at most every ``check_every`` s unless ``force``),
        copy new outcomes and their logs into the run directory, report the local files."""
        now = time.monotonic()
        if not force and now - self._last_check.get(run, 0.0) < self.check_every:
            return None
        self._last_check[run] = now
        nodes = list(nodes)
        script = f"cd {shlex.quote(self.root(run))} || exit 3; {self.outcomes_script(nodes)}"
        code, data, err = self.remote.run_bytes(f"sh -c {shlex.quote(script)}")
        if code != 0 or not data:
            return {}
        return self.unpack_outcomes(run, nodes, data)

    @staticmethod
    def outcomes_script(nodes: Iterable[int]) -> str:
        """Shell lines (run in the remote root) listing which of ``nodes``' outcomes exist and
        writing them with their logs as one tar stream on stdout (nothing if none)."""
        numbers = " ".join(str(n) for n in sorted(set(nodes)))
        outcome, log = layout.outcome_rel("$n"), layout.log_rel("$n", "$s")
        return (f"set --; for n in {numbers}; do [ -f {outcome} ] && "
                f"set -- \"$@\" {outcome}; for s in {' '.join(layout.STREAMS)}; do "
                f"[ -f {log} ] && set -- \"$@\" {log}; done; done; "
                f"[ $# -eq 0 ] || tar cf - -- \"$@\"")

    def unpack_outcomes(self, run: str, nodes: Iterable[int], data: bytes
                        ) -> Dict[int, Identity]:
        """``outcomes_script``'s tar stream into the run directory: the local identities of
        the outcomes it held."""
        wanted = {outcome_name(n): n for n in nodes}
        found: Dict[int, Identity] = {}
        if not data:
            return found
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            members = tar.getmembers()
            # logs first: once the outcome is in place the runner may read the logs
            for member in sorted(members, key=lambda m: m.name.partition("/")[0] == RESULTS):
                source = tar.extractfile(member)
                if source is None:
                    continue
                top, _, name = member.name.partition("/")
                if top not in (RESULTS, LOGS) or "/" in name or name.startswith("."):
                    continue
                atomic_write(os.path.join(run, top, name), source.read())
                if top == RESULTS and name in wanted:
                    identity = self.identity(run, wanted[name])
                    if identity is not None:
                        found[wanted[name]] = identity
        return found

    def fetch_live(self, tasks: Sequence[Task]) -> None:
        """What the running tasks' remote logs gained since the last look, in one command for
        all of them, written into the run's ``logs/<node>.out|err`` as the SSH backend does
        (``runner.ssh.protocol``'s frames); the whole files still replace them at the end."""
        from runner.ssh import protocol
        from runner.ssh.connection import SSHError

        wanted: Dict[Tuple[str, int, int, str], int] = {}
        files: List[Tuple[str, Tuple[str, int, int, str], str]] = []  # (token, key, local path)
        for task in tasks:
            for stream, path in zip(layout.STREAMS, (task.stdout_path, task.stderr_path)):
                key = (task.run, task.node, task.attempt, stream)
                wanted[key] = self._live.get(key, 0)
                files.append((str(len(files)), key, path))
        self._live = wanted  # ended tasks' offsets go
        if not files:
            return
        listing = protocol.fetch_input([
            (token, f"{os.path.basename(key[0])}/{layout.log_rel(key[1], key[3])}",
             wanted[key]) for token, key, _ in files])
        by_token = {token: (key, path) for token, key, path in files}

        def write(token: str, offset: int, data: bytes) -> None:
            if token not in by_token:
                return
            key, path = by_token[token]
            try:
                protocol.write_chunk(path, offset, data, cut=offset == 0)
            except OSError:  # a full disk: the whole file still comes at the end
                return
            self._live[key] = offset + len(data)

        try:
            code, data, _ = self.remote.run_bytes(
                protocol.command(protocol.fetch_script(self.base)), input=listing, timeout=30)
            if code == 0:
                protocol.read_frames(data, write)
        except SSHError:  # the next look tries again; the whole files come at the end
            pass

    def next_check_in(self) -> Optional[float]:
        if not self._last_check:
            return None
        return max(0.0, min(self._last_check.values()) + self.check_every - time.monotonic())

    def log_tail(self, run: str, job_id: str) -> Tuple[str, str]:
        path = self.job_log(run, job_id)
        result = self.remote.run(["tail", "-c", "2000", path])
        return f"{self.remote.host.label}:{path}", result.stdout if result.ok else ""

    # -- cleanup -------------------------------------------------------------------------
    def remove_task_files(self, run: str, node: int, attempt: int, job_id: str) -> None:
        root = self.root(run)
        self._removals += [f"{root}/{layout.slurm_bundle_rel(layout.attempt_name(node, attempt))}",
                           f"{root}/{layout.outcome_rel(node)}",
                           *(f"{root}/{layout.log_rel(node, s)}" for s in layout.STREAMS)]

    def remove_script(self, run: str, job_id: str) -> None:
        self._removals.append(f"{self.jobs_dir(run)}/{layout.job_script_file(job_id)}")

    def later(self, line: str) -> None:
        """A shell line (its paths quoted already) for the next ``sweep``'s command."""
        self._later.append(line)

    def sweep(self) -> None:
        """Renames, removals and ``later`` lines gathered since the last poll, in one
        command."""
        renames, self._renames = self._renames, []
        removals, self._removals = self._removals, []
        lines, self._later = self._later, []
        parts = lines + [f"mv -f -- {shlex.quote(a)} {shlex.quote(b)}" for a, b in renames]
        if removals:
            parts.append("rm -f -- " + " ".join(shlex.quote(p) for p in removals))
        if not parts:
            return
        try:
            self.remote.run_bytes("; ".join(parts))
        except Exception:  # noqa: BLE001 - leftovers are harmless; the next sweep may work
            pass

    def close(self) -> None:
        self.sweep()

    def _checked(self, command: str, data: bytes) -> None:
        code, _, err = self.remote.run_bytes(command, input=data)
        if code != 0:
            from runner.ssh.connection import SSHError

            raise SSHError(f"`{command[:60]}...` failed on {self.remote.host.label} "
                           f"(exit {code}): {err.strip()[-300:]}", self.remote.host.label)



def connect(settings: SlurmSettings, secrets: Optional[Dict[str, Any]] = None
            ) -> Tuple[SharedSite, str]:
    """Open the connection, check the cluster's Python (``runner.ssh.remote.prepare``, which
    also ships cloudpickle when needed) and return the site and the PYTHONPATH jobs need.
    ``secrets``: the executor's secret fields (``password``, ``passphrase``) for the login."""
    from runner.ssh.connection import HostSpec, pool
    from runner.ssh.remote import DEFAULT_CACHE, PythonSetup, prepare

    config: Dict[str, Any] = unmask(dict(settings.extra), {
        k: v for k, v in (secrets or {}).items() if k in ("password", "passphrase")})
    config.update(address=settings.address, username=settings.username or None,
                  ssh_key_file=settings.ssh_key_file or None, port=settings.port)
    host = pool().host(HostSpec.from_executor(config))
    setup = PythonSetup(python=settings.python_path or "python3", conda_env=settings.conda_env)
    extra = settings.extra
    env = prepare(host, setup, cache=str(extra.get("remote_cache") or DEFAULT_CACHE),
                  ship_cloudpickle=extra.get("ship_cloudpickle") not in (False, "false", "no", 0),
                  ignore_versions=bool(extra.get("ignore_versions")))
    shell = RemoteShell(host, settings.bashrc_path)
    if settings.shared_filesystem:
        return SharedSite(shell), env.pythonpath
    base = env.abspath(f"{settings.remote_workdir.rstrip('/')}/{REMOTE_DIR}")
    return RemoteSite(shell, base, check_every=min(settings.poll_freq, 5.0)), env.pythonpath
