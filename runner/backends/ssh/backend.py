"""The SSH backend: tasks run on another host over one reused connection (``runner.ssh``).

A task's life on the host:

1. once per backend, ``runner.ssh.remote.prepare``: check the remote Python against ours and
   upload ``worker.py`` with the modules it imports, the persistent worker's server (and
   cloudpickle, when needed) into ``<remote_cache>/lib``; then start that server
   (``runner.ssh.worker_server``) on one exec channel it keeps (``runner.ssh.task_server``);
2. per task, one request on that channel carries the bundle into ``<remote_cache>/<dispatch>/
   <node>.<attempt>/`` (with ``shared_filesystem`` the bundle is written into the run directory
   instead, under ``ssh/``, and the worker writes results and logs straight into the run
   directory); the server forks a child that runs the task in ``remote_workdir`` in its own
   session and process group (its pid also goes to ``pid`` there), says its pid (recorded with
   ``record_handle``), streams what the task prints as it prints it (every
   ``protocol.LIVE_TICK`` seconds, into the run's ``logs/<node>.out``/``.err``, so ``cov logs
   -f`` shows it live), and then sends back the outcome, stdout, stderr and the launcher's
   log, which are written into the run directory (the logs replacing their live copies whole).
   A task costs a fork of a warm Python, not a Python start-up. With ``persistent_worker=False``
   each task has its own channel instead, running a shell launcher (``protocol.launch_script``)
   that starts ``worker.py`` with ``setsid`` and waits for it;
3. the files of finished tasks go with the next task's request (the worker removes them when
   idle; the launcher, once the task started), or on a channel of their own after 2 idle
   seconds (unless ``do_cleanup=False``).

Threads: the runner's loop never waits for SSH. ``submit`` queues the task for a small pool of
daemon threads (``max_concurrent`` per backend, at most the connection's ``max_sessions`` − 2);
they hand completions and handles over as a ``ThreadedBackend``.

Faults: a dropped or silent connection (no heartbeat for 3 intervals) is reopened with the
connection's retries, then the task is picked up again by its pid file on a channel of its own
(``protocol.recover_script``; a server's forked tasks outlive it): still running → wait
again; finished → fetch; never started → start it. A task's own exception is its outcome, never
a connection error. ``cancel`` kills the remote process group. A restarted runner calls
``reattach`` with the recorded handle ``{"host", "pid", "workdir", "files"}``, which waits for
the pid and fetches the result files the same way.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from runner.backends.base import Completion, Services, Task, ThreadedBackend, transfer_failed
from runner.backends.ssh.attempt import AttemptFiles, SSHAttempt, read_files
from runner.config import get_value
from runner.redact import has_mask, task_secrets, unmask
from runner.ssh import protocol
from runner.ssh.connection import (DEFAULT_KEEPALIVE, AuthFailed, ConnectFailed,
                                   ConnectionLost, HostKeyError, HostSpec, SSHError, SSHHost,
                                   pool, send_all)
from runner.ssh.remote import DEFAULT_CACHE, PythonSetup, RemoteEnv, VersionMismatch, prepare
from runner.ssh.task_server import TaskServer
from runner.ssh.transfer import TransferFailed, run_transfers

log = logging.getLogger("cov.ssh")

DEFAULT_MAX_CONCURRENT = 8
MAX_LOSSES = 5  # connection losses survived by one task
START_DELAY = 0.05  # how long a task runs before the runner is told it started


def effective_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """An executor's parameters over the config file's ``executors.ssh`` defaults."""
    defaults = get_value("executors.ssh", {}) or {}
    merged = {k: v for k, v in defaults.items() if v is not None}
    merged.update({k: v for k, v in config.items() if v is not None})
    return merged


class SSHBackend(ThreadedBackend):
    """Runs tasks on one SSH host."""

    def __init__(self, config: Dict[str, Any], services: Services) -> None:
        super().__init__(config, services)
        self.params = effective_config(config)
        try:
            self.spec = HostSpec.from_executor(self.params)
            self._env_error: Optional[SSHError] = None
        except ValueError as exc:  # reported as each task's failure, never raised in the loop
            self.spec = HostSpec("?")
            self._env_error = SSHError(str(exc))
        self.host: SSHHost = pool().host(self.spec)
        self.setup = PythonSetup.from_executor(self.params)
        self.shared = bool(self.params.get("shared_filesystem"))
        self.cleanup = self.params.get("do_cleanup", True) is not False
        # tasks go to one long-lived worker there (False: a shell launcher per task)
        self.persistent = self.params.get("persistent_worker", True) is not False
        self.attempts = AttemptFiles(self.params, self.spec.label())
        self._server: Optional[TaskServer] = None
        self.heartbeat = float(self.spec.keepalive or DEFAULT_KEEPALIVE)  # a silent task channel
        # (no heartbeat for 3 of these) counts as a lost connection
        wanted = int(self.params.get("max_concurrent") or DEFAULT_MAX_CONCURRENT)
        self.limit = max(1, min(wanted, self.spec.max_sessions - 2))
        self._env: Optional[RemoteEnv] = None
        self._env_lock = threading.Lock()
        self._inflight: Dict[Tuple[str, int], SSHAttempt] = {}
        self._trash: List[str] = []
        self._queue: "queue.Queue[Optional[SSHAttempt]]" = queue.Queue()
        self._threads: List[threading.Thread] = []
        self._closing = False
        self._secrets_taken = False
        # Live log copies of streams since packed (``SSHAttempt.stale_live``): by attempt until
        # its completion is taken, then due at the next poll, once its end event is written.
        self._stale_live: Dict[Tuple[str, int], List[str]] = {}
        self._unlink_due: List[Tuple[str, int, str]] = []

    def _take_secrets(self, secrets: Dict[str, Any]) -> None:
        """Secret fields (``password``, ``passphrase``) are masked in the manifest; their values
        come from the run's 0600 secrets file, once, before anything connects."""
        if not secrets or self._env_error is not None:
            return
        self.params = unmask(self.params, secrets)
        self.spec = HostSpec.from_executor(self.params)
        self.host = pool().host(self.spec)

    # -- the runner's side (loop thread) ----------------------------------------------------------
    def capacity(self) -> int:
        return self.limit - len(self._inflight)

    def busy(self) -> bool:
        return bool(self._inflight or self._done)

    def submit(self, task: Task) -> None:
        self._start(SSHAttempt(task, "", ""))

    def reattach(self, task: Task, handle: Dict[str, Any]) -> bool:
        if not handle.get("pid") or not handle.get("files"):
            return False
        self._start(SSHAttempt(task, str(handle["files"]), str(handle.get("workdir") or ""),
                               handle))
        return True

    def _start(self, job: SSHAttempt) -> None:
        if not self._secrets_taken:  # before the first connection: the spec's secrets
            self._secrets_taken = True
            if has_mask(self.config):
                self._take_secrets(task_secrets(job.task.run, job.task.node))
        with self._lock:
            self._inflight[(job.task.run, job.task.node)] = job
            if len(self._threads) < min(self.limit, len(self._inflight)):
                thread = threading.Thread(target=self._serve, daemon=True,
                                          name=f"cov-ssh-{self.host.label}")
                self._threads.append(thread)
                thread.start()
        self._queue.put(job)

    def poll(self) -> List[Completion]:
        self._drop_stale_live()
        done = super().poll()
        with self._lock:
            for completion in done:
                for path in self._stale_live.pop((completion.run, completion.node), ()):
                    self._unlink_due.append((completion.run, completion.node, path))
        return done

    def release(self, run: str) -> None:
        """The run ended (its events are written): its live copies that were packed go."""
        with self._lock:
            for key in [k for k in self._stale_live if k[0] == run]:
                self._unlink_due.extend((run, key[1], p) for p in self._stale_live.pop(key))
        self._drop_stale_live(run)

    def _drop_stale_live(self, run: Optional[str] = None) -> None:
        """Remove the live copies due (of ``run``, or all), unless their node runs again here
        (a retry's live copy has the same name: its own end settles it)."""
        with self._lock:
            due = [d for d in self._unlink_due if run is None or d[0] == run]
            self._unlink_due = [d for d in self._unlink_due if d not in due]
            busy = set(self._inflight)
        for run_path, node, path in due:
            if (run_path, node) not in busy:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def cancel(self, run: str, node: int) -> None:
        job = self._inflight.get((run, node))
        if job is not None and not job.cancelled:
            job.cancelled = True
            if job.pid is not None:
                threading.Thread(target=self._kill, args=(job,), daemon=True).start()

    def close(self) -> None:
        self._closing = True
        env = self._env
        for job in list(self._inflight.values()):  # started under START_DELAY ago: not told
            if job.pid is not None and not job.recorded and env is not None:
                self._got_pid(job, job.pid, env, wake=False)
        super().close()  # the handles, so that the next runner can re-attach
        for _ in self._threads:
            self._queue.put(None)
        if self._server is not None:
            self._server.close()
        if self._trash and self.host.connected and not self._inflight:
            self._empty_trash(timeout=10)
        self.host.close()  # running remote tasks go on; their handles are recorded

    # -- worker threads ---------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            done = self._attempt(job)
            if self._closing:
                return  # the runner is exiting: the handle lets the next one re-attach
            with self._lock:
                self._inflight.pop((job.task.run, job.task.node), None)
                if job.stale_live:
                    self._stale_live[(job.task.run, job.task.node)] = job.stale_live
                self._done.append(done)
                if self.cleanup and job.files and not self.shared:
                    self._trash.append(job.files)
                idle = not self._inflight and self._trash
            self.services.wake()
            if self.cleanup and self.shared and job.files:
                shutil.rmtree(job.files, ignore_errors=True)
            if idle:  # later, so that a chain's next task does not wait behind it
                timer = threading.Timer(2.0, self._empty_trash_if_idle)
                timer.daemon = True
                timer.start()

    def _attempt(self, job: SSHAttempt) -> Completion:
        """Run the attempt to its end; a connection or backend failure is its outcome."""
        task = job.task
        try:
            done = self._run(job)
        except SSHError as exc:
            reason = "version" if isinstance(exc, VersionMismatch) else "connection" if \
                isinstance(exc, (ConnectFailed, AuthFailed, HostKeyError, ConnectionLost)) \
                else "ssh"
            done = Completion.failed(task, reason, f"{exc}")
        except Exception as exc:  # noqa: BLE001 - a backend bug must not lose the task
            log.exception("ssh backend error")
            done = Completion.failed(task, "backend", f"SSH backend error on {self.host.label}: "
                                                      f"{type(exc).__name__}: {exc}")
        if job.cancelled and not done.header.get("ok"):
            done = Completion.cancelled(task)
        done.header.setdefault("end", time.time())
        done.header.setdefault("host", self.host.label)
        return done

    def _remote_env(self) -> RemoteEnv:
        with self._env_lock:
            if self._env_error is not None:
                raise self._env_error
            if self._env is None:
                try:
                    self._env = prepare(
                        self.host, self.setup,
                        cache=str(self.params.get("remote_cache") or DEFAULT_CACHE),
                        ship_cloudpickle=self.params.get("ship_cloudpickle", True) is not False,
                        ignore_versions=bool(self.params.get("ignore_versions")))
                except VersionMismatch as exc:
                    self._env_error = exc  # permanent: every task fails the same way
                    raise
            if self.persistent and self._server is None:
                self._server = TaskServer(self.host, self._env.server_command(
                    self.heartbeat, protocol.LIVE_TICK), self.heartbeat)
            return self._env

    def _run(self, job: SSHAttempt) -> Completion:
        env = self._remote_env()
        task = job.task
        if not job.files:
            self.attempts.place(job, env)
        bundle: Optional[bytes] = None
        started = job.handle is not None
        if task.files and not started:
            failed = self._transfer(job, "before")
            if failed is not None:
                return failed
        losses = 0
        while True:
            if job.cancelled and job.pid is None:
                return Completion.cancelled(task)
            if not started and bundle is None:
                bundle = self.attempts.bundle(job)
            try:
                rc: Optional[int]
                if self._server is not None and not started:
                    assert bundle is not None  # made above whenever not started
                    rc = self._run_on_server(job, env, bundle)
                else:
                    rc = self._run_on_channel(job, env, started, bundle)
                    if rc is None:  # recovering: it never started
                        started = False
                        continue
                started = True
                done = self.attempts.outcome(job, int(rc))
                if task.files and done.header.get("ok"):
                    return self._transfer(job, "after", start=done.header.get("start")) or done
                return done
            except ConnectionLost as exc:
                losses += 1
                if self._closing or losses > MAX_LOSSES:
                    raise ConnectionLost(f"{exc}; gave up after {losses} losses (the task may "
                                         f"still run there, pid {job.pid})", exc.host) from None
                log.warning("ssh: %s while running task %s; resuming", exc, task.name)
                self.host.invalidate()
                started = True  # the pid file tells if it had started
            except protocol.ScriptFailed as exc:
                raise SSHError(f"could not start task '{task.name}' on {self.host.label}: {exc}",
                               self.host.label) from None

    def _run_on_server(self, job: SSHAttempt, env: RemoteEnv, bundle: bytes) -> int:
        """Start the attempt on the persistent worker, wait for it; its exit code."""
        assert self._server is not None
        trash = self._take_trash()
        try:
            handle = self._server.submit(self.attempts.server_request(job, trash),
                                         b"" if self.shared else bundle, job.write_live)
        except ConnectionLost:
            with self._lock:
                self._trash.extend(trash)
            raise
        pid = handle.wait_pid()
        if pid < 0:  # it could not start (the worker could not prepare $F)
            handle.wait_rc()
            said = b"".join(data for _, data in handle.files).decode("utf-8", "replace")
            raise protocol.ScriptFailed(said.strip()[-500:] or "no pid")
        # As the local pool does, a task that ends within START_DELAY is not reported apart:
        # its handle and start go to the runner with its end, one wake-up instead of two.
        job.pid, start = pid, time.time()
        rc: Optional[int]
        if job.cancelled or handle.wait_rc(START_DELAY) is None:
            self._got_pid(job, pid, env, start=start)
            rc = handle.wait_rc()
        else:
            self._got_pid(job, pid, env, start=start, wake=False)
            rc = handle.rc
        assert rc is not None  # wait_rc() without a timeout raises or has it
        self.attempts.receive(job, handle.files)
        return rc

    def _run_on_channel(self, job: SSHAttempt, env: RemoteEnv, started: bool,
                        bundle: Optional[bytes]) -> Optional[int]:
        """Start the attempt with a shell launcher (or, ``started``, find it by its pid file)
        on one channel, and wait for it; its exit code, None if it had never started."""
        results, live = self.attempts.results(), self.attempts.live()
        script = protocol.recover_script(job.files, results, self.heartbeat, live,
                                         server=env.server) if started else \
            protocol.launch_script(job.files, job.workdir, self.attempts.worker_line(env, job),
                                   not self.shared, results, self.heartbeat,
                                   before_wait=protocol.remove_line(self._take_trash()),
                                   live=live)
        with self.host.channel(protocol.command(script),
                               timeout=3 * self.heartbeat + 5) as chan:
            if not started and not self.shared:
                assert bundle is not None  # made whenever not started
                send_all(chan, bundle)
            chan.shutdown_write()
            reader = protocol.ChannelReader(chan, job.write_live)
            pid = int(reader.field("pid"))
            if pid < 0:
                return None
            self._got_pid(job, pid, env)
            rc = int(reader.field("rc"))
            self.attempts.receive(job, read_files(reader))
        return rc

    def _got_pid(self, job: SSHAttempt, pid: int, env: RemoteEnv,
                 start: Optional[float] = None, wake: bool = True) -> None:
        """Record the attempt's pid there (its handle) and that it is RUNNING since ``start``;
        ``wake=False``: the runner learns it with the attempt's end, woken for that."""
        job.pid = pid
        if not job.recorded:  # also after a reattach: the new claim cleared the old handle
            job.recorded = True
            host = env.report.hostname or self.host.label
            self._emit_handle(job.task, {
                "host": host, "pid": pid,
                "workdir": job.workdir, "files": job.files, "target": self.host.label})
            # the pid is printed once the worker runs there: the task is RUNNING from now
            self._emit_news(job.task, "start", start=start or time.time(), pid=pid, host=host)
            if wake:
                self.services.wake()
        if job.cancelled:
            self._kill(job)

    def _kill(self, job: SSHAttempt) -> None:
        pid = int(job.pid or 0)
        if pid <= 0:
            return
        try:
            self.host.run(protocol.kill_line(pid), timeout=30, retry=True)
        except SSHError as exc:
            log.warning("ssh: cancelling pid %s on %s failed: %s", pid, self.host.label, exc)

    # -- file transfers over this connection (ct.fs_strategies.ExecutorConnection) ----------------
    def _transfer(self, job: SSHAttempt, order: str, start: Optional[float] = None
                  ) -> Optional[Completion]:
        """Copy the task's ``order`` transfers; a failure is the task's outcome (written into
        the run directory, with the message in its stderr), returned as its Completion."""
        try:
            run_transfers(self.host, job.task.files, order, base=job.workdir)
            return None
        except TransferFailed as exc:
            return transfer_failed(job.task, str(exc), host=self.host.label, pid=job.pid,
                                   start=start or time.time())

    # -- cleaning up ------------------------------------------------------------------------------
    def _empty_trash_if_idle(self) -> None:
        if not self._inflight and not self._closing:
            self._empty_trash(timeout=30)

    def _empty_trash(self, timeout: float) -> None:
        with self._lock:
            dirs, self._trash = self._trash, []
        if dirs:
            try:
                self.host.run(protocol.remove_line(dirs), timeout=timeout)
            except SSHError:
                with self._lock:
                    self._trash.extend(dirs)  # the next task's channel tries again

    def _take_trash(self) -> List[str]:
        """Finished attempts' directories, for the next task's start to remove."""
        with self._lock:
            dirs, self._trash = self._trash, []
        return dirs

