"""What the backends share (``runner.backends`` and ``runner.backends.base``): the registry and
its one list of executor types, the task bundle, the completion headers, the thread hand-over."""
from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import covalent_cli as ct
from covalent_cli import executor as sdk_executor
from covalent_cli.dispatch import create_run
from covalent_cli.dispatch import _inherited_executor as _executor
from runner import backends, config
from runner.backends.base import Backend, Completion, Task, ThreadedBackend, make_bundle
from runner.manifest import PARAMETER
from runner.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]


def test_executor_types_come_from_the_registry() -> None:
    """The config's default executors and the SDK's executor classes name the registry's
    built-in types, and each resolves to its backend."""
    assert list(config.DEFAULTS["executors"]) == list(backends.BUILTIN)
    assert sorted(sdk_executor.BY_TYPE) == sorted(backends.BUILTIN)
    for name, cls in sdk_executor.BY_TYPE.items():  # a sublattice's inherited executor
        assert type(_executor({"type": name})) is cls
    assert _executor({"type": "pkg.mod:Backend"}) == "pkg.mod:Backend"
    for name in backends.BUILTIN:
        cls = backends.backend_class(name)
        assert issubclass(cls, Backend) and cls.__module__.startswith("runner.backends.")


def test_the_runner_reaches_every_backend_through_the_registry() -> None:
    """The runner imports no backend itself, not even the local pool: each loads on first use."""
    code = ("import sys, runner.service; "
            "print(sorted(m for m in sys.modules if m.startswith('runner.backends.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True, timeout=60).stdout
    assert out.strip() == "['runner.backends.base']"


@ct.electron
def inc(x):
    return x + 1


@ct.lattice
def chain(x):
    return inc(inc(x))


def _task(rundir: RunDir, name: str, after_task: bool) -> Task:
    """The manifest's task ``name`` whose input is a parameter (False) or a task (True)."""
    manifest = rundir.manifest
    for node in manifest.nodes:
        parents = [manifest.node(edge.node) for edge in node.parents]
        if node.name == name and parents and \
                (parents[0].kind != PARAMETER) == after_task:
            edge, parent = node.parents[0], parents[0]
            source = ("result", edge.node) if after_task else \
                ("blob", parent.blob[0], parent.blob[1])
            return Task(run=str(rundir.path), dispatch_id=manifest.dispatch_id, node=node.id,
                        name=node.name, attempt=1, fn=node.blob,
                        inputs=[(edge.type, edge.index, source)], cwd="/tmp")
    raise AssertionError(f"no task {name}")


def test_make_bundle_holds_the_task_or_says_which_input_is_missing(cov_home: Path,
                                                                   monkeypatch) -> None:
    monkeypatch.setenv("COV_NO_RUNNER", "1")
    rundir = create_run(chain, (41,), {}, home=cov_home)
    try:
        first = _task(rundir, "inc", after_task=False)
        bundle = pickle.loads(make_bundle(first, rundir))
        [(kind, key, data)] = bundle["inputs"]
        assert (kind, key, pickle.loads(data)) == ("arg", 0, 41)
        assert bundle["fn"] == rundir.read_blob(first.fn)
        assert bundle["cwd"] == "/tmp" and bundle["context"] == {
            "dispatch_id": rundir.manifest.dispatch_id, "node": first.node, "attempt": 1}
        second = _task(rundir, "inc", after_task=True)
        with pytest.raises(RuntimeError, match=rf"^the result of node {first.node} is missing "
                                               r"or incomplete$"):
            make_bundle(second, rundir)
    finally:
        rundir.close()


def test_completion_headers() -> None:
    task = Task(run="/r", dispatch_id="d", node=3, name="t", attempt=2, fn=(0, 0), inputs=[])
    failed = Completion.failed(task, "worker_died", "it died", host="h", pid=7)
    assert (failed.run, failed.node, failed.attempt) == ("/r", 3, 2)
    assert failed.header.pop("end") > 0
    assert failed.header == {"ok": False, "reason": "worker_died", "error": "it died",
                             "host": "h", "pid": 7}
    cancelled = Completion.cancelled(task)
    assert cancelled.header["reason"] == "cancelled" and cancelled.header["error"] == "cancelled"


class _Recorder:
    def __init__(self) -> None:
        self.handles: List[Tuple[Task, Dict[str, Any]]] = []
        self.woken = threading.Event()

    def record_handle(self, task: Task, handle: Dict[str, Any]) -> None:
        assert threading.current_thread() is threading.main_thread()
        self.handles.append((task, handle))

    def wake(self) -> None:
        self.woken.set()


class _OneThread(ThreadedBackend):
    """A platform whose only verb is: a thread starts the task and reports its id."""

    def submit(self, task: Task) -> None:
        def start() -> None:
            self._emit_handle(task, {"job_id": "1"})
            self._emit(Completion.failed(task, "test", "ended"))
            self.services.wake()

        threading.Thread(target=start).start()


def test_threaded_backend_hands_over_on_the_loops_thread() -> None:
    """Handles and completions made in a backend's thread reach the runner in ``poll`` (on its
    thread), and a handle not yet polled is recorded at ``close``, so a next runner re-attaches
    instead of starting the task a second time."""
    task = Task(run="/r", dispatch_id="d", node=1, name="t", attempt=1, fn=(0, 0), inputs=[])
    services = _Recorder()
    backend = _OneThread({}, services)
    backend.submit(task)
    assert services.woken.wait(30)
    done = backend.poll()
    assert [(c.node, c.header["error"]) for c in done] == [(1, "ended")]
    assert services.handles == [(task, {"job_id": "1"})]
    services.handles.clear()
    services.woken.clear()
    backend.submit(task)
    assert services.woken.wait(30)
    backend.close()
    assert services.handles == [(task, {"job_id": "1"})]
