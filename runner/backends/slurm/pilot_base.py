"""The pilot backend's state, its tickets and its blocks' submission (``pilot`` has the
backend contract and learns what became of the blocks; its docstring has the policy)."""
from __future__ import annotations

import json
import logging
import os
import pickle
import secrets
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from runner import layout
from runner.backends.base import Completion, Services, Task
from runner.backends.slurm.client import SlurmError
from runner.backends.slurm.engine import LIVE_TICK, SlurmBackend
from runner.backends.slurm.jobs import Identity, Key, SlurmJob
from runner.backends.slurm.pilot_blocks import Block, blocks_on_disk, wanted_blocks
from runner.backends.slurm.pilot_files import PilotFiles, Ticket
from runner.backends.slurm.pilot_script import render_block_script
from runner.backends.slurm.pilot_settings import PilotSettings, parse_pilot, pilot_problem
from runner.backends.slurm.script import job_name, python_command
from runner.backends.slurm.settings import SettingsError
from runner.backends.slurm.site import SharedSite
from runner.fs import atomic_write
from runner.outcome import OutcomeHeader, read_outcome_header
from runner.packed_reads import PackScan
from runner.ssh.hostspec import SSHError

log = logging.getLogger("cov.slurm")

QUERY_EVERY = 5.0  # at most this many seconds between two squeue calls while blocks live
RETRY_SSH = 5.0  # seconds before trying again after the SSH connection failed


class PilotBase(SlurmBackend):
    """What ``PilotBackend`` keeps, and how it queues tasks and submits blocks; it shares the
    Slurm backend's settings, site and commands."""

    def __init__(self, config: Dict[str, Any], services: Services) -> None:
        self.files: Optional[PilotFiles] = None  # set with the site (``_use_site``)
        super().__init__(config, services)
        self.pilot = PilotSettings()
        problem = pilot_problem(config)
        if problem:
            self.error = self.error or problem
        else:
            self.pilot = parse_pilot(config.get("pilot")) or PilotSettings()
        # Through SSH too, the backend works in the runner's thread: a round is a few short
        # commands at most; the periodic look at the blocks and outcomes has its own thread
        # (``pilot_remote``).
        self.threaded = False
        self.reattached: List[Task] = []  # taken in at the next round (after connecting)
        self.outstanding: Dict[Key, Task] = {}
        self.fresh: List[Task] = []
        self.stale: Dict[Key, Optional[Identity]] = {}
        self.started_keys: Set[Key] = set()
        self.blocks: Dict[str, Block] = {}
        self.known_runs: Set[str] = set()
        self.losses: Dict[Key, int] = {}
        self.told: Dict[Key, str] = {}  # the pending reason last reported for a task
        self.cancelling: Set[Key] = set()
        self.failures: Dict[str, int] = {}
        self.query_at = 0.0
        # (run, node, path): live log copies of packed streams, removed at the next poll
        self.live_copies: List[Tuple[str, int, str]] = []

    def _use_site(self, site: SharedSite) -> None:
        super()._use_site(site)
        from runner.backends.slurm.remote import RemoteSite

        if isinstance(site, RemoteSite):  # no shared filesystem: the queue is the cluster's
            from runner.backends.slurm.pilot_remote import RemotePilotFiles

            self.files = RemotePilotFiles(site)
        else:
            self.files = PilotFiles(site)

    def _connect(self) -> bool:
        """Through SSH: connect and check the cluster's Python on first use. When that fails
        the tasks not yet queued fail with why, and the next try waits ``RETRY_SSH``."""
        if self.files is not None:
            return True
        if time.monotonic() < self.retry_at:
            return False
        from runner.backends.slurm.remote import connect

        try:
            site, self.pythonpath = connect(self.settings, self._login_secrets)
        except Exception as exc:  # noqa: BLE001 - SSHError, VersionMismatch, bad parameters
            message = f"cannot use Slurm on {self.settings.address}: {exc}"
            log.warning("slurm pilot: %s", message)
            fresh, self.fresh = self.fresh, []
            for task in fresh:
                self._end((task.run, task.node),
                          Completion.failed(task, "submit", message, host=self.host).header)
            self.retry_at = time.monotonic() + RETRY_SSH
            return False
        self._use_site(site)
        return True

    # -- tickets and tasks ------------------------------------------------------------------
    @staticmethod
    def _name(task: Task) -> str:
        return layout.ticket_file(task.node, task.attempt)

    def _ticket(self, task: Task) -> bytes:
        """The task's bundle with the claim's fence (the pool checks it before starting)."""
        bundle = pickle.loads(self._bundle(task))
        bundle["fence"] = task.fence
        # format 2.0 on a shared filesystem: the block's worker packs its outcome and logs
        bundle["pack"] = bool(task.pack and self.files is not None and self.files.packs)
        return pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL)

    def _end(self, key: Key, header: OutcomeHeader) -> None:
        task = self.outstanding.get(key)
        if task is None:
            return
        self._forget(key)
        if header.get("ok") and task.files and self.settings.over_ssh:
            # ExecutorConnection transfers after the task, over the login connection
            header = self._transfer(SlurmJob(task), "after", header.get("start")) or header
        self._emit(Completion.of(task, header))

    def _forget(self, key: Key) -> None:
        self.outstanding.pop(key, None)
        for table in (self.stale, self.losses, self.told):
            table.pop(key, None)
        self.started_keys.discard(key)
        self.cancelling.discard(key)

    def _take_reattached(self) -> None:
        """The attempts ``reattach`` took in: their tickets are looked for (``files``); any
        left when a step fails (the connection) are looked for at the next round."""
        assert self.files is not None
        while self.reattached:
            task = self.reattached[0]
            if self.outstanding.get((task.run, task.node)) is task:  # else cancelled, dropped
                self._prepare(task.run)
                name = self._name(task)
                self.files.reattach(task.run, (name, self._ticket(task)), lambda: any(
                    name in b.tickets() for b in self._live(task.run)) or
                    read_outcome_header(task.outcome_path) is not None or
                    _packed(task))
            self.reattached.pop(0)

    def _runs_out(self) -> Dict[str, List[int]]:
        """The runs with tasks out or blocks not yet settled, and their tasks' nodes."""
        runs: Dict[str, List[int]] = {b.run: [] for b in self.blocks.values()}
        for run, node in self.outstanding:
            runs.setdefault(run, []).append(node)
        return runs

    def _fetch_live(self, now: float) -> None:
        """Through SSH without a shared filesystem: what the running tasks' remote logs
        gained, in one command for all of them (``cov logs -f``)."""
        assert self.site is not None
        tasks = [self.outstanding[k] for k in sorted(self.started_keys) if k in self.outstanding]
        if tasks:
            self.site.fetch_live(tasks)
        self.live_at = now + LIVE_TICK

    def _write_tickets(self) -> None:
        """The new tickets, one ``put`` per run. Through SSH, a failed connection leaves them
        for the next round; any other failure fails them with why."""
        assert self.files is not None
        fresh, self.fresh = self.fresh, []
        now = round(time.time(), 3)
        by_run: Dict[str, List[Task]] = {}
        for task in fresh:
            if self.outstanding.get((task.run, task.node)) is task:  # else cancelled, dropped
                by_run.setdefault(task.run, []).append(task)
        for run, tasks in by_run.items():
            tickets: List[Ticket] = []
            queued: List[Task] = []
            try:
                self._prepare(run)
                for task in tasks:
                    if task.files and self.settings.over_ssh:  # the transfers before it
                        failed = self._transfer(SlurmJob(task), "before")
                        if failed is not None:
                            self._end((task.run, task.node), failed)
                            continue
                    try:
                        tickets.append((self._name(task), self._ticket(task)))
                        queued.append(task)
                    except Exception as exc:  # noqa: BLE001 - an input unreadable
                        self._not_queued(task, exc)
                self.files.put(run, tickets)
            except SSHError as exc:
                log.warning("slurm pilot: cannot queue tasks: %s (trying again)", exc)
                self.fresh.extend(t for t in tasks if t not in self.fresh)
                continue
            except Exception as exc:  # noqa: BLE001 - the disk full, the remote copy gone
                for task in tasks:  # (those already ended are not ended twice: ``_end``)
                    self._not_queued(task, exc)
                continue
            for task in queued:
                self._emit_handle(task, {"pilot": True, "host": self.host, "submitted": now})

    def _not_queued(self, task: Task, exc: Exception) -> None:
        self._end((task.run, task.node), Completion.failed(
            task, "submit", f"cannot queue the task for the pilot blocks: {exc}",
            host=self.host).header)

    def _prepare(self, run: str) -> None:
        """The run's first task: the worker and pool files, the queue, and the blocks a
        previous runner left (they are watched and used like ours)."""
        if run in self.known_runs:
            return
        assert self.files is not None
        self.files.prepare(run)  # slurm/worker.py, pilot_pool.py ... and slurm/pilot/queue
        for block_id, block in blocks_on_disk(run).items():
            self.blocks.setdefault(block_id, block)
        self.known_runs.add(run)

    # -- blocks -----------------------------------------------------------------------------
    def _live(self, run: Optional[str] = None) -> List[Block]:
        return [b for b in self.blocks.values() if not b.gone and (run is None or b.run == run)]

    def _scale(self) -> None:
        """Submit the blocks the runs' tasks call for (``wanted_blocks``)."""
        if time.monotonic() < self.retry_at:
            return
        room = self.pilot.max_blocks - len(self._live())
        per_block = self.pilot.workers * self.pilot.nodes or \
            max([b.workers for b in self.blocks.values()] + [1])
        demand: Dict[str, int] = {}
        for run, _ in self.outstanding:
            demand[run] = demand.get(run, 0) + 1
        for run in {b.run for b in self._live()} - set(demand):
            self._drop_unstarted(run, 0)  # nothing left to do: blocks still in line go
        for run, tasks in demand.items():
            want = wanted_blocks(tasks, per_block, self.pilot.min_blocks, self.pilot.max_blocks)
            self._drop_unstarted(run, want)
            for _ in range(min(room, want - len(self._live(run)))):
                if not self._submit_block(run):
                    return
                room -= 1

    def _drop_unstarted(self, run: str, keep: int) -> None:
        """Beyond ``keep`` blocks for the run, scancel those still waiting in Slurm's queue
        (the newest first): once the work is gone they would start only to sit idle."""
        live = self._live(run)
        surplus = len(live) - keep
        waiting = [b for b in reversed(live) if not b.started and b.job_id][:max(0, surplus)]
        if waiting and self.client is not None:
            self.client.scancel([b.job_id for b in waiting])
            for block in waiting:
                block.gone, block.gone_at = "not needed any more (scancelled)", time.monotonic()

    def _submit_block(self, run: str) -> bool:
        assert self.site is not None and self.client is not None
        task = next(t for (r, _), t in self.outstanding.items() if r == run)
        assert self.files is not None
        block = Block(run, f"b{int(time.time())}-{secrets.token_hex(3)}")
        try:
            self.files.new_block(block)
            text = render_block_script(
                self.settings, self.pilot, root=self.site.root(run),
                dispatch_id=task.dispatch_id, block=block.id,
                name=job_name(task.dispatch_id, "pilot"),
                python=python_command(self.settings, self._default_python()),
                pythonpath=self.pythonpath,
                secrets_file=self._write_secrets(run, self._executor_key(task)))
            path = self.site.write_script(run, text)
        except SSHError as exc:  # the connection: try again in a while
            log.warning("slurm pilot: cannot submit a block: %s", exc)
            self.retry_at = time.monotonic() + RETRY_SSH
            return False
        except (SettingsError, OSError) as exc:
            self._fail_queued(run, f"cannot write the pilot block's sbatch script: {exc}")
            return False
        try:
            block.job_id = self.client.sbatch(path, cwd=self.site.jobs_dir(run))
        except SlurmError as exc:
            self.site.discard_script(run, path)
            if exc.transient:
                self.retry_at = time.monotonic() + 5.0
            else:
                self._fail_queued(run, str(exc))
            return False
        self.site.submitted(run, path, block.job_id)
        atomic_write(block.path(layout.BLOCK_INFO), json.dumps(
            {"job_id": block.job_id, "submitted": time.time()}).encode())
        self.blocks[block.id] = block
        self.query_at = min(self.query_at, time.monotonic() + min(self.settings.poll_freq,
                                                                   QUERY_EVERY))
        return True

    def _fail_queued(self, run: str, message: str) -> None:
        """Fail the run's tasks no block has taken (their tickets are taken back first)."""
        assert self.files is not None
        tasks = [task for key, task in self.outstanding.items() if key[0] == run]
        taken = self.files.take_back(run, [self._name(t) for t in tasks if t not in self.fresh])
        for task in tasks:
            if task in self.fresh:
                self.fresh.remove(task)
            elif self._name(task) not in taken:
                continue  # a block took it: it runs, or is settled when its block goes
            self._end((task.run, task.node),
                      Completion.failed(task, "submit", message, host=self.host).header)


def _packed(task: Task) -> bool:
    """Whether a block's worker appended the outcome of ``task``'s attempt to its pack (a
    ticket that ended while no runner watched: format 2.0)."""
    return PackScan(layout.results_dir(task.run)).find(task.node, task.attempt) is not None


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
