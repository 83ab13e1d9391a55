"""The remote side of one task: the ``/bin/sh`` scripts that start, watch and return it, and the
reader of what they print.

A launch script (one exec channel) reads the bundle from stdin, starts the worker with
``setsid`` (own session and process group, pid written to ``$F/pid``), prints ``@cov pid N``,
waits printing a heartbeat line (``.``) every few seconds, then prints ``@cov rc N``,
``@cov files K``, ``wc -c`` of the K result files present, and their bytes. A recover script
does the same for a task started earlier (after a dropped connection or a runner restart),
waiting on the pid from ``$F/pid`` (``@cov pid -1``: it never started). Lines that do not start
with ``@cov`` before a marker are skipped, so shell startup files that print do no harm.

Live output: given ``live`` files (the task's stdout and stderr in ``$F``), the waiting loop
also looks at them every ``LIVE_TICK`` seconds and sends what they gained as a frame
``@cov chunk STREAM OFFSET SIZE`` followed by SIZE bytes, which ``ChannelReader`` hands to its
``on_chunk``. The recover script sends from offset 0 again; the receiver writes at the offset
(``write_chunk``). ``fetch_script``/``read_frames``: the same frames from one look at several
files (the Slurm backend's jobs through SSH, ``runner.backends.slurm.remote``).

The scripts use POSIX sh, ``setsid``, ``ps -ww -o args=``, ``wc`` and ``cat``; the user's login
shell must be able to run ``/bin/sh -c '...'`` (sh, bash, zsh, ksh; not csh).
"""
from __future__ import annotations

import os
import shlex
from typing import Any, BinaryIO, Callable, List, Optional, Sequence, Tuple

from runner.fs import FILE_MODE
from runner.layout import SSH_BUNDLE, SSH_LAUNCH_LOG, SSH_PID
from runner.ssh.connection import SSHError


LIVE_TICK = 0.5  # seconds between two looks at a running task's output files

# (stream name in the frames, file name in $F): what the waiting loop streams back
LiveFiles = Sequence[Tuple[str, str]]


class ScriptFailed(SSHError):
    """The remote script exited before it printed what was expected."""


def command(script: str) -> str:
    """The exec line running ``script`` under ``/bin/sh`` whatever the login shell is."""
    return f"/bin/sh -c {shlex.quote(script)}"


def launch_script(files: str, workdir: str, worker_line: str, send_bundle: bool,
                  results: Sequence[str], heartbeat: float, before_wait: str = "",
                  live: LiveFiles = ()) -> str:
    """Start ``worker_line`` (it reads ``$F/bundle.pkl``) in ``workdir``; ``send_bundle``: the
    bundle comes on stdin. ``results``: file names in ``$F`` sent back at the end.
    ``before_wait``: a line run once the task has started (e.g. cleaning old files).
    ``live``: files in ``$F`` streamed back while the task runs."""
    q = shlex.quote
    receive = f' && cat > "$F/{SSH_BUNDLE}"' if send_bundle else ""
    # the live files exist from the start, so that the loop's one `wc` always sees both
    create = "".join(f' && : > "$F/{name}"' for _, name in live)
    lines = [f"F={q(files)}",
             f'mkdir -p "$F" {q(workdir)}{receive}{create} && cd {q(workdir)} || exit 90',
             f'setsid {worker_line} </dev/null >"$F/{SSH_LAUNCH_LOG}" 2>&1 &',
             f'pid=$!; echo "$pid" > "$F/{SSH_PID}"; echo "@cov pid $pid"', before_wait,
             *_wait_and_send("wait $pid; rc=$?", results, heartbeat, live)]
    return "\n".join(line for line in lines if line)


def recover_script(files: str, results: Sequence[str], heartbeat: float,
                   live: LiveFiles = (), server: str = "") -> str:
    """Wait for the task started in ``files`` (if it is still running), then send back.
    ``server``: the persistent worker's path there, whose forked children are tasks too."""
    q = shlex.quote
    # the pid must still be the task's (same user, our path in its command line: the
    # attempt's directory, or the persistent worker's file for a task it forked)
    forked = f' || ps -ww -o args= -p "$pid" 2>/dev/null | grep -qF -- {q(server)}' \
        if server else ""
    lines = [f"F={q(files)}",
             f'pid=$(cat "$F/{SSH_PID}" 2>/dev/null); echo "@cov pid ${{pid:--1}}"',
             '[ -n "$pid" ] || exit 0',
             'alive() { kill -0 "$pid" 2>/dev/null && { ps -ww -o args= -p "$pid" 2>/dev/null '
             f'| grep -qF -- "$F/"{forked}; }}; }}',
             *_wait_and_send("while alive; do sleep 0.2; done; rc=-1", results, heartbeat, live)]
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


def _wait_and_send(wait: str, results: Sequence[str], heartbeat: float,
                   live: LiveFiles = ()) -> List[str]:
    # The heartbeat's sleep must not hold the channel's stdout, or the channel would stay
    # open after the script ends; the beat is stopped (and reaped) before "rc" is printed.
    beat = (f"(while :; do sleep {max(1, int(heartbeat))} </dev/null >/dev/null 2>&1; "
            f"echo .; done) & hb=$!") if not live else _live_loop(heartbeat, live)
    return [beat, wait, "kill $hb 2>/dev/null; wait $hb 2>/dev/null", 'echo "@cov rc $rc"',
            f'cd "$F" 2>/dev/null && set -- && for n in {" ".join(map(shlex.quote, results))}; '
            f'do [ -f "$n" ] && '
            f'set -- "$@" "$n"; done; echo "@cov files $#"',
            '[ $# -gt 0 ] && wc -c "$@" && cat "$@"']


def _live_loop(heartbeat: float, live: LiveFiles) -> str:
    """The heartbeat that also streams the live files. TERM (the task ended) is trapped: a
    frame being sent is finished first, so the channel never carries half a frame, while the
    tick's sleep (waited for in the background) is cut short at once."""
    q = shlex.quote
    beats = max(1, int(heartbeat / LIVE_TICK))
    names = " ".join(q(name) for _, name in live)
    sends = []
    for k, (stream, name) in enumerate(live):
        sends.append(
            f'if [ "${{{2 * k + 1}:-0}}" -gt "$o{k}" ] 2>/dev/null; then '
            f'{send_chunk(stream, q(name), f"o{k}", ".live")}; o{k}=$((o{k} + m)); b=0; fi')
    offsets = " ".join(f"o{k}=0" for k in range(len(live)))
    plain = (f'while [ -z "$stop" ]; do sleep {beats * LIVE_TICK} </dev/null >/dev/null 2>&1 & '
             'wait $!; echo .; done; exit 0')
    return (f"(trap 'stop=1' TERM; stop=; b=0; {offsets}; cd \"$F\" 2>/dev/null || {{ {plain}; }}\n"
            f" while [ -z \"$stop\" ]; do\n"
            f"  sleep {LIVE_TICK} </dev/null >/dev/null 2>&1 & wait $!; [ -n \"$stop\" ] && break\n"
            f"  set -- $(wc -c {names} 2>/dev/null)\n"
            f"  if [ $# -eq {2 * len(live) + (2 if len(live) > 1 else 0)} ]; then "
            + "; ".join(sends) + "; fi\n"
            f"  b=$((b + 1)); if [ $b -ge {beats} ]; then echo .; b=0; fi\n"
            f" done) & hb=$!")


def send_chunk(stream: str, path: str, offset: str, tmp: str) -> str:
    """The shell line sending one live-output frame: what the file ``path`` (quoted already)
    holds past the shell variable ``offset``, as ``@cov chunk STREAM OFFSET SIZE`` and SIZE
    bytes (``ChannelReader`` reads it). The bytes go through the file ``tmp`` (quoted) first,
    so that SIZE is what is sent even while the file grows; ``$m`` is SIZE afterwards."""
    return (f'tail -c +$(({offset} + 1)) {path} > {tmp}; m=$(wc -c < {tmp}); '
            f'echo "@cov chunk {stream} ${offset} $m"; cat {tmp}')


def fetch_script(base: str) -> str:
    """One look at several growing files, named on stdin as lines ``STREAM OFFSET PATH``
    (``fetch_input``; paths relative to ``base``): a frame for each file that holds more than
    OFFSET bytes (from 0 again when it holds fewer: it was started anew), then ``@cov end``.
    The list goes on stdin, not in the command, so that its length has no limit."""
    send = send_chunk("$k", '"$p"', "o", '"$t"')
    return "\n".join([
        f"cd {shlex.quote(base)} || exit 3", "t=.live.$$",
        'while read -r k o p; do [ -f "$p" ] || continue; s=$(wc -c < "$p"); '
        f'[ "$s" -lt "$o" ] && o=0; [ "$s" -gt "$o" ] && {{ {send}; }}; done',
        'rm -f "$t"', 'echo "@cov end"'])


def fetch_input(files: Sequence[Tuple[str, str, int]]) -> bytes:
    """``fetch_script``'s stdin: ``(stream, path, offset)`` as lines (stream names without
    blanks; a path with a line break is left out)."""
    return "".join(f"{stream} {int(offset)} {path}\n" for stream, path, offset in files
                   if "\n" not in path and "\r" not in path).encode()


def read_frames(data: bytes, on_chunk: Callable[[str, int, bytes], None]) -> None:
    """The frames of a finished ``fetch_script``'s output, handed to ``on_chunk`` (stream,
    offset, bytes); ``ScriptFailed`` if it was cut short (the whole frames before count)."""
    ChannelReader(_Output(data), on_chunk).field("end")


def write_chunk(path: str, offset: int, data: bytes, cut: bool) -> None:
    """Put a live-output frame into a local log file at its offset; ``cut``: the first frame
    of this attempt's stream, which cuts the file to itself (an earlier attempt's output, or
    the same bytes again after a reconnect). ``OSError`` is the caller's (a full disk: the
    whole file still comes at the end)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.pwrite(fd, data, offset)
        if cut:
            os.ftruncate(fd, offset + len(data))
    finally:
        os.close(fd)


class _Output:
    """A finished command's stdout, read as a channel (for ``ChannelReader``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, size: int) -> bytes:
        data, self.data = self.data, b""
        return data

    def recv_exit_status(self) -> int:
        return 0

    def recv_stderr_ready(self) -> bool:
        return False


class ChannelReader:
    """Buffered reads of a channel's stdout: marker lines, lines, exact byte counts.

    When the stream ends early: ``ScriptFailed`` if the script exited (with its stderr), else
    ``EOFError`` (the connection closed; ``SSHHost.channel`` turns it into ConnectionLost).
    """

    def __init__(self, chan: Any,
                 on_chunk: Optional[Callable[[str, int, bytes], None]] = None) -> None:
        self.chan = chan
        self.buffer = bytearray()
        self.on_chunk = on_chunk  # (stream, offset, bytes) of a live-output frame

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
            if key == "chunk" and name != "chunk":
                self._chunk(value)
                continue
            if key != name:
                raise ScriptFailed(f"unexpected output {line[:200]!r} (wanted '{name}')")
            return value

    def _chunk(self, value: str) -> None:
        """A live-output frame: ``STREAM OFFSET SIZE`` and SIZE bytes."""
        try:
            stream, offset, size = value.split()
            start, count = int(offset), int(size)
        except ValueError:
            raise ScriptFailed(f"bad live-output frame {value[:100]!r}") from None
        data = self.read(count)
        if self.on_chunk is not None and data:
            self.on_chunk(stream, start, data)

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


__all__ = ["ChannelReader", "ScriptFailed", "command", "fetch_input", "fetch_script", "kill_line",
           "launch_script", "read_frames", "recover_script", "remove_line", "send_chunk",
           "write_chunk"]
