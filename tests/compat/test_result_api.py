"""The Result API real programs use: ``transport_graph.get_node_value``, ``get_result``'s
loading flags, a Result that outlives its run directory, ``inputs`` with a tuple of args, and
Covalent's private module paths that its own tests import."""
from __future__ import annotations

import pickle
import shutil
import sys
from datetime import datetime

import pytest

import covalent_cli as ct


def greet(name):
    print(f"hello {name}")
    print("to stderr", file=sys.stderr)
    return f"hi {name}"


def fail(x):
    raise ValueError(f"bad {x}")


def setup_value():
    return 5


@ct.lattice
def inner(x):
    return ct.electron(greet)(x)


@ct.lattice(deps_bash=ct.DepsBash(["true"]))
def workflow(name, *rest, times=1):
    hello = ct.electron(greet, call_before=[ct.DepsCall(setup_value)])(name)
    sub = ct.electron(inner)(name)
    return [hello, sub, times]


def _by_name(tg, name):
    return next(i for i in range(len(tg)) if tg.get_node_value(i, "name") == name)


def test_get_node_value_keys_and_snapshot_after_removal(cov_home):
    dispatch_id = ct.dispatch(workflow)("ada", "extra", times=2)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == ["hi ada", "hi ada", 2]
    # Covalent keeps the positional args a tuple
    assert result.inputs.get_deserialized() == {"args": ("ada", "extra"), "kwargs": {"times": 2}}

    for run in cov_home.iterdir():  # the run and its child run: below, the snapshot answers
        if not run.name.startswith("."):
            shutil.rmtree(run)
    assert not any(p.name == dispatch_id for p in cov_home.iterdir())
    tg = result.lattice.transport_graph
    node = _by_name(tg, "greet")
    assert tg.get_node_value(node, "status") == ct.status.COMPLETED
    assert tg.get_node_value(node, "output").get_deserialized() == "hi ada"
    assert tg.get_node_value(node, "stdout") == "hello ada\n"
    assert tg.get_node_value(node, "stderr") == "to stderr\n"
    assert tg.get_node_value(node, "error") is None
    start, end = tg.get_node_value(node, "start_time"), tg.get_node_value(node, "end_time")
    assert isinstance(start, datetime) and start <= end
    assert tg.get_node_value(node, "sub_dispatch_id") is None
    metadata = tg.get_node_value(node, "metadata")
    assert metadata["executor"] == "local"
    assert ct.DepsBash().from_dict(metadata["hooks"]["deps"]["bash"]).commands == ["true"]
    call = ct.DepsCall().from_dict(metadata["hooks"]["call_before"][0])
    assert call.func() == 5
    assert tg.get_node_value(node, "function").get_deserialized()("x") == "hi x"
    with pytest.raises(KeyError):
        tg.get_node_value(node, "no-such-key")
    with pytest.raises(KeyError):
        tg.get_node_value(len(tg), "name")

    sub = _by_name(tg, ":sublattice:inner")
    child_id = tg.get_node_value(sub, "sub_dispatch_id")
    child = tg.get_node_value(sub, "sublattice_result")
    assert child.dispatch_id == child_id and child.root_dispatch_id == dispatch_id
    assert child.result == "hi ada"
    assert child.get_node_result(0)["stdout"] == "hello ada\n"
    assert result.get_node_result(sub)["sublattice_result"].result == "hi ada"
    assert result.get_node_result(node)["output"].get_deserialized() == "hi ada"
    assert "Lattice Result" in str(result)
    copy = pickle.loads(pickle.dumps(result))  # a snapshot travels, without the open pack
    assert copy.result == ["hi ada", "hi ada", 2] and copy.dispatch_id == dispatch_id
    assert copy.lattice.transport_graph.get_node_value(node, "stdout") == "hello ada\n"


def test_get_result_flags_choose_what_is_loaded(cov_home):
    dispatch_id = ct.dispatch(workflow)("bo")
    full = ct.get_result(dispatch_id, wait=True)
    tg = full.lattice.transport_graph
    node, sub = _by_name(tg, "greet"), _by_name(tg, ":sublattice:inner")

    bare = ct.get_result(dispatch_id, workflow_output=False, intermediate_outputs=False,
                         sublattice_results=False)
    assert bare.status == ct.status.COMPLETED and bare.result is None
    assert bare.get_node_result(node)["output"] is None
    assert bare.get_node_result(node)["stdout"] == "hello bo\n"  # logs: always
    assert bare.get_node_result(sub)["sublattice_result"] is None
    assert bare.lattice.transport_graph.get_node_value(sub, "sub_dispatch_id")  # still known

    only_output = ct.get_result(dispatch_id, intermediate_outputs=False)
    assert only_output.result == ["hi bo", "hi bo", 1]
    assert only_output.get_node_result(node)["output"] is None
    assert only_output.get_node_result(sub)["sublattice_result"].result is not None


def test_failed_node_and_covalents_own_module_paths(cov_home):
    from covalent_cli._results_manager import results_manager as rm
    from covalent_cli._results_manager.result import Result

    @ct.lattice
    def failing():
        ct.electron(fail)(1)
        return 1

    dispatch_id = ct.dispatch(failing)()
    result = rm.get_result(dispatch_id, wait=True)
    rm._delete_result(dispatch_id)  # Covalent's tests delete, then read the result
    assert not (cov_home / dispatch_id).exists()
    tg = result.lattice.transport_graph
    assert result.status == Result.FAILED
    assert tg.get_node_value(0, "status") == Result.FAILED
    assert "ValueError: bad 1" in tg.get_node_value(0, "stderr")
    rm._delete_result(dispatch_id)  # an unknown id: nothing to do, as in Covalent


def test_deps_to_dict_from_dict_round_trip():
    bash = ct.DepsBash(["echo a", "echo b"])
    assert ct.DepsBash().from_dict(bash.to_dict()).commands == ["echo a", "echo b"]
    assert bash.to_dict()["type"] == "DepsBash"
    pip = ct.DepsPip(packages=["numpy==1.0"])
    again = ct.DepsPip().from_dict(pip.to_dict())
    assert again.packages == ["numpy==1.0"] and again == pip
    call = ct.DepsCall(setup_value, args=[], kwargs={}, retval_keyword="k")
    back = ct.DepsCall().from_dict(call.to_dict())
    assert back.retval_keyword == "k" and back.func() == 5
    assert ct.DepsBash().from_dict({}).commands == []


def test_what_covalents_own_tests_use(cov_home):
    """Idioms of Covalent's functional tests: ``_graph.nodes``, the exceptions module, reuse
    leaving every node with start == end, cancelling a stacked ``@electron @lattice``."""
    from covalent_cli._results_manager import results_manager as rm
    from covalent_cli._shared_files.exceptions import MissingLatticeRecordError

    @ct.electron
    def sum_task(x, y):
        return x + y

    @ct.electron
    def square_task(x):
        return x * x

    @ct.lattice
    def workflow(x, y):
        return square_task(sum_task(x, y))

    workflow.build_graph(2, 3)
    assert list(workflow.transport_graph._graph.nodes) == list(range(len(
        workflow.transport_graph.nodes)))
    first = ct.get_result(ct.dispatch(workflow)(2, 3), wait=True)
    again = ct.get_result(ct.redispatch(first.dispatch_id, reuse_previous_results=True)(),
                          wait=True)
    assert again.result == 25
    for i in again.lattice.transport_graph._graph.nodes:
        assert again.get_node_result(i)["start_time"] == again.get_node_result(i)["end_time"]
    with pytest.raises(MissingLatticeRecordError):
        ct.get_result("nonexistent")
    rm.sync(first.dispatch_id)
    ct.sync([first.dispatch_id, again.dispatch_id])  # the top-level name of older Covalent


def test_built_graph_answers_as_covalents_transport_graph():
    """Covalent's tests read a lattice's graph right after ``build_graph``, before any run."""
    @ct.electron(executor="local")
    def add(a, b):
        return a + b

    @ct.electron
    def total(xs):
        return sum(xs)

    @ct.lattice
    def workflow(x, y=3):
        return total([add(x, y), x])

    assert workflow.transport_graph.nodes == []  # empty until built, not None
    workflow.build_graph(1)
    tg = workflow.transport_graph
    assert tg.get_node_value(0, "name") == "add"
    assert tg.get_node_value(0, "function").get_deserialized()(2, 3) == 5
    assert tg.get_node_value(0, "metadata")["executor"] == "local"
    assert tg.get_node_value(0, "task_group_id") == 0
    parameters = [i for i in tg._graph.nodes
                  if tg.get_node_value(i, "name").startswith(":parameter:")]
    values = sorted(tg.get_node_value(i, "value").get_deserialized() for i in parameters)
    assert values == [1, 1, 3]
    assert tg.get_dependencies(0) == sorted(parameters[:2])
    assert tg.get_edge_data(parameters[0], 0) == {
        0: {"edge_name": "a", "param_type": "arg", "arg_index": 0}}
    assert tg.get_edge_data(0, parameters[0]) is None
    for key in ("status", "output", "start_time"):  # what only a run sets
        with pytest.raises(KeyError):
            tg.get_node_value(0, key)
    with pytest.raises(KeyError):
        tg.get_node_value(99, "name")
