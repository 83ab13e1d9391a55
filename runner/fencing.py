"""Fences: a runner stopped past the stale limit must not run what other runners took over.

A runner that takes over a claim of a runner it finds dead first creates that runner's fence
(``.runners/<id>.fenced``, ``runner.liveness.fence_path``). The fence is the claims' fencing
token: a pool worker of the fenced runner (alive if the runner was only stopped) starts none of
its tasks and writes no outcome, and the fenced runner, when it wakes, drops every attempt it
held and goes on under a new id (``Runner._check_fenced``). A runner of this host whose process
is gone needs no fence: its workers died with it (``PR_SET_PDEATHSIG``).

State: the ids this runner has fenced off (``fenced``), so each fence is written once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Set

from runner.fs import FILE_MODE
from runner.liveness import HOST, fence_path, pid_alive, runners_dir


def _dead_here(runner_id: str) -> bool:
    """A runner of this host whose process is gone (``runner_id`` is ``host:pid:started``)."""
    host, _, rest = runner_id.partition(":")
    pid = rest.partition(":")[0]
    return host == HOST and pid.isdigit() and not pid_alive(int(pid))


class Fences:
    """The fences one runner writes for the claims it takes over."""

    def __init__(self, home: Path, log: Callable[[str], None]) -> None:
        self.home = home
        self._log = log
        self.fenced: Set[str] = set()  # runners whose claims we fenced off

    def fence_off(self, runner_id: str) -> bool:
        """Before a claim of ``runner_id`` is superseded: create its fence, so that its pool
        workers (alive if it was only stopped) start none of its tasks. False if the fence
        cannot be written (then the claim must not be taken)."""
        if runner_id in self.fenced:
            return True
        if _dead_here(runner_id):
            self.fenced.add(runner_id)  # dead: its workers died with it (PR_SET_PDEATHSIG)
            return True
        try:
            fd = os.open(fence_path(self.home, runner_id), os.O_WRONLY | os.O_CREAT, FILE_MODE)
            os.close(fd)
        except OSError as exc:
            self._log(f"cannot fence off runner {runner_id}: {exc}; its claims stay its own")
            return False
        self.fenced.add(runner_id)
        return True

    def remove_dead(self) -> None:
        """Fences of this host's runners that are gone: nothing is left to fence off."""
        try:
            names = os.listdir(runners_dir(self.home))
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(".fenced") and _dead_here(name):
                try:
                    os.unlink(runners_dir(self.home) / name)
                except OSError:
                    pass
