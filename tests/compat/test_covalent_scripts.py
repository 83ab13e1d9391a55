"""Covalent users' scripts, run unchanged with `cov dispatch`: the public behaviour they rely on."""
from __future__ import annotations

import textwrap

SCRIPT = '''
import covalent as ct
from covalent import DepsBash

@ct.electron
def pair(x):
    return x, x * 10

@ct.electron
def add(a, b):
    return a + b

@ct.electron
def record(path, text):
    with open(path, "a") as f:
        f.write(text + "\\n")
    return text

class Box:
    def __init__(self, v):
        self.value = v

@ct.electron(executor=ct.executor.LocalExecutor())
def mkbox(v):
    return Box(v)

@ct.electron(deps_bash="echo dep-ran")
def context():
    c = ct.get_context()
    return [c.dispatch_id, c.node_id]

inner_lattice = ct.lattice(lambda x: add(x, 1))
inner_lattice.__name__ = "inner"

@ct.lattice(executor="local", workflow_executor="local")
def wf(x, path):
    """Exercises proxies end to end."""
    a, b = pair(x)
    both = pair(x)
    first = record(path, "first")
    second = record(path, "second")
    ct.wait(second, [first])
    sub = ct.electron(inner_lattice)(b)
    return {"sum": a + b, "item": both[1], "attr": mkbox(a).value, "scaled": a * 3 - 1,
            "sub": sub, "ctx": context(), "const": "k"}

if __name__ == "__main__":
    import sys
    dispatch_id = ct.dispatch(wf)(2, sys.argv[1] if len(sys.argv) > 1 else "/dev/null")
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    out = result.result
    assert out["sum"] == 22 and out["item"] == 20 and out["attr"] == 2, out
    assert out["scaled"] == 5 and out["sub"] == 21 and out["const"] == "k", out
    assert out["ctx"][0] == dispatch_id, out
    node = out["ctx"][1]
    assert result.get_node_result(node)["stdout"] == "dep-ran\\n"
    assert result.get_node_result(node)["node_name"] == "context"
    outputs = result.get_all_node_outputs()
    assert outputs["pair(0)"].get_deserialized() == (2, 20)
    names = [k for k in outputs]
    assert any(k.startswith(":sublattice:inner(") for k in names), names
    sub_node = next(int(k.rsplit("(", 1)[1][:-1]) for k in names if k.startswith(":sublattice:"))
    child = result.get_node_result(sub_node)["sublattice_result"]
    assert child.result == 21 and child.root_dispatch_id == dispatch_id
    assert result.inputs.get_deserialized()["args"][0] == 2
    assert str(result.status) == "COMPLETED" and "Lattice Result" in str(result)
    print("OK", dispatch_id)
'''


def test_covalent_script_runs_unchanged_under_cov_dispatch(run_cov, tmp_path):
    path = tmp_path / "user_script.py"
    path.write_text(SCRIPT)
    proc = run_cov("dispatch", str(path), "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK ")


def test_wait_edges_order_side_effects(run_cov, tmp_path):
    body = textwrap.dedent('''
        import os, time
        import covalent as ct

        @ct.electron
        def write(path, text, delay):
            time.sleep(delay)
            with open(path, "a") as f:
                f.write(text + "\\n")

        @ct.lattice
        def wf(path):
            first = write(path, "first", 0.3)
            second = write(path, "second", 0)
            ct.wait(second, first)
            return second

        if __name__ == "__main__":
            result = ct.get_result(ct.dispatch(wf)(os.environ["ORDER_LOG"]), wait=True)
            print(result.status)
    ''')
    path = tmp_path / "waits.py"
    path.write_text(body)
    log = tmp_path / "order.log"
    proc = run_cov("dispatch", str(path), "-q", env={"ORDER_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("COMPLETED")
    assert log.read_text().split() == ["first", "second"]


def test_cancel_selected_tasks_and_status_only(cov_home):
    import time
    import covalent_cli as ct

    @ct.electron
    def slow(x):
        time.sleep(30)
        return x

    @ct.electron
    def quick(x):
        return x

    @ct.lattice
    def wf():
        return [slow(1), quick(2)]

    dispatch_id = ct.dispatch(wf)()
    deadline = time.time() + 20
    while ct.get_result(dispatch_id).get_node_result(0)["status"] != "RUNNING":
        assert time.time() < deadline
        time.sleep(0.05)
    ct.cancel(dispatch_id, task_ids=[0])
    result = ct.get_result(dispatch_id, wait=True)
    assert result.get_node_result(0)["status"] == ct.status.CANCELLED
    assert result.get_node_result(2)["status"] == ct.status.COMPLETED
    assert result.status == ct.status.CANCELLED
    assert ct.get_result(dispatch_id, status_only=True) == {"id": dispatch_id,
                                                           "status": "CANCELLED"}
