"""Runner processes: start one when needed, stop them, and keep every unfinished run served.

A runner is started on demand (by a dispatch, or by any command that waits on or reads an
unfinished run that no live runner serves) and exits when idle. So a run never stalls silently:
``Keeper.check`` is called by every waiting loop and reader; it costs a ``scandir`` of the
heartbeat files when a runner is alive, and starts one (saying so on one line) when none is.

A runner that exits on an error writes why as the last line of ``.runners/runner.log`` and in
``.runners/last-failure`` (time, line, count). Readers then hold off starting another one for a
backoff that doubles with each failure in a row (no restart loop); a waiter tries once more and,
if the runner it started dies the same way, reports that line as its error.
"""
from __future__ import annotations

import getpass
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Set

from runner.fs import DIR_MODE, atomic_write
from runner.layout import LAST_FAILURE, RUNNER_LOG, SPAWN_LOCK
from runner.liveness import (HOST, live_runner, pid_alive, read_runners, runners_dir,
                             write_heartbeat)
from runner.locks import make_lock
from runner.rundir import RunDir, RunDirError
from runner.snapshot import pulled_from, snapshot_line

if TYPE_CHECKING:
    from runner.service import Runner, RunnerSettings

BACKOFF_S = 5.0  # after one failure at start; doubles per failure in a row, up to BACKOFF_MAX_S
BACKOFF_MAX_S = 300.0
FAILURES_FORGOTTEN_AFTER_S = 600.0  # a failure older than this starts the count again


class RunnerUnavailable(Exception):
    """No runner serves a run and none can be started (or the one started died)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


# -- starting and stopping ----------------------------------------------------------------------
def ensure_running(home: Path) -> Optional[int]:
    """Start a background runner for ``home`` unless a live one serves it; returns its pid (or,
    for a home whose runner job ended while work remained, the id of that job submitted
    again)."""
    if os.environ.get("COV_NO_RUNNER"):
        return None
    if live_runner(home) is not None:
        return None
    directory = runners_dir(home)
    home.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)  # the owner's only, as dispatch makes it
    directory.mkdir(exist_ok=True)
    with make_lock(str(directory / SPAWN_LOCK), timeout=30):
        if live_runner(home) is not None:
            return None
        job = _resubmit_runner_job(home)
        return job if job is not None else spawn_runner(home)


def _resubmit_runner_job(home: Path) -> Optional[int]:
    """The home's runner ran as a Slurm job that ended while work remained (killed, preempted,
    out of walltime): submit it again (a login node may kill a runner started here); its job
    id. None when there is no such job, or when it cannot be submitted (then said, and the
    runner starts here)."""
    from runner.runner_job.record import read_record, remove_record

    if read_record(home) is None:
        return None  # (what heal finds first: the job machinery is not even imported)
    from runner.runner_job.submit import RunnerJobError, heal

    try:
        job_id = heal(home)
    except RunnerJobError as exc:
        record = read_record(home) or {}
        remove_record(home)
        _stderr(f"warning: runner job {record.get('job_id', '?')} has ended and cannot be "
                f"submitted again ({exc}): starting a runner on this host instead")
        return None
    return int(job_id) if job_id else None


def spawn_runner(home: Path, extra: Optional[List[str]] = None) -> int:
    """Start ``python -m runner`` detached, logging to ``<home>/.runners/runner.log`` (a fork
    of this process instead where ``runner.fork_start`` finds that safe)."""
    from runner import fork_start

    directory = runners_dir(home)
    home.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)  # the owner's only, as dispatch makes it
    directory.mkdir(exist_ok=True)
    if fork_start.safe():
        pid = fork_start.fork_runner(home, directory / RUNNER_LOG, main,
                                     ["--home", str(home), *(extra or [])])
        if pid is not None:
            return pid  # its placeholder heartbeat is written
    pid = _spawn_interpreter(home, directory, extra)
    # A placeholder heartbeat so that dispatches right behind this one see a runner coming.
    write_heartbeat(home, {"id": f"{HOST}:{pid}:starting", "host": HOST,
                           "pid": pid, "home": str(home), "runs": []})
    return pid


def _spawn_interpreter(home: Path, directory: Path, extra: Optional[List[str]]) -> int:
    log = open(directory / RUNNER_LOG, "ab")
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "--home", str(home), *(extra or [])],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        close_fds=True, env=env, cwd="/")
    log.close()
    return process.pid


def stop_runners(home: Path, timeout: float = 10.0) -> List[int]:
    """SIGTERM every live runner of this host serving ``home``; returns their pids."""
    stopped = []
    for info in read_runners(home):
        if info["alive"] and info.get("host") == HOST:
            try:
                os.kill(int(info["pid"]), signal.SIGTERM)
                stopped.append(int(info["pid"]))
            except ProcessLookupError:
                pass
    deadline = time.time() + timeout
    while time.time() < deadline and any(pid_alive(p) for p in stopped):
        time.sleep(0.05)
    return stopped


def request_cancel(run: RunDir, nodes: Optional[Iterable[int]] = None,
                   on_busy: Optional[Callable[[str], None]] = None) -> str:
    """Cancel ``run`` (``nodes``: only these and what depends on them) and make sure a runner
    is there to carry the request out; returns the line to show (``ct.cancel``, ``cov
    cancel`` and the web UI say the same). ``on_busy``: see ``RunDir.request_cancel``."""
    nodes = None if nodes is None else list(nodes)
    run.request_cancel(nodes, on_busy=on_busy)
    ensure_running(run.path.parent)
    what = "dispatch" if nodes is None else f"task(s) {', '.join(map(str, nodes))} of dispatch"
    return f"Cancellation requested for {what} {run.dispatch_id}"


# -- failures -----------------------------------------------------------------------------------
def last_failure(home: Path) -> Optional[Dict[str, Any]]:
    """The last runner failure recorded under ``home`` (``time``, ``line``, ``count``), if any."""
    try:
        data = json.loads((runners_dir(home) / LAST_FAILURE).read_text())
        data["time"], data["count"] = float(data["time"]), int(data.get("count", 1))
        data["line"] = str(data.get("line", ""))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return data


def backoff_left(failure: Dict[str, Any]) -> float:
    """Seconds until starting a runner again is worth it after ``failure``."""
    wait = min(BACKOFF_S * 2 ** min(failure["count"] - 1, 16), BACKOFF_MAX_S)
    return failure["time"] + wait - time.time()


def _record_failure(home: Path, line: str) -> None:
    previous = last_failure(home)
    now = time.time()
    count = 1
    if previous and now - previous["time"] < FAILURES_FORGOTTEN_AFTER_S:
        count = previous["count"] + 1
    try:
        atomic_write(runners_dir(home) / LAST_FAILURE,
                     json.dumps({"time": now, "pid": os.getpid(), "line": line,
                                 "count": count}).encode())
    except OSError:
        pass  # the log line below is all we can leave


# -- keeping runs served ------------------------------------------------------------------------
def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _my_names() -> Set[str]:
    """The names a manifest's ``user`` has for us (dispatch writes the login name, else the uid)."""
    names = {str(os.getuid())}
    try:
        names.add(getpass.getuser())
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        pass
    return names


class Keeper:
    """Makes sure a live runner serves an unfinished run, for a command waiting on or reading it.

    ``check()`` is cheap and may be called in a tight loop: it looks at most once per
    ``interval`` (a ``scandir`` of the heartbeat files). When no live runner serves the run it
    starts one and says ``no runner was serving RUN: started one``.

    ``strict`` (waiters): a runner that cannot be started, or that dies of an error right after
    this keeper started it, raises ``RunnerUnavailable``. Otherwise (readers, the web UI) such a
    failure is said once as a warning, and no runner is started while the backoff after the
    last failure runs. ``once``: say at most one line in this keeper's life (the web UI).
    """

    def __init__(self, run_path: Path, *, strict: bool = False, interval: float = 1.0,
                 once: bool = False, say: Callable[[str], None] = _stderr) -> None:
        self.home = Path(run_path).parent
        self.dispatch_id = Path(run_path).name
        self.strict = strict
        self.interval = interval
        self.once = once
        self._say_to = say
        self._said = False
        self._warned = False
        self._next = 0.0
        self._started: Optional[float] = None  # wall time we last started a runner
        self._foreign_by: Optional[str] = None  # who dispatched the run, if not us ("": us)
        self._pulled: Optional[Dict[str, Any]] = None  # its pull record ({}: ours)

    def check(self) -> None:
        """Start a runner if none serves the run (at most one look per ``interval``)."""
        now = time.monotonic()
        if now < self._next or os.environ.get("COV_NO_RUNNER"):
            return
        self._next = now + self.interval
        if self._pulled is None:
            self._pulled = pulled_from(self.home / self.dispatch_id) or {}
        if self._pulled:  # a copy of another host's run: served there, never here
            if self.strict:
                host = self._pulled.get("host", "?")
                raise RunnerUnavailable(snapshot_line(self.dispatch_id, self._pulled),
                                        f"cov wait --on {host} {self.dispatch_id[:8]}")
            return
        if live_runner(self.home, self.dispatch_id) is not None:
            return
        if self._foreign_by is None:
            self._foreign_by = self._foreign()
        if self._foreign_by:
            if self.strict:
                self._fail(f"no runner serves run {self.dispatch_id}, and it was dispatched by "
                           f"{self._foreign_by}: cov starts runners only for your own runs",
                           "its owner can resume it, or `cov runner start` runs it as you")
            return
        failure = last_failure(self.home)
        log = runners_dir(self.home) / RUNNER_LOG
        if self._started is not None and failure and failure["time"] >= self._started:
            self._started = None
            self._fail(f"the runner started for run {self.dispatch_id} exited on an error: "
                       f"{failure['line']}", f"see {log}")
            return  # (not strict) the backoff below decides when to try again
        if not self.strict and failure and backoff_left(failure) > 0:
            if not self._warned:
                self._fail(f"no runner serves run {self.dispatch_id}: the last one exited on an "
                           f"error: {failure['line']}",
                           f"next try in {math.ceil(backoff_left(failure))}s; see {log}")
            return
        started = time.time()
        try:
            pid = ensure_running(self.home)
        except OSError as exc:
            self._fail(f"no runner serves run {self.dispatch_id} and none can be started: "
                       f"cannot write {runners_dir(self.home)}: {exc.strerror or exc}",
                       "make the runs home writable, or start a runner where it is")
            return
        if pid is not None:
            self._started = started
            self._say(f"no runner was serving {self.dispatch_id}: started one")

    def _foreign(self) -> str:
        """Who dispatched the run, if not us: a runner runs a run's code, and someone else's
        run (one copied here, or a home shared with us) is only data to view."""
        run_path = self.home / self.dispatch_id
        try:
            owner = os.stat(run_path).st_uid
            if owner != os.geteuid():
                return f"uid {owner}"
            user = str(RunDir(run_path).header().get("user") or "")
        except (OSError, RunDirError):
            return ""  # gone or unreadable: the reader says so itself
        return user if user and user not in _my_names() else ""

    def _fail(self, message: str, hint: str) -> None:
        if self.strict:
            raise RunnerUnavailable(message, hint)
        self._warned = True
        self._say(f"warning: {message} ({hint})")

    def _say(self, line: str) -> None:
        if self.once and self._said:
            return
        self._said = True
        self._say_to(line)


# -- the runner process -------------------------------------------------------------------------
def settings_from_config(poll: bool = False, idle_timeout: Optional[float] = None,
                         workers: Optional[int] = None) -> "RunnerSettings":
    """The runner's settings: the options given (command line), else ``runner.*`` from the
    config file (checked first: a wrong-typed value would fail the loop later, for every run)."""
    from runner.cache import DEFAULT_MAX_SIZE, parse_size
    from runner.config import check_config, get_value
    from runner.service import RunnerSettings

    check_config()
    return RunnerSettings(
        idle_timeout=float(idle_timeout if idle_timeout is not None
                           else get_value("runner.idle_timeout", 30.0)),
        rescan_interval=float(get_value("runner.rescan_interval", 2.0)),
        heartbeat_interval=float(get_value("runner.heartbeat_interval", 5.0)),
        poll_interval=float(get_value("runner.poll_interval", 1.0)),
        poll=poll, workers=workers or get_value("runner.workers"),
        cache_max_size=parse_size(get_value("cache.max_size")) or DEFAULT_MAX_SIZE)


def serve(home: Path, runs: Optional[List[str]] = None, poll: bool = False,
          idle_timeout: Optional[float] = None, workers: Optional[int] = None,
          on_start: Optional[Callable[["Runner"], None]] = None) -> int:
    """Run a runner in this process until it is idle; an error ends it with exit 1, leaving its
    reason as the last line of the log (stderr) and in ``last-failure``. ``on_start`` gets the
    runner before its loop starts (a runner job watches its walltime)."""
    from runner.backends import backend_class
    from runner.config import ConfigError
    from runner.service import Runner

    try:
        settings = settings_from_config(poll, idle_timeout, workers)
        runner = Runner(home, settings, runs=runs, backends=backend_class)
        if on_start is not None:
            on_start(runner)
        return runner.run_forever()
    except Exception as exc:  # noqa: BLE001 - whatever it is, the next command must learn why
        config = isinstance(exc, ConfigError)  # the user's to fix: the message says it all
        line = (str(exc) if config else f"{type(exc).__name__}: {exc}").splitlines()[0]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            if not config:
                traceback.print_exc(file=sys.stderr)
            print(f"{stamp} runner {HOST}:{os.getpid()} exited on an error: {line}",
                  file=sys.stderr, flush=True)
        except OSError:
            pass
        _record_failure(home, line)
        return 1


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m runner``: serve a home (started by ``spawn_runner``)."""
    from runner.serve_args import parse_serving, serving_parser

    parser = serving_parser("python -m runner", "Run the ready tasks of the runs under a home.")
    parser.add_argument("--run", action="append", default=[], help="only this run (repeatable)")
    args, home = parse_serving(parser, argv)
    if home is None:
        return 1
    return serve(home, runs=args.run, poll=args.poll, idle_timeout=args.idle_timeout,
                 workers=args.workers)
