"""Pilot mode through SSH without a shared filesystem: the queue and the blocks' files live in
the cluster's copy of the run directory (``remote.RemoteSite``: ``<remote_workdir>/.cov/<id>/``).

The blocks run ``pilot_pool.py`` against that copy exactly as they would against a shared run
directory (they cannot tell). The runner reaches it through the executor's SSH connection:

* ``put``: the new tickets of a round in one ``tar`` stream, unpacked into a directory beside
  the queue and renamed into it (a block never sees half a ticket); a retried attempt's old
  outcome and logs there are removed in the same command, so they cannot pass for its own;
* ``refresh`` (every ``REFRESH_EVERY`` s per run while it has tasks out or blocks, in a thread
  of its own so that the runner's loop never waits on the connection for it, its answer taken
  in at the next round; at once when forced): one command prints every block's
  ``started``/``exited`` files, heartbeat times and ``running/`` listing, then a ``tar`` of
  the outcomes and logs of the tasks out. The block
  files are mirrored into the local ``slurm/pilot/blocks/`` (so ``pilot_blocks.Block`` reads
  them as in shared mode, and a restarted runner finds them), the outcomes and logs go into
  ``results/`` and ``logs/``;
* taking tickets back (cancel, a failed block submission) is one ``rm`` per ticket in one
  command, whose output names those removed: a ticket a block renamed first is not there;
* a lost block's tickets go back with ``mv`` from its ``running/`` to the queue; ``stop`` and
  ``cancel/`` requests are ``touch`` lines (cancels go with the round's sweep).

A re-attached ticket (a runner restart) is checked at the next refresh: the command lists the
queue first, then the blocks' ``running/``, then the outcomes, so a ticket moving on between
two listings is still seen in the next; one found nowhere is queued again.

Every remote path is ``shlex``-quoted; ticket and block names are the runner's own.
"""
from __future__ import annotations

import logging
import os
import secrets
import shlex
import tarfile
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from runner import layout
from runner.backends.slurm.pilot_blocks import Block
from runner.backends.slurm.pilot_files import PilotFiles, Ticket, _unlink
from runner.backends.slurm.remote import RemoteSite
from runner.tar_stream import tar_files
from runner.backends.slurm.site import Identity
from runner.fs import atomic_write
from runner.outcome_pack import Location

log = logging.getLogger("cov.slurm")

REFRESH_EVERY = 0.25  # seconds between two looks at a run's blocks and outcomes
RETRY_AFTER = 5.0  # seconds before looking again after a look failed (the connection)
TIMEOUT = 30.0  # seconds a command may take: the backend works in the runner's loop
MARK = b"@cov outcomes\n"  # between the block listing and the outcomes' tar stream


class RemotePilotFiles(PilotFiles):
    """The pilot queue and blocks in the cluster's copy of the run directory."""

    # Outcomes and logs are copied back one file per node (``outcomes``): the blocks write
    # them so, not into packs (docs/executors.md).
    packs = False

    def packed(self, run: str, force: bool = False) -> List[Tuple[Dict[str, Any], Location]]:
        return []

    def __init__(self, site: RemoteSite) -> None:
        super().__init__(site)
        self.remote = site
        self._looked: Dict[str, float] = {}  # run -> when its last refresh ran
        self._current: Dict[str, bool] = {}  # run -> whether its last refresh worked
        self._found: Dict[str, Dict[int, Identity]] = {}  # outcomes fetched, not yet taken
        self._verify: Dict[str, Dict[str, bytes]] = {}  # run -> re-attached tickets to check
        self._looks: Dict[str, "_Look"] = {}  # run -> its look in flight (a thread)

    # -- paths on the cluster --------------------------------------------------------------
    def _root(self, run: str) -> str:
        return self.remote.root(run)

    def _block_rel(self, block: Block, name: str = "") -> str:
        rel = f"{layout.PILOT_BLOCKS}/{block.id}"
        return f"{rel}/{name}" if name else rel

    def _run(self, run: str, script: str, data: Optional[bytes] = None) -> Tuple[int, bytes]:
        """``script`` under /bin/sh in the run's remote root; raises ``SSHError`` if the
        connection fails."""
        from runner.ssh import protocol

        line = f"cd {shlex.quote(self._root(run))} || exit 3\n{script}"
        code, out, err = self.remote.remote.run_bytes(protocol.command(line), input=data,
                                                      timeout=TIMEOUT)
        if code == 3:
            raise OSError(f"{self._root(run)} is missing on {self.remote.remote.host.label}")
        return code, out

    def _checked(self, run: str, script: str, data: Optional[bytes] = None) -> bytes:
        code, out = self._run(run, script, data)
        if code != 0:
            raise OSError(f"`{script[:60]}...` failed on {self.remote.remote.host.label} "
                          f"(exit {code})")
        return out

    # -- the verbs -------------------------------------------------------------------------
    def prepare(self, run: str) -> None:
        self.remote.prepare(run)
        os.makedirs(os.path.join(run, layout.PILOT_BLOCKS), exist_ok=True)  # the mirror
        self._checked(run, f"mkdir -p -- {layout.PILOT_QUEUE} {layout.PILOT_BLOCKS}")

    def put(self, run: str, tickets: Sequence[Ticket]) -> None:
        if not tickets:
            return
        q = shlex.quote
        incoming = f"{layout.PILOT_QUEUE}.in-{secrets.token_hex(4)}"
        stale: List[str] = []
        for name, _ in tickets:
            found = layout.ticket_task(name)
            if found is not None and found[1] > 1:  # a retry: the last attempt's files go
                stale += [layout.outcome_rel(found[0]),
                          *(layout.log_rel(found[0], s) for s in layout.STREAMS)]
        lines = [f"mkdir -p -- {incoming} && tar xf - -C {incoming} || exit 1"]
        if stale:
            lines.append("rm -f -- " + " ".join(q(p) for p in stale))
        lines.append(f"mv -f -- {incoming}/* {layout.PILOT_QUEUE}/ && rmdir -- {incoming}")
        self._checked(run, "\n".join(lines), tar_files(tickets))

    def take_back(self, run: str, names: Iterable[str]) -> Set[str]:
        wanted = sorted(set(names))
        if not wanted:
            return set()
        out = self._checked(run, f"cd {layout.PILOT_QUEUE} || exit 1\nfor n in "
                                 f"{' '.join(shlex.quote(n) for n in wanted)}; do "
                                 'rm -- "$n" 2>/dev/null && echo "$n"; done; true')
        return set(out.decode("utf-8", "replace").split()) & set(wanted)

    def requeue(self, block: Block, tickets: Sequence[Ticket]) -> None:
        """``mv`` back: the fence in a ticket means nothing on the cluster (its path is the
        runner's), so the ticket need not be written again."""
        if not tickets:
            return
        q = shlex.quote
        lines = [f"mv -f -- {q(self._block_rel(block, layout.BLOCK_RUNNING) + '/' + name)} "
                 f"{q(layout.PILOT_QUEUE + '/' + name)}" for name, _ in tickets]
        self._checked(block.run, "\n".join(lines) + "\ntrue")
        for name, _ in tickets:
            _unlink(block.ticket_path(name))

    def discard(self, block: Block, names: Iterable[str]) -> None:
        paths = [f"{self._root(block.run)}/{self._block_rel(block, layout.BLOCK_RUNNING)}/{n}"
                 for n in names]
        if paths:
            self.remote.later("rm -f -- " + " ".join(shlex.quote(p) for p in paths))
        for name in names:
            _unlink(block.ticket_path(name))

    def new_block(self, block: Block) -> None:
        super().new_block(block)  # the local mirror, and block.json's place
        self._checked(block.run, "mkdir -p -- " + " ".join(
            shlex.quote(self._block_rel(block, d)) for d in (layout.BLOCK_RUNNING,
                                                              layout.BLOCK_CANCEL)))

    def stop(self, blocks: Sequence[Block]) -> None:
        """At once (the run ended: the backend may not poll again soon)."""
        by_run: Dict[str, List[Block]] = {}
        for block in blocks:
            by_run.setdefault(block.run, []).append(block)
        for run, some in by_run.items():
            try:
                self._run(run, "touch -- " + " ".join(
                    shlex.quote(self._block_rel(b, layout.BLOCK_STOP)) for b in some))
            except Exception as exc:  # noqa: BLE001 - the block still exits when idle
                log.warning("slurm pilot: cannot ask blocks to stop: %s", exc)

    def cancel(self, block: Block, name: str) -> None:
        found = layout.ticket_task(name)
        if found is None:
            return
        path = (f"{self._root(block.run)}/{self._block_rel(block, layout.BLOCK_CANCEL)}/"
                f"{layout.attempt_name(*found)}")
        self.remote.later(f"touch -- {shlex.quote(path)}")

    def reattach(self, run: str, ticket: Ticket, placed: Callable[[], bool]) -> None:
        name, data = ticket
        self._verify.setdefault(run, {})[name] = data
        self._looked[run] = 0.0  # look at once

    # -- reading ---------------------------------------------------------------------------
    def refresh(self, runs: Dict[str, List[int]], force: bool = False) -> None:
        """A look that is due runs in a thread of its own, so that the runner's loop never
        waits on the connection for it; its answer is taken in at the next call. Forced: at
        once (after the look in flight, if any), and taken in before returning."""
        now = time.monotonic()
        for run, nodes in runs.items():
            look = self._looks.get(run)
            if look is not None:
                if look.is_alive() and not force:
                    continue
                look.join()
                del self._looks[run]
                self._take(look)
            if not force and now - self._looked.get(run, 0.0) < REFRESH_EVERY:
                continue
            self._looked[run] = now
            look = _Look(self, run, nodes)
            if force:
                look.run()
                self._take(look)
            else:
                self._looks[run] = look
                look.start()

    def current(self, run: str) -> bool:
        return self._current.get(run, True)

    def outcomes(self, run: str, nodes: Iterable[int], force: bool = False
                 ) -> Optional[Dict[int, Identity]]:
        if force:
            self.refresh({run: list(nodes)}, force=True)
        return self._found.pop(run, None)

    def log_tail(self, block: Block) -> Tuple[str, str]:
        path = f"{self._root(block.run)}/{self._block_rel(block, layout.BLOCK_LOG)}"
        result = self.remote.remote.run(["tail", "-c", "2000", path])
        return f"{self.remote.remote.host.label}:{path}", result.stdout if result.ok else ""

    def look_script(self, run: str, nodes: List[int], queue: bool) -> str:
        """The one command of a look: (the queue's listing,) every block's files, the
        outcomes and logs of ``nodes``. The queue is listed before the blocks' running/, and
        outcomes last: a ticket that moves on meanwhile shows in the next listing."""
        skip = " ".join(name for name in _settled(run))
        return "\n".join([
            f'echo "@cov queue" $(ls {layout.PILOT_QUEUE} 2>/dev/null)' if queue else "",
            f"for d in {layout.PILOT_BLOCKS}/*/; do",
            ' [ -d "$d" ] || continue; b=${d%/}; b=${b##*/}',
            f' case " {skip} " in *" $b "*) continue;; esac',
            ' echo "@cov block $b"',
            ' for f in "$d"started*.json "$d"exited*; do [ -f "$f" ] && '
            '{ echo "@cov file ${f##*/}"; cat "$f"; echo; }; done',
            ' for f in "$d"heartbeat*; do [ -f "$f" ] && '
            'echo "@cov beat ${f##*/} $(stat -c %Y "$f" 2>/dev/null)"; done',
            f' echo "@cov running" $(ls "${{d}}{layout.BLOCK_RUNNING}" 2>/dev/null)',
            "done",
            f'echo "@cov outcomes"; {self.remote.outcomes_script(nodes)}'])

    def _take(self, look: "_Look") -> None:
        """A finished look's answer into the mirror, the outcomes into the run directory; the
        re-attached tickets it looked for and found nowhere are queued again."""
        run = look.run_dir
        head, mark, tar = look.out.partition(MARK)
        # tar's 2: a file it was given went meanwhile (a finished task's copies cleaned up, a
        # retry's old outcome removed); the stream still holds the others
        if look.error is None and (look.code not in (0, 2) or not mark):
            look.error = OSError(f"the look at the pilot blocks failed (exit {look.code})")
        found: Dict[int, Identity] = {}
        if look.error is None:
            try:
                found = self.remote.unpack_outcomes(run, look.nodes, tar)
            except (OSError, tarfile.TarError) as exc:
                look.error = exc
        if look.error is not None:
            self._current[run] = False
            self._looked[run] = time.monotonic() + RETRY_AFTER - REFRESH_EVERY
            log.warning("slurm pilot: cannot look at the blocks of %s: %s",
                        os.path.basename(run), look.error)
            return
        self._current[run] = True
        queued, placed = self._mirror(run, head.decode("utf-8", "replace"))
        self._found.setdefault(run, {}).update(found)
        if not look.verify:
            return
        waiting = self._verify.get(run, {})
        for name in look.verify:
            waiting.pop(name, None)
        if not waiting:
            self._verify.pop(run, None)
        lost = [(name, data) for name, data in sorted(look.verify.items())
                if name not in queued and name not in placed and
                (layout.ticket_task(name) or (-1, 0))[0] not in found]
        if lost:
            log.warning("slurm pilot: %d re-attached task(s) found nowhere on the cluster: "
                        "queued again", len(lost))
            try:
                self.put(run, lost)
            except Exception:  # noqa: BLE001 - looked for again at the next look
                self._verify.setdefault(run, {}).update(lost)
                raise

    def _mirror(self, run: str, text: str) -> Tuple[Set[str], Set[str]]:
        """Write the listed blocks' files into the local mirror; (the queue's names, the
        names in any block's running/)."""
        queued: Set[str] = set()
        placed: Set[str] = set()
        block: Optional[Block] = None
        lines = iter(text.splitlines())
        for line in lines:
            if not line.startswith("@cov "):
                continue  # noise from the login shell
            kind, _, rest = line[5:].partition(" ")
            if kind == "queue":
                queued = set(rest.split())
            elif kind == "block" and _safe(rest):
                block = Block(run, rest)
                os.makedirs(block.path(layout.BLOCK_RUNNING), exist_ok=True)
            elif block is None:
                continue
            elif kind == "file" and _safe(rest):
                _write_if_changed(block.path(rest), next(lines, "").encode())
            elif kind == "beat":
                name, _, seconds = rest.partition(" ")
                if _safe(name) and seconds.strip().isdigit():
                    _set_mtime(block.path(name), int(seconds) * 1_000_000_000)
            elif kind == "running":
                names = {n for n in rest.split() if layout.ticket_task(n) is not None}
                placed |= names
                _mirror_listing(block.path(layout.BLOCK_RUNNING), names)
        return queued, placed


class _Look(threading.Thread):
    """One look at a run's blocks and outcomes: the command runs here (``run``); the answer
    is the runner thread's to take in (``RemotePilotFiles._take``)."""

    def __init__(self, files: RemotePilotFiles, run: str, nodes: List[int]) -> None:
        super().__init__(name="cov-pilot-look", daemon=True)
        self.files, self.run_dir, self.nodes = files, run, nodes
        self.verify = dict(files._verify.get(run, {}))  # the re-attached, looked for here
        self.script = files.look_script(run, nodes, queue=bool(self.verify))
        self.code, self.out = -1, b""
        self.error: Optional[Exception] = None

    def run(self) -> None:
        try:
            self.code, self.out = self.files._run(self.run_dir, self.script)
        except Exception as exc:  # noqa: BLE001 - SSHError, OSError: the runner's to report
            self.error = exc


def _settled(run: str) -> List[str]:
    """Blocks whose mirror says they exited with nothing running: nothing changes there."""
    base = os.path.join(run, layout.PILOT_BLOCKS)
    try:
        names = os.listdir(base)
    except OSError:
        return []
    settled = []
    for name in names:
        block = Block(run, name)
        if _safe(name) and block.exited() and not block.tickets():
            settled.append(name)
    return settled


def _safe(name: str) -> bool:
    return bool(name) and "/" not in name and not name.startswith(".") and \
        all(c.isalnum() or c in "-_.:" for c in name)


def _write_if_changed(path: str, data: bytes) -> None:
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    atomic_write(path, data)


def _set_mtime(path: str, ns: int) -> None:
    try:
        if os.stat(path).st_mtime_ns == ns:
            return
    except FileNotFoundError:
        open(path, "a").close()
    os.utime(path, ns=(ns, ns))


def _mirror_listing(directory: str, names: Set[str]) -> None:
    try:
        have = {n for n in os.listdir(directory) if layout.ticket_task(n) is not None}
    except OSError:
        have = set()
    for name in names - have:
        open(os.path.join(directory, name), "a").close()
    for name in have - names:
        _unlink(os.path.join(directory, name))
