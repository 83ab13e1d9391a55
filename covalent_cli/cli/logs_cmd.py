"""``cov logs``: tasks' stdout and stderr, optionally followed while the run runs.

By default one stream (our stdout) carries everything, so ``cov logs RUN > f`` keeps the
traceback: a header line per task, then each line of its output marked with the node and the
stream it came from::

    == 2 divide (FAILED) ==
    [2 stdout] about to divide 1 by 0
    [2 stderr] Traceback (most recent call last):

``--stream stdout|stderr`` prints that stream's text unmarked (with ``== N name ==`` headers
when several tasks are shown). The failed tasks of sublattices' child runs follow their
sublattice node, marked with the child run's short id (``[5b0c2e7a:3 stderr]``).

Order: within one stream, exact. Across a task's two streams, output already written shows
stdout first, then stderr; with ``-f``, each is shown as it arrives, so lines written more than
the polling interval (``POLL_S``) apart appear in the order they were written.
"""
from __future__ import annotations

import codecs
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import click

from covalent_cli.cli.commands import _run, _state
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.cli.remote_on import on_option
from covalent_cli.errors import RunNotFound
from covalent_cli.result import keep_served
from runner.daemon import Keeper
from runner.logtail import READ_LIMIT, STREAMS, failed_child_tasks, read_log
from runner.rundir import RunDir, RunDirError
from runner.state import TERMINAL

POLL_S = 0.25  # how often -f looks for new output
CHILDREN_S = 2.0  # how often -f looks for newly failed tasks of child runs
PARTIAL_S = 1.0  # an unfinished line waiting this long is shown as it is


@dataclass
class _Source:
    """One task whose logs are shown: its run, node, name and the label of its lines."""

    run: RunDir
    node: int
    name: str
    label: str  # "2", or "5b0c2e7a:3" for a child run's task
    note: str = ""  # for the header: "in child run ... of node 4"
    offsets: Dict[str, int] = field(default_factory=dict)
    partial: Dict[str, Tuple[str, float]] = field(default_factory=dict)  # text, since when
    # per stream: a UTF-8 character cut between two reads is decoded whole
    decoders: Dict[str, codecs.IncrementalDecoder] = field(default_factory=dict)
    headed: bool = False
    done: bool = False  # read whole after its task ended: nothing more will come


class _Printer:
    """Writes what the sources' files hold beyond what was already written."""

    def __init__(self, streams: List[str], marked: bool, headers: bool) -> None:
        self.streams = streams
        self.marked = marked  # both streams: every line marked "[label stream] "
        self.headers = headers
        self.warned: set = set()

    def pump(self, source: _Source, status: str, final: bool) -> None:
        """Print the source's new output; ``final``: the task ended, so a last line without
        its newline is printed too."""
        for stream in self.streams:
            while self._pump_once(source, stream, status, final):
                pass  # more than one read's worth was there
        sys.stdout.flush()

    def _pump_once(self, source: _Source, stream: str, status: str, final: bool) -> bool:
        """One read of the stream and what it shows; True if the file holds more."""
        chunk = read_log(source.run, source.node, stream, source.offsets.get(stream, 0),
                         READ_LIMIT)
        if chunk.refused:
            if (source.label, stream) not in self.warned:
                self.warned.add((source.label, stream))
                click.echo(f"Warning: {chunk.refused}", err=True)
            return False
        if chunk.restarted and source.offsets.get(stream):
            source.partial.pop(stream, None)
            self._header(source, status, force=True, extra="output restarted")
        source.offsets[stream] = chunk.end
        if chunk.restarted or stream not in source.decoders:
            source.decoders[stream] = codecs.getincrementaldecoder("utf-8")("replace")
        more = chunk.end < chunk.size and len(chunk.data) == READ_LIMIT
        text = source.decoders[stream].decode(chunk.data, final and not more)
        if not self.marked:
            if text:
                self._header(source, status)
                sys.stdout.write(text)
        else:
            self._marked(source, stream, text, status, final and not more)
        return more

    def _marked(self, source: _Source, stream: str, text: str, status: str, final: bool) -> None:
        now = time.monotonic()
        pending, since = source.partial.pop(stream, ("", now))
        if "\n" in text:
            since = now  # what is left after the last newline waits from now
        text = pending + text
        if not text:
            return
        lines = text.split("\n")
        rest = lines.pop()  # "" when the text ended with a newline
        if rest and not final and now - since < PARTIAL_S:
            source.partial[stream] = (rest, since)
        elif rest:
            lines.append(rest)
        if lines:
            self._header(source, status)
            prefix = f"[{source.label} {stream}] "
            sys.stdout.write("".join(prefix + line + "\n" for line in lines))

    def _header(self, source: _Source, status: str, force: bool = False, extra: str = "") -> None:
        if not self.headers or (source.headed and not force):
            return
        source.headed = True
        what = ", ".join(x for x in (status if self.marked else "", extra) if x)
        sys.stdout.write(f"== {source.label} {source.name}" + (f" ({what})" if what else "") +
                         (f" {source.note}" if source.note else "") + " ==\n")


def _sources(run: RunDir, node: Optional[int], known: Dict[Tuple[str, int], _Source],
             children: bool) -> List[_Source]:
    """The tasks to show: NODE or every executing node, then (``children``: looked for now)
    the failed tasks of their child runs; the same ``_Source`` objects from one look to the
    next (``known``)."""
    manifest = run.manifest
    nodes = [node] if node is not None else [n.id for n in manifest.nodes if n.executes]
    found = []
    for n in nodes:
        key = (run.dispatch_id, n)
        if key not in known:
            known[key] = _Source(run, n, manifest.node(n).name, str(n))
        found.append(known[key])
    for child in failed_child_tasks(run, nodes) if children else ():
        key = (child.run.dispatch_id, child.node)
        if key not in known:
            short = child.run.dispatch_id[:8]
            known[key] = _Source(child.run, child.node, child.name, f"{short}:{child.node}",
                                 f"in child run {child.run.dispatch_id} of node "
                                 f"{' > '.join(map(str, child.via))}")
        found.append(known[key])
    listed = {id(s) for s in found}  # child tasks found at an earlier look stay shown
    return found + [s for s in known.values() if s.run is not run and id(s) not in listed]


def _status(source: _Source) -> str:
    try:
        task = source.run.state().tasks.get(source.node)
    except (RunDirError, OSError):
        return ""
    return str(task.status) if task else ""


@cli.command()
@click.argument("run_id")
@click.argument("node", type=int, required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the run ends.")
@click.option("--stream", type=click.Choice(["stdout", "stderr", "both"]), default="both",
              help="Only this stream, unmarked (default: both, each line marked).")
@on_option
@pass_ctx
def logs(ctx: Context, run_id: str, node: Optional[int], follow: bool, stream: str) -> None:
    """Print tasks' stdout and stderr (all tasks, or NODE), with the failed tasks of
    sublattices' child runs; everything goes to stdout, each line marked [NODE STREAM]
    unless --stream picks one."""
    run = _run(ctx, run_id)
    manifest = run.manifest
    if node is not None and not 0 <= node < len(manifest.nodes):
        raise RunNotFound(f"run {run.dispatch_id} has no node {node}",
                          f"node ids go from 0 to {len(manifest.nodes) - 1}")
    both = stream == "both"
    printer = _Printer(list(STREAMS) if both else [stream], marked=both,
                       headers=both or node is None)
    keeper = Keeper(run.path, strict=follow) if not _state(run).finished else None
    known: Dict[Tuple[str, int], _Source] = {}
    looked = 0.0  # when child runs were last looked at
    while True:
        if keeper is not None:
            keep_served(run, keeper)
        state = _state(run)
        ended = state.finished or not follow  # read after this: nothing written before is missed
        children = ended or time.monotonic() - looked >= CHILDREN_S
        if children:
            looked = time.monotonic()
        for source in _sources(run, node, known, children):
            if source.done:
                continue
            if source.run is run:
                task = state.tasks.get(source.node)
                if task is None and not ended:
                    continue  # not started: nothing to read yet (a 10k-task run stays cheap)
                status = str(task.status) if task else ""
            else:
                status = _status(source)
            final = ended or status in TERMINAL
            printer.pump(source, status, final)
            source.done = final
        if ended:
            break
        time.sleep(POLL_S)
