"""The remote side of one task: the ``/bin/sh`` scripts that start, watch and return it, and the
reader of what they print.

A launch script (one exec channel) reads the bundle from stdin, starts the worker with
``setsid`` (own session and process group, pid written to ``$F/pid``), prints ``@cov pid N``,
waits printing a heartbeat line (``.``) every few seconds, then prints ``@cov rc N``,
``@cov files K``, ``wc -c`` of the K result files present, and their bytes. A recover script
does the same for a task started earlier (after a dropped connection or a runner restart),
waiting on the pid from ``$F/pid`` (``@cov pid -1``: it never started). Lines that do not start
with ``@cov`` before a marker are skipped, so shell startup files that print do no harm.

The scripts use POSIX sh, ``setsid``, ``ps -ww -o args=``, ``wc`` and ``cat``; the user's login
shell must be able to run ``/bin/sh -c '...'`` (sh, bash, zsh, ksh; not csh).
"""
from __future__ import annotations

import shlex
from typing import Any, BinaryIO, List, Sequence, Tuple

from runner.layout import SSH_BUNDLE, SSH_LAUNCH_LOG, SSH_PID
from runner.ssh.connection import SSHError


class ScriptFailed(SSHError):
    """The remote script exited before it printed what was expected."""


def command(script: str) -> str:
    """The exec line running ``script`` under ``/bin/sh`` whatever the login shell is."""
    return f"/bin/sh -c {shlex.quote(script)}"


def launch_script(files: str, workdir: str, worker_line: str, send_bundle: bool,
                  results: Sequence[str], heartbeat: float, before_wait: str = "") -> str:
    """Start ``worker_line`` (it reads ``$F/bundle.pkl``) in ``workdir``; ``send_bundle``: the
    bundle comes on stdin. ``results``: file names in ``$F`` sent back at the end.
    ``before_wait``: a line run once the task has started (e.g. cleaning old files)."""
    q = shlex.quote
    receive = f' && cat > "$F/{SSH_BUNDLE}"' if send_bundle else ""
    lines = [f"F={q(files)}",
             f'mkdir -p "$F" {q(workdir)}{receive} && cd {q(workdir)} || exit 90',
             f'setsid {worker_line} </dev/null >"$F/{SSH_LAUNCH_LOG}" 2>&1 &',
             f'pid=$!; echo "$pid" > "$F/{SSH_PID}"; echo "@cov pid $pid"', before_wait,
             *_wait_and_send("wait $pid; rc=$?", results, heartbeat)]
    return "\n".join(line for line in lines if line)


def recover_script(files: str, results: Sequence[str], heartbeat: float) -> str:
    """Wait for the task started in ``files`` (if it is still running), then send back."""
    lines = [f"F={shlex.quote(files)}",
             f'pid=$(cat "$F/{SSH_PID}" 2>/dev/null); echo "@cov pid ${{pid:--1}}"',
             '[ -n "$pid" ] || exit 0',
             # the pid must still be the task's (same user, our path in its command line)
             'alive() { kill -0 "$pid" 2>/dev/null && ps -ww -o args= -p "$pid" 2>/dev/null '
             '| grep -qF -- "$F/"; }',
             *_wait_and_send("while alive; do sleep 0.2; done; rc=-1", results, heartbeat)]
    return "\n".join(lines)


def kill_line(pid: int) -> str:
    """SIGKILL the task's process group (its session leader's pid), then the pid itself."""
    return f"kill -KILL -- -{int(pid)} 2>/dev/null; kill -KILL {int(pid)} 2>/dev/null; true"


def remove_line(dirs: Sequence[str]) -> str:
    """Remove finished tasks' directories and their parents once empty."""
    if not dirs:
        return ""
    q = shlex.quote
    parents = sorted({d.rstrip("/").rsplit("/", 1)[0] for d in dirs})
    return (f"rm -rf -- {' '.join(q(d) for d in dirs)} 2>/dev/null; "
            f"rmdir -- {' '.join(q(p) for p in parents)} 2>/dev/null")


def _wait_and_send(wait: str, results: Sequence[str], heartbeat: float) -> List[str]:
    # The heartbeat's sleep must not hold the channel's stdout, or the channel would stay
    # open after the script ends; the beat is stopped (and reaped) before "rc" is printed.
    return [f"(while :; do sleep {max(1, int(heartbeat))} </dev/null >/dev/null 2>&1; "
            f"echo .; done) & hb=$!",
            wait, "kill $hb 2>/dev/null; wait $hb 2>/dev/null", 'echo "@cov rc $rc"',
            f'cd "$F" 2>/dev/null && set -- && for n in {" ".join(map(shlex.quote, results))}; '
            f'do [ -f "$n" ] && '
            f'set -- "$@" "$n"; done; echo "@cov files $#"',
            '[ $# -gt 0 ] && wc -c "$@" && cat "$@"']


class ChannelReader:
    """Buffered reads of a channel's stdout: marker lines, lines, exact byte counts.

    When the stream ends early: ``ScriptFailed`` if the script exited (with its stderr), else
    ``EOFError`` (the connection closed; ``SSHHost.channel`` turns it into ConnectionLost).
    """

    def __init__(self, chan: Any) -> None:
        self.chan = chan
        self.buffer = bytearray()

    def _fill(self) -> None:
        data = self.chan.recv(1 << 20)
        if data:
            self.buffer += data
            return
        code = self.chan.recv_exit_status()  # waits for the status, or the close
        if code >= 0:
            err = b""
            while self.chan.recv_stderr_ready():
                err += self.chan.recv_stderr(1 << 16)
            raise ScriptFailed(f"exit {code}: {err.decode('utf-8', 'replace').strip()[-500:]}")
        raise EOFError("the connection closed")

    def line(self) -> str:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = self.buffer[:end].decode("utf-8", "replace").strip()
                del self.buffer[:end + 1]
                return line
            self._fill()

    def field(self, name: str) -> str:
        """The value of the next ``@cov NAME VALUE`` line."""
        while True:
            line = self.line()
            if not line.startswith("@cov "):
                continue  # a heartbeat, or noise from the shell's startup files
            key, _, value = line[5:].partition(" ")
            if key != name:
                raise ScriptFailed(f"unexpected output {line[:200]!r} (wanted '{name}')")
            return value

    def files(self) -> List[Tuple[str, int]]:
        """After ``@cov rc``: the (name, size) list of the files that follow."""
        count = int(self.field("files"))
        rows = [self.line().partition(" ") for _ in range(count + (count > 1))]  # + wc's total
        return [(name.strip(), int(size)) for size, _, name in rows[:count]]

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def copy(self, size: int, out: BinaryIO) -> None:
        """Write the next ``size`` bytes to ``out`` without holding them all in memory."""
        while size > 0:
            if not self.buffer:
                self._fill()
            take = min(size, len(self.buffer))
            out.write(self.buffer[:take])
            del self.buffer[:take]
            size -= take


__all__ = ["ChannelReader", "ScriptFailed", "command", "kill_line", "launch_script",
           "recover_script", "remove_line"]
