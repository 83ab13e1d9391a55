"""SSH tasks are QUEUED from their claim until their host runs them, RUNNING with the remote pid
and the real start once the host printed the pid; tasks beyond ``max_concurrent`` are not
claimed (PENDING). Before: a task was RUNNING from its claim on, without a start of its own."""
from __future__ import annotations

import json
import time

import covalent_cli as ct
from runner.rundir import RunDir
from tests.backends.test_ssh import hosts, ssh_home  # noqa: F401 (fixtures)


def nap(i):
    import time as _time

    _time.sleep(4)
    return i


def test_tasks_beyond_max_concurrent_are_queued(ssh_home, hosts):  # noqa: F811
    task = ct.electron(nap, executor=ct.executor.SSHExecutor(hostname="covtest",
                                                             max_concurrent=2))

    @ct.lattice
    def wf():
        return [task(i) for i in range(4)]

    dispatched = time.time()
    dispatch_id = ct.dispatch(wf)()
    run = RunDir(ssh_home / dispatch_id)
    naps = [n.id for n in run.manifest.nodes if n.name == "nap"]
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        tasks = RunDir(run.path).state().tasks
        if sum(1 for n in naps if n in tasks and tasks[n].status == "RUNNING") == 2:
            break
        time.sleep(0.05)
    statuses = sorted(str(tasks[n].status) for n in naps if n in tasks)
    assert statuses == ["RUNNING", "RUNNING"], statuses  # the other two wait unclaimed
    for n in naps:
        if n in tasks:
            assert tasks[n].pid and tasks[n].started >= tasks[n].claimed >= dispatched
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    events = [json.loads(line) for line in run.events_path.read_text().splitlines()]
    for n in naps:
        claim = next(e for e in events if e["ev"] == "claim" and e["node"] == n)
        start = next(e for e in events if e["ev"] == "start" and e["node"] == n)
        assert events.index(start) > events.index(claim) and start["start"] >= claim["t"]
        assert start["pid"] and start["host"]
