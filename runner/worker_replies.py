"""A pool worker's answers to the runner on its connection, and which of them wait to go together.

A reply is ``(run, node, attempt, header)`` for a task's end, or ``(run, node, attempt, start
time)`` for a task still running ``START_DELAY`` after it started (it is RUNNING from then on;
short tasks never send one: their outcome has their start). A message is one reply, or a list
of replies in the order they happened.

Ends that wait: an end whose follow-on (the next task in this worker, queued ``after`` it) runs
next is held and goes with that follow-on's end. Alone, the runner could only write it with the
follow-on's claim; together, a list node and the task that consumes it (W3's dense layers), or
the hops of a chain queued here (W2), cost the runner one wake-up and one pass instead of one
each. Held ends never wait for long: at most ``HOLD_MAX`` are held, and a follow-on still
running ``HOLD_DELAY`` after its parent's end was held has them sent without it (a long one
must not leave its parent RUNNING in ``cov status``, nor open a long window in which a cancel
of that parent, which the runner still thinks running, would kill the follow-on instead).
Nothing is lost by the wait: a held end's outcome is on disk, as every end's is before its
reply is sent.

Imports only the stdlib (the pool process may run in another interpreter than the runner's).
"""
from __future__ import annotations

import pickle
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

START_DELAY = 0.05  # how long a pool task runs before the worker says it started
HOLD_MAX = 8  # ends held at most (a chain's follow-ons are queued up to 8 ahead)
HOLD_DELAY = 0.002  # how long an end is held at most while its follow-on runs

Reply = Tuple[str, int, int, Any]


def follows(task: Dict[str, Any], parent: Dict[str, Any]) -> bool:
    """``task`` is a follow-on of attempt ``parent`` (it is queued ``after`` it)."""
    node, attempt = parent["node"], parent.get("attempt", 1)
    return task.get("run") == parent["run"] and \
        any(n == node and a == attempt for n, a in task.get("after") or ())


class Replies:
    """The replies of one pool worker: ends (some held, see the module docstring) and the
    starts of long tasks. A thread of its own looks every ``START_DELAY`` while a task runs
    and sleeps while the worker is idle, and sends the held ends ``HOLD_DELAY`` after an end
    was held if a task still runs; the task's thread only sets ``current`` (and ``kick``, to
    say an end is held). Sends on the connection, and ``held``, are under ``lock`` (both
    threads send)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.current: Optional[Tuple[str, int, int, float]] = None
        self.held: List[Reply] = []
        self.busy = threading.Event()
        self.kick = threading.Event()  # an end was held
        threading.Thread(target=self._watch, name="cov-start", daemon=True).start()

    def begin(self, task: Dict[str, Any]) -> None:
        """The task starts now."""
        self.current = (task["run"], task["node"], task.get("attempt", 1), time.time())
        if not self.busy.is_set():
            self.busy.set()

    def end(self, reply: Reply, hold: bool = False) -> None:
        """Send ``reply`` with the ends held before it; ``hold``: the task's follow-on runs
        next, so the end may wait for it (``HOLD_MAX`` at most)."""
        self.current = None
        with self.lock:
            if hold and len(self.held) < HOLD_MAX:
                self.held.append(reply)
                if not self.kick.is_set():
                    self.kick.set()
                return
            batch, self.held = self.held, []
            batch.append(reply)
            self._send(batch)

    def flush(self) -> None:
        """Send the ends held (before the worker waits for its next message)."""
        if self.held:
            with self.lock:
                batch, self.held = self.held, []
                if batch:
                    self._send(batch)

    def _send(self, batch: List[Reply]) -> None:
        # One pickle of plain tuples, read by the runner's ``Connection.recv``: cheaper than
        # ``Connection.send``'s ForkingPickler, which this data does not need.
        self.conn.send_bytes(pickle.dumps(batch[0] if len(batch) == 1 else batch,
                                          pickle.HIGHEST_PROTOCOL))

    def _watch(self) -> None:
        told = None
        while True:
            self.busy.wait()
            if self.kick.wait(START_DELAY):
                self.kick.clear()
                time.sleep(HOLD_DELAY)
                try:
                    with self.lock:
                        if self.held and self.current is not None:  # its follow-on runs on
                            batch, self.held = self.held, []
                            self._send(batch)
                except (OSError, ValueError):
                    return  # the runner is gone
                continue
            current = self.current
            if current is None:
                self.busy.clear()
                if self.current is not None:  # a task began meanwhile: keep watching it
                    self.busy.set()
                continue
            if current is told or time.time() - current[3] < START_DELAY:
                continue
            told = current
            try:
                with self.lock:
                    if self.current is current:  # still running: not ended meanwhile
                        batch, self.held = self.held, []
                        batch.append(current)
                        self._send(batch)
            except (OSError, ValueError):
                return  # the runner is gone


def hold_end(header: Mapping[str, Any], task: Dict[str, Any],
             pending: List[Dict[str, Any]]) -> bool:
    """May the end of ``task`` (``header``) wait for the next task of ``pending``, its
    follow-on?"""
    return bool(header.get("ok")) and bool(pending) and follows(pending[0], task)
