"""A Slurm pilot block's worker pool: runs on the block's node, takes tasks until idle.

Started by the block's sbatch script as ``python pilot_pool.py ROOT BLOCK WORKERS IDLE WALLTIME``
from ``ROOT/slurm/`` (the run directory as the node sees it), beside ``worker.py`` and the
modules shipped with it (``worker.shipped_files``); it imports nothing else of cov's. A block
of several nodes starts one pool per Slurm task with ``srun ... pilot_pool.py ... srun``: each
pool is rank ``SLURM_PROCID`` of ``SLURM_STEP_NUM_TASKS``, all take from the same queue.

Protocol (the run directory is the only channel; ``runner.layout`` names every file):

* The runner writes each task as a *ticket* (its bundle, plus the claim's ``fence``) into the
  run's queue, ``slurm/pilot/queue/<node>.<attempt>.pkl``. Every block of the run takes tickets
  from there by renaming them into its own ``running/``: a rename succeeds once, so two blocks
  never take the same ticket.
* A taken ticket whose fence exists (another runner took the claims over) is dropped unrun.
  Else one of the pool's worker processes (``Slot``: forked once, reused for every task, in its
  own process group) runs it with ``worker.execute_bundle``: the outcome goes to
  ``results/<node>.pkl`` and the logs to ``logs/<node>.out|err``, as for any other attempt
  (a ticket with ``pack``, a format 2.0 run's: appended to the worker's own pack files
  instead, ``pilot_packs.PackedSlot``, which the runner reads for the task's end); then the
  ticket is removed. A worker that dies without an outcome gets one written
  (``worker_died``) and is replaced. Between tasks a worker restores what a task may change
  (``_CleanSlate``: streams, environment, ``sys.path``, the cwd).
* Several pools of one block share its ``running/``, ``cancel/`` and ``stop``; each has its
  own ``started.json``, ``heartbeat`` and ``exited`` (rank r > 0: ``started-r.json`` ...,
  ``layout.pool_file``), and takes only the cancel requests for tickets it runs.
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
    from runner.pilot_packs import PackedSlot, packed_by
    from runner.worker_capture import keep_capture, rescue_pipes
else:  # ``python pilot_pool.py ...`` on a node: the shipped modules are beside this file
    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
    import layout  # type: ignore[no-redef,import-not-found]
    from pilot_packs import PackedSlot, packed_by  # type: ignore[no-redef,import-not-found]
    from worker_capture import (keep_capture,  # type: ignore[no-redef,import-not-found]
                                rescue_pipes)
    import worker  # type: ignore[no-redef,import-not-found]  # last: it takes the path off
    # The tasks' imports are their own (worker.py took its directory off sys.path already).
    for _name in ("layout", "worker", "outcome_pack", "worker_pack", "worker_capture",
                  "pilot_packs"):
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


class Slot:
    """A worker process of the pool: it runs the tickets it is sent, one at a time, and
    answers a line for each (so that a task costs a message, not a fork: the local pool's
    way). ``ticket``: (name, node, attempt, outcome identity before, packed) of the one it
    runs (``packed``: a format 2.0 run's, whose outcome and logs its worker packs)."""

    def __init__(self, pid: int, send: int, done: int, output: Tuple[int, int]) -> None:
        self.pid, self.send, self.done = pid, send, done
        # the read ends of the pipes its tasks print to (format 2.0: ``PackedSlot``), kept
        # here too: what a worker that died had not yet moved to its capture file is there
        self.output = output
        self.ticket: Optional[Tuple[str, int, int, Identity, bool]] = None


class Pool:
    """One block's pool: ``slots`` worker processes, each running one task at a time."""

    def __init__(self, root: str, block: str, slots: int, idle: float, walltime: float,
                 rank: int = 0, pools: int = 1) -> None:
        self.root = root
        self.rank, self.pools = rank, max(1, pools)
        self.dir = layout.pilot_block_dir(root, block)
        self.queue = layout.pilot_queue_dir(root)
        self.running = os.path.join(self.dir, layout.BLOCK_RUNNING)
        self.cancel_dir = os.path.join(self.dir, layout.BLOCK_CANCEL)
        self.size = slots or default_workers()
        self.idle = idle
        self.started = time.time()
        # Stop taking tasks a little before the walltime: what is still running then is lost
        # with the block and runs again elsewhere.
        drain = min(60.0, walltime * 0.1)
        self.deadline = self.started + walltime - drain if walltime > 0 else float("inf")
        self.slots: List[Slot] = []
        self.listed: List[str] = []  # the queue's last listing, not yet tried (last first)
        self.cancelled: Set[str] = set()
        self.stopping = False
        self.terminated = False  # SIGTERM: what runs now is lost, not failed
        self.wake = (-1, -1)

    # -- the loop ---------------------------------------------------------------------------
    def serve(self) -> int:
        for path in (self.running, self.cancel_dir):
            os.makedirs(path, exist_ok=True)
        _write_json(self._own(layout.BLOCK_STARTED), {
            "host": HOST, "pid": os.getpid(), "job_id": os.environ.get("SLURM_JOB_ID", ""),
            "workers": self.size, "start": self.started, "rank": self.rank,
            "pools": self.pools})
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.wake = (wake_r, wake_w)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
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
            busy = [slot for slot in self.slots if slot.ticket is not None]
            waiting = False
            if not stop and len(busy) < self.size:
                waiting = self._take(self.size - len(busy))
                busy = [slot for slot in self.slots if slot.ticket is not None]
            if busy or waiting:
                last_busy = now
            elif stop or now - last_busy >= self.idle:
                # Nothing runs and nothing will be taken any more: say so, then go.
                self._close_slots()
                why = "terminated" if self.terminated else "stopped" if stop else "idle"
                _write_json(self._own(layout.BLOCK_EXITED), {"end": time.time(), "why": why})
                return 0
            tick = BUSY_TICK if waiting and len(busy) < self.size else \
                IDLE_TICK if not busy else HEARTBEAT
            try:
                ready, _, _ = select.select([wake_r] + [s.done for s in busy], [], [], tick)
            except InterruptedError:
                ready = []
            for fd in ready:
                self._drain(fd)

    def _on_term(self, *_: Any) -> None:
        """Slurm is ending the job (scancel, the walltime): its tasks are lost with it. They
        are killed and their tickets stay in ``running/``, for the runner to queue again."""
        self.stopping = self.terminated = True
        for slot in self.slots:
            _kill(slot.pid)

    def _own(self, name: str) -> str:
        """This pool's own file of the block (its rank's)."""
        return os.path.join(self.dir, layout.pool_file(name, self.rank))

    def _beat(self) -> None:
        path = self._own(layout.BLOCK_HEARTBEAT)
        try:
            os.utime(path)
        except FileNotFoundError:
            open(path, "a").close()
        except OSError:
            pass  # a filesystem hiccup; the runner only worries after many seconds

    # -- taking and running -----------------------------------------------------------------
    def _take(self, room: int) -> bool:
        """Take up to ``room`` tickets; True if the queue had tickets. The queue is listed
        again only once the names of the last listing are used up (a name another block took
        meanwhile fails to rename, and is skipped)."""
        if not self.listed:
            try:
                names = sorted(os.listdir(self.queue), key=_ticket_order, reverse=True)
            except OSError:
                return False
            self.listed = [n for n in names if layout.ticket_task(n) is not None]
        had = bool(self.listed)
        while room > 0 and self.listed:
            name = self.listed.pop()
            path = os.path.join(self.running, name)
            try:
                os.rename(os.path.join(self.queue, name), path)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ESTALE):
                    continue  # another block took it (or the runner took it back)
                raise
            if self._start(name, path):
                room -= 1
        return had

    def _start(self, name: str, path: str) -> bool:
        found = layout.ticket_task(name)
        assert found is not None
        node, attempt = found
        try:
            with open(path, "rb") as f:
                ticket = pickle.load(f)
            fence, pack = ticket.get("fence") or "", bool(ticket.get("pack"))
        except Exception:  # noqa: BLE001 - a torn ticket: the worker reports the load error
            fence, pack = "", False
        if fence and os.path.exists(fence):
            _unlink(path)  # another runner took this runner's claims over: not ours to run
            return False
        slot = next((s for s in self.slots if s.ticket is None), None) or self._spawn()
        slot.ticket = (name, node, attempt, _identity(layout.outcome_path(self.root, node)),
                       pack)
        os.write(slot.send, f"{name} {int(pack)}\n".encode())
        return True

    def _spawn(self) -> Slot:
        to_child, from_parent = os.pipe()[::-1]
        from_child, to_parent = os.pipe()
        outputs = [os.pipe(), os.pipe()]
        pid = os.fork()
        if pid == 0:  # the worker: serves tickets until the pool closes its pipe
            code = 1
            try:
                os.setpgid(0, 0)  # its own process group: a cancel kills what it started too
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                for fd in (*self.wake, to_child, from_child,
                           *(fd for s in self.slots for fd in (s.send, s.done, *s.output))):
                    os.close(fd)
                code = self._serve_slot(from_parent, to_parent, outputs)
            finally:
                os._exit(code)
        os.close(from_parent)
        os.close(to_parent)
        for _, write_end in outputs:
            os.close(write_end)
        for read_end, _ in outputs:
            os.set_blocking(read_end, False)
        slot = Slot(pid, to_child, from_child, (outputs[0][0], outputs[1][0]))
        self.slots.append(slot)
        return slot

    def _serve_slot(self, tickets: int, answers: int, outputs: List[Tuple[int, int]]) -> int:
        clean = _CleanSlate()
        packed: Optional[PackedSlot] = None
        with os.fdopen(tickets, "r") as lines:
            for line in lines:
                name, _, pack = line.strip().partition(" ")
                node = int(name.split(".", 1)[0])
                path = os.path.join(self.running, name)
                if pack == "1":
                    packed = packed or PackedSlot(self.root, outputs, worker.run_bundle,
                                                  worker.watch_time_limit)
                    packed.run(path, node, int(name.split(".")[1]))
                else:
                    worker.execute_bundle(path, layout.outcome_path(self.root, node),
                                          layout.log_path(self.root, node, "out"),
                                          layout.log_path(self.root, node, "err"))
                clean.restore()
                os.write(answers, b"\n")
        if packed is not None:
            packed.close()
        return 0

    def _drain(self, fd: int) -> None:
        """A worker's answers: the ticket it ran is done (its outcome is written)."""
        try:
            data = os.read(fd, 512)
        except (BlockingIOError, InterruptedError):
            return
        if fd == self.wake[0]:
            return
        slot = next((s for s in self.slots if s.done == fd), None)
        if slot is not None and data and slot.ticket is not None:
            name = slot.ticket[0]
            slot.ticket = None
            if name in self.cancelled:  # it ended before the kill reached it
                self.cancelled.discard(name)
            _unlink(os.path.join(self.running, name))

    def _reap(self) -> None:
        """Workers that died: the task each ran failed (or was cancelled, or is lost)."""
        while self.slots:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            self.slots.remove(slot)
            self._drain(slot.done)  # an answer it sent just before dying
            os.close(slot.send)
            os.close(slot.done)
            if slot.ticket is not None:
                if slot.ticket[4]:
                    rescue_pipes(self.root, pid, slot.output)
                self._died(slot.ticket, pid, os.waitstatus_to_exitcode(status))
            for fd in slot.output:
                os.close(fd)

    def _died(self, ticket: Tuple[str, int, int, Identity, bool], pid: int, code: int) -> None:
        name, node, attempt, before, packed = ticket
        outcome = layout.outcome_path(self.root, node)
        # it wrote an outcome of its own (into its pack, format 2.0, or a file)
        finished = _identity(outcome) != before or \
            (packed and packed_by(self.root, pid, node, attempt))
        if packed:  # what it printed under its task stays, as the task's own log files,
            # unless the task is lost with the job (it runs again: its next attempt's count)
            lost = not finished and name not in self.cancelled and \
                (self.terminated or code == -signal.SIGTERM)
            keep_capture(self.root, pid, node, keep=not lost)
        header: Optional[Dict[str, Any]] = None
        if name in self.cancelled:
            self.cancelled.discard(name)
            header = {"ok": False, "reason": "cancelled", "error": "cancelled"}
        elif not finished and (self.terminated or code == -signal.SIGTERM):
            # Killed with the job (Slurm signals every process of it, maybe before this pool
            # hears of it): lost, not failed. The ticket stays for the runner.
            self.stopping = self.terminated = True
            return
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
        for name in names:
            ticket = layout.ticket_file(*name.split(".", 1)) if "." in name else ""
            mine = False
            for slot in self.slots:
                if slot.ticket is not None and slot.ticket[0] == ticket:
                    self.cancelled.add(ticket)
                    _kill(slot.pid)
                    mine = True
            if mine or self.pools == 1:  # another pool of the block may run it
                _unlink(os.path.join(self.cancel_dir, name))

    def _close_slots(self) -> None:
        """Idle workers end when their pipe closes; any still there a second later is killed."""
        for slot in self.slots:
            os.close(slot.send)
        deadline = time.monotonic() + 1.0
        for slot in self.slots:
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(slot.pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.01)
            else:
                _kill(slot.pid)
            os.close(slot.done)
            for fd in slot.output:
                os.close(fd)
        self.slots = []


class _CleanSlate:
    """What a worker puts back after each task, so that the next one starts as the first did:
    ``sys.stdout``/``sys.stderr`` (a task may close or replace them), ``os.environ``,
    ``sys.path`` (each bundle adds its own), the cwd and ``ct.get_context()``'s task. A copy of
    the worker that a task forked and that returned from it ends here."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.streams = (sys.stdout, sys.stderr)
        self.environ = dict(os.environ)
        self.path = list(sys.path)
        self.cwd = os.getcwd()

    def restore(self) -> None:
        if os.getpid() != self.pid:
            os._exit(0)
        out, err = self.streams
        if out.closed:
            out = open(1, "w", closefd=False, errors="backslashreplace")
        if err.closed:
            err = open(2, "w", closefd=False, errors="backslashreplace")
        sys.stdout, sys.stderr = self.streams = (out, err)
        if os.environ != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        sys.path[:] = self.path
        worker.CURRENT_TASK.clear()
        try:
            os.chdir(self.cwd)
        except OSError:
            pass


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
    rank, pools = 0, 1
    if argv[5:6] == ["srun"]:  # one of the block's Slurm tasks
        rank = int(os.environ.get("SLURM_PROCID") or 0)
        pools = int(os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS")
                    or 1)
        # The step's tasks are pools, not ranks of one task: a task here is whole on its own
        # (worker.py writes the outcome of rank 0 only of a step of several tasks).
        os.environ.pop("SLURM_STEP_NUM_TASKS", None)
    return Pool(root, block, int(slots), float(idle), float(walltime), rank, pools).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
