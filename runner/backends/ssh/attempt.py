"""One task attempt on an SSH host: where its files are there, and what comes back of it.

``SSHAttempt`` is the attempt's state (its directory there, its pid, cancelled or not);
``AttemptFiles`` knows the host side of the layout (``runner.layout``'s ``SSH_*`` names in the
attempt's directory ``$F``), makes the attempt's bundle, and writes what comes back into the
run directory: the outcome
(atomically: a temporary name, then rename), the logs (replacing their live copies whole) and
the launcher's log (kept aside for the error of a task that died without an outcome).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from runner import layout, runner_packs
from runner.backends.base import Completion, Task, make_bundle
from runner.fs import atomic_write
from runner.outcome import OutcomeHeader, header_problem, read_outcome_header
from runner.outcome_pack import parse_record
from runner.rundir import RunDir
from runner.ssh import protocol
from runner.ssh.connection import SSHError
from runner.ssh.remote import DEFAULT_CACHE, RemoteEnv

log = logging.getLogger("cov.ssh")

# An attempt's files (runner.layout): those the worker writes, sent back unless the host shares
# the run directory (then it writes straight into it), and the launcher's log.
FILES = (layout.SSH_OUTCOME, layout.SSH_STDOUT, layout.SSH_STDERR, layout.SSH_LAUNCH_LOG)
# streamed while the task runs (frame stream name, file)
LIVE = (("stdout", layout.SSH_STDOUT), ("stderr", layout.SSH_STDERR))
LIVE_NAMES = {name: stream for stream, name in LIVE}
LOG_STREAMS = {layout.SSH_STDOUT: "out", layout.SSH_STDERR: "err"}  # file -> log_at key
DEFAULT_WORKDIR = "covalent-workdir"


class SSHAttempt:
    """One task attempt on the host: where its files are, its pid there, whether cancelled."""

    def __init__(self, task: Task, files: str, workdir: str,
                 handle: Optional[Dict[str, Any]] = None) -> None:
        self.task = task
        self.files = files
        self.workdir = workdir
        self.handle = handle
        self.pid: Optional[int] = int(handle["pid"]) if handle and handle.get("pid") else None
        self.cancelled = False
        self.recorded = False  # its handle went to services.record_handle
        self.launch_log = b""
        self.packed: Optional[OutcomeHeader] = None  # its outcome, appended to a pack
        # live copies of streams now packed: removed once the end event points at the pack
        self.stale_live: List[str] = []
        self.live: set = set()  # streams whose live copy this attempt has started

    def write_live(self, stream: str, offset: int, data: bytes) -> None:
        """Put a live-output frame into the run's log file at its offset. The attempt's first
        frame of a stream starts at 0 and cuts the file to itself (an earlier attempt's
        output, or, after a reconnect, the same bytes again); the whole file replaces it at
        the end."""
        if stream not in ("stdout", "stderr"):
            return
        path = self.task.stdout_path if stream == "stdout" else self.task.stderr_path
        try:
            protocol.write_chunk(path, offset, data, cut=stream not in self.live)
            self.live.add(stream)
        except OSError as exc:  # a full disk: the whole file still comes at the end
            log.debug("ssh: live output of %s not written: %s", self.task.name, exc)


class AttemptFiles:
    """The host side of an attempt's files, for one backend's parameters (``shared_
    filesystem``: the host sees the run directory, and the worker writes the outcome and logs
    straight into it; ``remote_cache``, ``remote_workdir``, ``create_unique_workdir``)."""

    def __init__(self, params: Dict[str, Any], label: str) -> None:
        self.params = params
        self.shared = bool(params.get("shared_filesystem"))
        self.label = label

    def place(self, job: SSHAttempt, env: RemoteEnv) -> None:
        """Choose the attempt's directory there (``$F``) and its working directory."""
        task = job.task
        base = env.abspath(str(self.params.get("remote_workdir") or DEFAULT_WORKDIR))
        job.workdir = os.path.join(base, task.dispatch_id, f"node_{task.node}") \
            if self.params.get("create_unique_workdir") else base
        job.files = layout.ssh_attempt_dir(task.run, task.node, task.attempt) \
            if self.shared else env.abspath(os.path.join(
                str(self.params.get("remote_cache") or DEFAULT_CACHE), task.dispatch_id,
                layout.attempt_name(task.node, task.attempt)))

    def bundle(self, job: SSHAttempt) -> bytes:
        """The attempt's bundle (``make_bundle``); on a shared filesystem also written to
        ``$F`` in the run directory, where the worker reads it."""
        rundir = RunDir(job.task.run)
        try:
            data = make_bundle(dataclasses.replace(job.task, cwd=job.workdir), rundir,
                               backend_transfers=bool(job.task.files))
        except RuntimeError as exc:  # an input's result is missing: the task cannot start
            raise SSHError(str(exc)) from None
        finally:
            rundir.close()
        if self.shared:
            os.makedirs(job.files, exist_ok=True)
            atomic_write(os.path.join(job.files, layout.SSH_BUNDLE), data)
        return data

    def results(self) -> List[str]:
        """The names in ``$F`` sent back once the task ends."""
        return [layout.SSH_LAUNCH_LOG] if self.shared else list(FILES)

    def live(self) -> Sequence[Tuple[str, str]]:
        """(stream, name in ``$F``) streamed while it runs (shared: written in place)."""
        return () if self.shared else LIVE

    def worker_args(self, job: SSHAttempt) -> List[str]:
        """``worker.execute_bundle``'s bundle, outcome, stdout and stderr paths there."""
        task, f = job.task, job.files
        if self.shared:  # the worker writes straight into the run directory
            return [f"{f}/{layout.SSH_BUNDLE}", task.outcome_path, task.stdout_path,
                    task.stderr_path]
        return [f"{f}/{layout.SSH_BUNDLE}", f"{f}/{layout.SSH_OUTCOME}",
                f"{f}/{layout.SSH_STDOUT}", f"{f}/{layout.SSH_STDERR}"]

    def worker_line(self, env: RemoteEnv, job: SSHAttempt) -> str:
        """The shell line running the worker on the attempt (the per-task launcher's)."""
        return env.worker_command(*self.worker_args(job))

    def server_request(self, job: SSHAttempt, remove: Sequence[str]) -> Dict[str, Any]:
        """The persistent worker's request for the attempt (``runner.ssh.worker_server``)."""
        f = job.files
        return {"dir": f, "workdir": job.workdir,
                "bundle": "" if self.shared else f"{f}/{layout.SSH_BUNDLE}",
                "args": self.worker_args(job), "pid_file": f"{f}/{layout.SSH_PID}",
                "launch_log": f"{f}/{layout.SSH_LAUNCH_LOG}",
                "send_back": [[name, f"{f}/{name}"] for name in self.results()],
                "live": [[stream, f"{f}/{name}"] for stream, name in self.live()],
                "remove": list(remove)}

    def receive(self, job: SSHAttempt, files: Sequence[Tuple[str, bytes]]) -> None:
        """Write the files that came back: outcome (atomically), logs, launcher log (kept).
        A format 2.0 run's small outcome and short logs are appended to the runner's packs
        instead (``runner.runner_packs``); ``job.packed`` is then the outcome's header."""
        task = job.task
        targets = {layout.SSH_OUTCOME: task.outcome_path, layout.SSH_STDOUT: task.stdout_path,
                   layout.SSH_STDERR: task.stderr_path}
        names = {name for name, _ in files}
        logs = {name: data for name, data in files if name in LOG_STREAMS}
        log_at = self._pack_logs(job, logs) if task.pack and not self.shared else {}
        for name in (layout.SSH_STDOUT, layout.SSH_STDERR):  # an earlier attempt's logs must go
            if self.shared or not os.path.exists(targets[name]):
                continue
            if name in names and LOG_STREAMS[name] in log_at and LIVE_NAMES[name] in job.live:
                job.stale_live.append(targets[name])  # followed now: removed a little later
            elif name not in names or LOG_STREAMS[name] in log_at:
                os.unlink(targets[name])
        for name, data in files:
            if name not in targets or self.shared:
                job.launch_log = data
                continue
            if name in logs and LOG_STREAMS[name] in log_at:
                continue  # packed
            if name == layout.SSH_OUTCOME and task.pack and self._pack_outcome(job, data, log_at):
                continue
            tmp = f"{targets[name]}.tmp-ssh-{os.getpid()}-{threading.get_ident()}"
            with open(tmp, "wb") as out:
                out.write(data)
            os.replace(tmp, targets[name])

    @staticmethod
    def _pack_logs(job: SSHAttempt, logs: Dict[str, bytes]) -> Dict[str, Any]:
        """Append the short streams to the runner's logs pack; their locations by stream
        (``out``/``err``). A stream the runner wrote live while the task ran keeps its live
        copy until the task's ``end`` event points at the pack (a reader following it, ``cov
        logs -f``, then reads on from the pack at the same offset): ``SSHBackend`` removes
        it at its next poll."""
        log_at: Dict[str, Any] = {}
        for name, data in logs.items():
            at = runner_packs.append_log(job.task.run, data)
            if at is not None:
                log_at[LOG_STREAMS[name]] = at
        return log_at

    @staticmethod
    def _pack_outcome(job: SSHAttempt, data: bytes, log_at: Dict[str, Any]) -> bool:
        """Append the outcome to the runner's pack if it is whole and small; False: it keeps
        its own file (a cut one there reads as missing, as before)."""
        header, payload = parse_record(data)
        if header is None or header_problem(header):
            return False
        header.setdefault("attempt", job.task.attempt)
        if log_at:
            header["log_at"] = log_at
        if not runner_packs.record_fits(job.task.node, header, payload):  # type: ignore[arg-type]
            return False
        job.packed = runner_packs.append_outcome(job.task.run, job.task.node,
                                                 header, payload)  # type: ignore[arg-type]
        return True

    def outcome(self, job: SSHAttempt, rc: int) -> Completion:
        """The attempt's Completion: its outcome file, or why there is none."""
        task = job.task
        deadline = time.time() + (10.0 if self.shared else 0.0)  # NFS may show it late
        while True:
            header = job.packed or read_outcome_header(task.outcome_path)
            if header is not None and int(header.get("pid", job.pid) or 0) == job.pid:
                return Completion.of(task, header)
            if time.time() >= deadline or (rc not in (0, -1) and self.shared):
                break
            time.sleep(0.1)
        how = "was killed (signal 9)" if rc == 137 else \
            f"exited with code {rc}" if rc >= 0 else "ended"
        launch = job.launch_log
        if self.shared:
            try:
                with open(os.path.join(job.files, layout.SSH_LAUNCH_LOG), "rb") as f:
                    launch = f.read()
            except OSError:
                pass
        detail = launch.decode("utf-8", "replace").strip()[-2000:]
        error = (f"the task's process on {self.label} (pid {job.pid}) {how} without "
                 f"writing an outcome" + (f":\n{detail}" if detail else ""))
        return Completion.failed(task, "worker_died", error, pid=job.pid)


def read_files(reader: protocol.ChannelReader) -> List[Tuple[str, bytes]]:
    """After ``@cov rc`` of a launch or recover script: the files that follow."""
    return [(name, reader.read(size)) for name, size in reader.files()]


__all__ = ["AttemptFiles", "FILES", "LIVE", "SSHAttempt", "read_files"]
