"""A Slurm pilot block's worker pool: runs on the block's node, takes tasks until idle.

Started by the block's sbatch script as ``python pilot_pool.py ROOT BLOCK WORKERS IDLE WALLTIME``
from ``ROOT/slurm/`` (the run directory as the node sees it), beside ``worker.py`` and the
modules shipped with it (``worker.shipped_files``); it imports nothing else of cov's.

Protocol (the run directory is the only channel; ``runner.layout`` names every file):

* The runner writes each task as a *ticket* (its bundle, plus the claim's ``fence``) into the
  run's queue, ``slurm/pilot/queue/<node>.<attempt>.pkl``. Every block of the run takes tickets
  from there by renaming them into its own ``running/``: a rename succeeds once, so two blocks
  never take the same ticket.
* A taken ticket whose fence exists (another runner took the claims over) is dropped unrun.
  Else a forked child runs it with ``worker.execute_bundle``: the outcome goes to
  ``results/<node>.pkl`` and the logs to ``logs/<node>.out|err``, as for any other attempt. A
  child that dies without an outcome gets one (``worker_died``); then the ticket is removed.
* ``heartbeat`` is touched every second. ``cancel/<node>.<attempt>`` kills that task's process
  group (its outcome says ``cancelled``); ``stop`` (or SIGTERM, or ``DRAIN`` before the
  walltime ends) makes the pool take nothing more and exit once its tasks end.
* Idle for ``IDLE`` seconds (no task running, none in the queue), or stopped: the pool writes
  ``exited`` and exits. It never takes a ticket after writing ``exited``, so the runner knows a
  ticket left in the queue is free for another block.

A ticket in ``running/`` of a block that died (killed, node failure, walltime) is the runner's
to move back to the queue: the task runs again; one with a complete outcome is never re-run.
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import select
import signal
import socket
import sys
import time
from typing import Any, Dict, List, Optional, Set, Tuple

if __package__:  # imported by the runner (tests, the documentation of the protocol)
    from runner import layout, worker
else:  # ``python pilot_pool.py ...`` on a node: the shipped modules are beside this file
    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
    import layout  # type: ignore[no-redef,import-not-found]
    import worker  # type: ignore[no-redef,import-not-found]
    # The tasks' imports are their own (worker.py took its directory off sys.path already).
    for _name in ("layout", "worker"):
        sys.modules.pop(_name, None)

HEARTBEAT = 1.0  # seconds between two touches of the heartbeat file
BUSY_TICK = 0.02  # seconds between looks at the queue while a worker slot is free
IDLE_TICK = 0.2  # ... while no task runs and the queue was empty
HOST = socket.gethostname()

Identity = Optional[Tuple[int, int]]


def _identity(path: str) -> Identity:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _write_json(path: str, data: Dict[str, Any]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def default_workers() -> int:
    """The CPUs this process may use (Slurm's allocation where it binds tasks to CPUs)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Pool:
    """One block's pool: ``slots`` tasks at a time, each in a forked child."""

    def __init__(self, root: str, block: str, slots: int, idle: float, walltime: float) -> None:
        self.root = root
        self.dir = layout.pilot_block_dir(root, block)
        self.queue = layout.pilot_queue_dir(root)
        self.running = os.path.join(self.dir, layout.BLOCK_RUNNING)
        self.cancel_dir = os.path.join(self.dir, layout.BLOCK_CANCEL)
        self.slots = slots or default_workers()
        self.idle = idle
        self.started = time.time()
        # Stop taking tasks a little before the walltime: what is still running then is lost
        # with the block and runs again elsewhere.
        drain = min(60.0, walltime * 0.1)
        self.deadline = self.started + walltime - drain if walltime > 0 else float("inf")
        self.children: Dict[int, Tuple[str, int, int, Identity]] = {}  # pid -> ticket
        self.cancelled: Set[str] = set()
        self.stopping = False
        self.terminated = False  # SIGTERM: what runs now is lost, not failed

    # -- the loop ---------------------------------------------------------------------------
    def serve(self) -> int:
        for path in (self.running, self.cancel_dir):
            os.makedirs(path, exist_ok=True)
        _write_json(os.path.join(self.dir, layout.BLOCK_STARTED), {
            "host": HOST, "pid": os.getpid(), "job_id": os.environ.get("SLURM_JOB_ID", ""),
            "workers": self.slots, "start": self.started})
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
        self.wake = (wake_r, wake_w)
        beat_at = 0.0
        last_busy = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= beat_at:
                self._beat()
                beat_at = now + HEARTBEAT
            self._reap()
            self._cancel()
            stop = self.stopping or time.time() >= self.deadline or \
                os.path.exists(os.path.join(self.dir, layout.BLOCK_STOP))
            waiting = False
            if not stop and len(self.children) < self.slots:
                waiting = self._take(self.slots - len(self.children))
            if self.children or waiting:
                last_busy = now
            elif stop or now - last_busy >= self.idle:
                # No child runs and nothing will be taken any more: say so, then go.
                why = "terminated" if self.terminated else "stopped" if stop else "idle"
                _write_json(os.path.join(self.dir, layout.BLOCK_EXITED),
                            {"end": time.time(), "why": why})
                return 0
            free = len(self.children) < self.slots
            tick = BUSY_TICK if (self.children or waiting) and free else \
                IDLE_TICK if not self.children else HEARTBEAT
            try:
                select.select([wake_r], [], [], tick)
                while os.read(wake_r, 512):
                    pass
            except (BlockingIOError, InterruptedError):
                pass

    def _on_term(self, *_: Any) -> None:
        """Slurm is ending the job (scancel, the walltime): its tasks are lost with it. They
        are killed and their tickets stay in ``running/``, for the runner to queue again."""
        self.stopping = self.terminated = True
        for pid in self.children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _beat(self) -> None:
        path = os.path.join(self.dir, layout.BLOCK_HEARTBEAT)
        try:
            os.utime(path)
        except FileNotFoundError:
            open(path, "a").close()
        except OSError:
            pass  # a filesystem hiccup; the runner only worries after many seconds

    # -- taking and running -----------------------------------------------------------------
    def _take(self, room: int) -> bool:
        """Take up to ``room`` tickets; True if the queue still had tickets (or had some)."""
        try:
            names = sorted(os.listdir(self.queue), key=_ticket_order)
        except OSError:
            return False
        names = [n for n in names if layout.ticket_task(n) is not None]
        for name in names:
            if room <= 0:
                break
            path = os.path.join(self.running, name)
            try:
                os.rename(os.path.join(self.queue, name), path)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ESTALE):
                    continue  # another block took it (or the runner took it back)
                raise
            if self._start(name, path):
                room -= 1
        return bool(names)

    def _start(self, name: str, path: str) -> bool:
        found = layout.ticket_task(name)
        assert found is not None
        node, attempt = found
        try:
            with open(path, "rb") as f:
                fence = pickle.load(f).get("fence") or ""
        except Exception:  # noqa: BLE001 - a torn ticket: the child reports the load error
            fence = ""
        if fence and os.path.exists(fence):
            _unlink(path)  # another runner took this runner's claims over: not ours to run
            return False
        outcome = layout.outcome_path(self.root, node)
        before = _identity(outcome)
        pid = os.fork()
        if pid == 0:  # the child: one task, then out
            code = 1
            try:
                os.setpgid(0, 0)  # its own process group: a cancel kills what it started too
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                os.close(self.wake[0])
                os.close(self.wake[1])
                code = worker.execute_bundle(path, outcome,
                                             layout.log_path(self.root, node, "out"),
                                             layout.log_path(self.root, node, "err"))
            finally:
                os._exit(code)
        self.children[pid] = (name, node, attempt, before)
        return True

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            entry = self.children.pop(pid, None)
            if entry is None:
                continue
            name, node, attempt, before = entry
            outcome = layout.outcome_path(self.root, node)
            header: Optional[Dict[str, Any]] = None
            code = os.waitstatus_to_exitcode(status)
            finished = _identity(outcome) != before  # it wrote an outcome of its own
            if name in self.cancelled:
                self.cancelled.discard(name)
                header = {"ok": False, "reason": "cancelled", "error": "cancelled"}
            elif not finished and (self.terminated or code == -signal.SIGTERM):
                # Killed with the job (Slurm signals every process of it, maybe before this
                # pool hears of it): lost, not failed. The ticket stays for the runner.
                self.stopping = self.terminated = True
                continue
            elif not finished:  # it died on its own (a crash, os._exit, the OOM killer)
                cause = f"signal {-code}" if code < 0 else f"exit code {code}"
                header = {"ok": False, "reason": "worker_died",
                          "error": f"the task's process in pilot block {os.path.basename(self.dir)}"
                                   f" on {HOST} died ({cause}) without writing an outcome"}
            if header is not None:
                header.update({"host": HOST, "pid": pid, "attempt": attempt, "end": time.time()})
                try:
                    worker.write_outcome(outcome, header)
                except OSError:
                    pass
            _unlink(os.path.join(self.running, name))

    def _cancel(self) -> None:
        try:
            names = os.listdir(self.cancel_dir)
        except OSError:
            return
        running = {entry[0]: pid for pid, entry in self.children.items()}
        for name in names:
            ticket = layout.ticket_file(*name.split(".", 1)) if "." in name else ""
            pid = running.get(ticket)
            if pid is not None:
                self.cancelled.add(ticket)
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _unlink(os.path.join(self.cancel_dir, name))


def _ticket_order(name: str) -> Tuple[int, int]:
    found = layout.ticket_task(name)
    return found if found is not None else (-1, -1)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def main(argv: List[str]) -> int:
    root, block, slots, idle, walltime = argv[:5]
    return Pool(root, block, int(slots), float(idle), float(walltime)).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
