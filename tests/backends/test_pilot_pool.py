"""The pilot block's pool on its own: ``pilot_pool.py`` shipped beside ``worker.py`` into a run's
``slurm/`` and started as a block's script starts it (``python -I``, no cov importable), with
tickets in the run's queue. No Slurm needed: the pool only sees files."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

import cloudpickle

from runner import layout, outcome, worker

# The tasks below go to a pool where this module is not importable: pickle them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    for sub in (layout.PILOT_QUEUE, layout.RESULTS, layout.LOGS, layout.SLURM):
        (run / sub).mkdir(parents=True, exist_ok=True)
    for name, data in worker.shipped_files().items():
        (run / layout.slurm_shipped_rel(name)).write_bytes(data)
    return run


def _ticket(run: Path, node: int, fn: Callable, *args: Any, fence: str = "") -> None:
    ticket: Dict[str, Any] = {
        "fn": cloudpickle.dumps({"fn": fn, "name": fn.__name__}),
        "inputs": [("arg", i, cloudpickle.dumps(a)) for i, a in enumerate(args)],
        "cwd": str(run), "sys_path": [], "context": {"node": node, "attempt": 1},
        "fence": fence}
    (run / layout.PILOT_QUEUE / layout.ticket_file(node, 1)).write_bytes(pickle.dumps(ticket))


def _pool(run: Path, block: str, workers: int = 2, idle: float = 1.0) -> subprocess.Popen:
    (run / layout.PILOT_BLOCKS / block).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-I", str(run / layout.slurm_shipped_rel(layout.POOL)),
                             str(run), block, str(workers), str(idle), "0"],
                            cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _header(run: Path, node: int) -> Dict[str, Any]:
    found = outcome.read_outcome_header(layout.outcome_path(str(run), node))
    assert found is not None, f"no outcome for node {node}"
    return dict(found)


def _value(run: Path, node: int) -> Any:
    payload = outcome.read_outcome_payload(layout.outcome_path(str(run), node))
    assert payload is not None
    return pickle.loads(payload)


def square(x: int) -> int:
    print(f"squaring {x}", flush=True)
    return x * x


def crash() -> None:
    os._exit(3)


def environ_then_read(key: str) -> Any:
    before = os.environ.get("COV_POOL_TEST")
    os.environ["COV_POOL_TEST"] = key
    return before


def test_pool_runs_tickets_and_exits_when_idle(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    for node in range(12):
        _ticket(run, node, square, node)
    _ticket(run, 20, crash)
    fence = tmp_path / "runner.fenced"
    fence.touch()
    _ticket(run, 21, square, 21, fence=str(fence))  # another runner took the claim over
    for node in (30, 31):
        _ticket(run, node, environ_then_read, str(node))
    proc = _pool(run, "b1")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    for node in range(12):
        assert _header(run, node)["ok"] and _value(run, node) == node * node
        assert (run / layout.LOGS / layout.log_file(node, "out")).read_text() == \
            f"squaring {node}\n"
    died = _header(run, 20)
    assert died["reason"] == "worker_died" and "exit code 3" in died["error"], died
    assert not os.path.exists(layout.outcome_path(str(run), 21))  # fenced: never run
    # a task's change to os.environ does not reach the next task of the same worker
    assert _value(run, 30) is None and _value(run, 31) is None
    block = run / layout.PILOT_BLOCKS / "b1"
    assert json.loads((block / layout.BLOCK_EXITED).read_text())["why"] == "idle"
    started = json.loads((block / layout.BLOCK_STARTED).read_text())
    assert started["workers"] == 2 and (block / layout.BLOCK_HEARTBEAT).exists()
    assert not list((block / layout.BLOCK_RUNNING).iterdir())
    assert not list((run / layout.PILOT_QUEUE).iterdir())


def mark(path: str, x: int) -> int:
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x


def test_two_pools_share_a_queue_and_run_each_ticket_once(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    marks = tmp_path / "marks"
    for node in range(40):
        _ticket(run, node, mark, str(marks), node)
    pools = [_pool(run, "b1", workers=1), _pool(run, "b2", workers=2)]
    for proc in pools:
        assert proc.communicate(timeout=120) and proc.returncode == 0
    assert sorted(int(line) for line in marks.read_text().split()) == list(range(40))
    assert all(_value(run, node) == node for node in range(40))
    taken = [json.loads((run / layout.PILOT_BLOCKS / b / layout.BLOCK_EXITED).read_text())
             for b in ("b1", "b2")]
    assert [t["why"] for t in taken] == ["idle", "idle"]


def test_sigterm_leaves_the_running_tasks_for_the_runner(tmp_path: Path) -> None:
    """Slurm's scancel or walltime: the task is killed, not failed; its ticket stays in
    ``running/`` (the runner queues it again), and the pool says it exited."""
    run = _run_dir(tmp_path)
    _ticket(run, 0, time.sleep, 60)
    proc = _pool(run, "b1", workers=1, idle=30)
    running = run / layout.PILOT_BLOCKS / "b1" / layout.BLOCK_RUNNING
    deadline = time.monotonic() + 60
    while not (running.is_dir() and list(running.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the worker has the ticket
    proc.terminate()
    proc.communicate(timeout=60)
    assert [p.name for p in running.iterdir()] == [layout.ticket_file(0, 1)]
    assert not os.path.exists(layout.outcome_path(str(run), 0))
    exited = json.loads((run / layout.PILOT_BLOCKS / "b1" / layout.BLOCK_EXITED).read_text())
    assert exited["why"] == "terminated"


def test_cancel_marker_kills_the_task_and_says_cancelled(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    _ticket(run, 0, time.sleep, 60)
    _ticket(run, 1, square, 3)
    proc = _pool(run, "b1", workers=1, idle=1)
    block = run / layout.PILOT_BLOCKS / "b1"
    deadline = time.monotonic() + 60
    while not (block / layout.BLOCK_RUNNING / layout.ticket_file(0, 1)).exists() and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    (block / layout.BLOCK_CANCEL).mkdir(exist_ok=True)
    (block / layout.BLOCK_CANCEL / layout.attempt_name(0, 1)).touch()
    proc.communicate(timeout=60)
    assert _header(run, 0)["reason"] == "cancelled"
    assert _value(run, 1) == 9  # the next task ran in a new worker


# -- format 2.0: the workers pack outcomes and logs -------------------------------------------
def _packed_ticket(run: Path, node: int, fn: Callable, *args: Any) -> None:
    _ticket(run, node, fn, *args)
    path = run / layout.PILOT_QUEUE / layout.ticket_file(node, 1)
    ticket = pickle.loads(path.read_bytes())
    ticket["pack"] = True  # what the pilot backend sets for a format 2.0 run
    path.write_bytes(pickle.dumps(ticket))


def print_then_crash() -> None:
    print("last words", flush=True)
    os._exit(4)


def test_a_format_2_run_s_workers_pack_outcomes_and_logs(tmp_path: Path) -> None:
    from runner.outcome_pack import parse_record, read_at
    from runner.packed_reads import PackTail

    run = _run_dir(tmp_path)
    for node in range(30):
        _packed_ticket(run, node, square, node)
    _packed_ticket(run, 40, crash)
    _packed_ticket(run, 41, print_then_crash)
    proc = _pool(run, "b1")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    records = {h["node"]: (h, at) for h, at in PackTail(str(run / layout.RESULTS)).new_records()}
    assert set(records) == set(range(30))  # the two that died wrote none
    packs = {at[0] for _, at in records.values()}
    assert 1 <= len(packs) <= 2  # one per worker process, whatever the task count
    for node, (header, at) in records.items():
        assert header["ok"] and header["attempt"] == 1
        with open(run / layout.RESULTS / at[0], "rb") as f:
            _, payload = parse_record(read_at(f.fileno(), at[1], at[2]))
        assert pickle.loads(payload) == node * node
        name, offset, length = header["log_at"]["out"]
        with open(run / layout.LOGS / name, "rb") as f:
            assert read_at(f.fileno(), offset, length) == f"squaring {node}\n".encode()
        assert not os.path.exists(layout.outcome_path(str(run), node))
    died = _header(run, 40)  # a worker that died under its task: a file, as before
    assert died["reason"] == "worker_died" and "exit code 3" in died["error"], died
    assert "exit code 4" in _header(run, 41)["error"]
    # what it printed before dying is its task's log file; no capture file is left
    assert (run / layout.LOGS / layout.log_file(41, "out")).read_text() == "last words\n"
    assert not [n for n in os.listdir(run / layout.LOGS) if n.startswith(layout.CAPTURE_PREFIX)]
    assert len(os.listdir(run / layout.RESULTS)) <= 2 + 2  # the packs and the two deaths'


def test_a_dead_worker_s_packed_record_counts_as_its_outcome(tmp_path: Path) -> None:
    """A worker killed after it appended its task's record, before it said so: the pool finds
    the record in that worker's pack, and writes no ``worker_died`` outcome over it."""
    from runner.outcome_pack import encode_record
    from runner.pilot_packs import packed_by as _packed_by

    run = _run_dir(tmp_path)
    pack = run / layout.RESULTS / layout.pack_file("4321-abcdef", layout.OUTCOME_PACK_SUFFIX)
    record = encode_record({"ok": True, "node": 5, "attempt": 2}, b"x")
    pack.write_bytes(record + record[:7])  # a whole record, then a torn one
    assert _packed_by(str(run), 4321, 5, 2)
    assert not _packed_by(str(run), 4321, 5, 1) and not _packed_by(str(run), 432, 5, 2)


def test_pack_tail_sees_a_torn_record_once_it_is_whole(tmp_path: Path) -> None:
    from runner.outcome_pack import encode_record
    from runner.packed_reads import PackTail

    pack = tmp_path / layout.pack_file("1-a", layout.OUTCOME_PACK_SUFFIX)
    first = encode_record({"ok": True, "node": 1, "attempt": 1}, b"one")
    second = encode_record({"ok": True, "node": 2, "attempt": 1}, b"two")
    pack.write_bytes(first + second[:-1])
    tail = PackTail(str(tmp_path))
    assert [h["node"] for h, _ in tail.new_records()] == [1]
    assert tail.new_records() == []
    with open(pack, "ab") as f:
        f.write(second[-1:])
    found = tail.new_records()
    assert [(h["node"], at) for h, at in found] == [(2, [pack.name, len(first), len(second)])]


def print_and_wait(x: int) -> int:
    print(f"live {x}", flush=True)
    time.sleep(0.6)  # past Capture.LIVE_AFTER: its output is linked to logs/<node>.out
    return x


def test_a_packed_task_s_live_output_is_packed_and_its_live_name_left_to_the_runner(
        tmp_path: Path) -> None:
    from runner.packed_reads import PackTail

    run = _run_dir(tmp_path)
    _packed_ticket(run, 3, print_and_wait, 3)
    proc = _pool(run, "b1", workers=1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    ((header, _),) = PackTail(str(run / layout.RESULTS)).new_records()
    assert header["live_packed"] == ["out"] and header["log_at"]["out"][2] == len("live 3\n")
    # the live name stays until the runner has recorded the end (it removes it then)
    assert (run / layout.LOGS / layout.log_file(3, "out")).read_text() == "live 3\n"
