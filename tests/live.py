"""Helpers of the live-output tests: a task that prints, sleeps, prints again, and a follower
(``cov logs -f`` as a subprocess) that records when each line arrived."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent


def go_file() -> Path:
    """A path for ``talker(go=...)``, in a fresh directory any local user can look into."""
    folder = Path(tempfile.mkdtemp(prefix="cov-live-go-"))
    folder.chmod(0o755)
    return folder / "go"


def talker(pause: float, go: str = "") -> str:
    """Prints a stamped line on each stream, sleeps ``pause`` s, prints again (flush=True).
    With ``go`` (a path on a filesystem it shares with the test), it first prints ``ready``
    and waits for that file: ``check_live`` creates it once the follower has shown ``ready``,
    so that the stamps measure the live path, not how long the follower took to start on a
    loaded machine. Imports inside: it runs on hosts that have only the standard library."""
    import os as _os
    import sys as _sys
    import time as _time

    if go:
        print("ready", flush=True)
        deadline = _time.time() + 300
        while not _os.path.exists(go) and _time.time() < deadline:
            _time.sleep(0.05)
    print(f"first {_time.time():.3f}", flush=True)
    print(f"warn {_time.time():.3f}", file=_sys.stderr, flush=True)
    _time.sleep(pause)
    print(f"second {_time.time():.3f}", flush=True)
    return "done"


class Follower:
    """``cov logs -f RUN [NODE] [ARGS]`` running; ``lines``: (arrival time, line) as read."""

    def __init__(self, run_id: str, *args: str, env: Optional[dict] = None) -> None:
        self.lines: List[Tuple[float, str]] = []
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "covalent_cli.cli", "logs", "-f", run_id, *args],
            stdout=subprocess.PIPE, stderr=self.err, text=True, cwd=str(REPO),
            env={**os.environ, **(env or {})})
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def wait_for(self, fragment: str, timeout: float) -> Tuple[float, str]:
        """The first line holding ``fragment`` and when it arrived (AssertionError if none)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for stamp, line in list(self.lines):
                if fragment in line:
                    return stamp, line
            if self.proc.poll() is not None and not self.thread.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"{fragment!r} not shown within {timeout} s: {self.texts()}")

    def texts(self) -> List[str]:
        return [line for _, line in self.lines]

    def finish(self, timeout: float = 60) -> str:
        """Wait for the follower to end (the run ended); its stderr."""
        self.proc.wait(timeout=timeout)
        self.thread.join(timeout=5)
        self.err.seek(0)
        err = self.err.read()
        assert self.proc.returncode == 0, (self.proc.returncode, err, self.texts())
        return err


def latency(line: Tuple[float, str]) -> float:
    """Seconds between the stamp a ``talker`` line carries and its arrival."""
    stamp, text = line
    return stamp - float(text.rsplit(" ", 1)[-1])


def check_live(follower: Follower, label: str, pause: float, limit: float = 1.0,
               streams: Sequence[str] = ("stdout", "stderr"),
               go: Optional[Path] = None) -> List[float]:
    """The talker's first lines arrive while it sleeps, each within ``limit`` s of being
    printed, marked with ``label`` and their stream; the run's end ends the follower.
    ``go``: the talker's go file, created once the follower has shown its ``ready`` line."""
    if go is not None:
        follower.wait_for(f"[{label} stdout] ready", timeout=120)
        go.touch()
    first = follower.wait_for(f"[{label} stdout] first ", timeout=60)
    shown = [first] + ([follower.wait_for(f"[{label} stderr] warn ", timeout=5)]
                       if "stderr" in streams else [])
    second = follower.wait_for(f"[{label} stdout] second ", timeout=pause + 60)
    follower.finish()
    delays = [latency(x) for x in shown]
    for arrival, line in shown:
        assert arrival < second[0] - pause / 2, ("shown only at the end", follower.texts())
    assert max(delays) < limit, (delays, follower.texts())
    return delays
