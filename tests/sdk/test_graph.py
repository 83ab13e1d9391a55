"""Graph building as Covalent does it: node ids in creation order, names, edges, proxies."""
from __future__ import annotations

import pytest

import covalent_cli as ct


@ct.electron
def pair(x):
    return x, x + 1


@ct.electron
def add(a, b=0):
    return a + b


@ct.electron
def total(values):
    return sum(values)


class Box:
    value = 3


@ct.electron
def mkbox():
    return Box()


def names(graph):
    return [f"{n.name}({n.id})" for n in graph.nodes]


def test_electron_outside_lattice_is_a_plain_call():
    assert add(2, 3) == 5
    assert pair(1) == (1, 2)


def test_lattice_called_directly_runs_its_function():
    @ct.lattice
    def wf(x):
        return add(x, 1)

    assert wf(4) == 5


def test_electron_gets_its_id_before_its_arguments_and_unpacking_makes_item_nodes():
    @ct.lattice
    def wf(x):
        a, b = pair(x)
        return add(a, b)

    graph = wf.build_graph(2)
    assert names(graph)[:6] == ["pair(0)", ":parameter:2(1)", ":pair()[0](2)", ":parameter:0(3)",
                                ":pair()[1](4)", ":parameter:1(5)"]
    assert graph.nodes[6].name == "add"
    assert [(e.parent, e.param, e.type, e.index) for e in graph.nodes[6].parents] == \
        [(2, "a", "arg", 0), (4, "b", "arg", 1)]
    assert graph.nodes[-1].name == ":postprocess:reconstruct"
    assert graph.output_node == len(graph.nodes) - 1


def test_getitem_getattr_and_arithmetic_nodes_are_named_like_covalent():
    @ct.lattice
    def wf(x):
        p = pair(x)
        a, b = pair(x)
        item = p[1]
        value = mkbox().value
        return a + b, item, value

    graph = wf.build_graph(2)
    all_names = [n.name for n in graph.nodes]
    assert ":pair.__getitem__" in all_names
    assert ":mkbox.__getattr__" in all_names
    assert ":pair()[0]_+_:pair()[1]" in all_names
    post = graph.nodes[graph.output_node]
    # a tuple return value becomes a list node feeding the postprocess node
    list_node = graph.nodes[post.parents[0].parent]
    assert list_node.name == ":electron_list:" and list_node.id == post.id + 1


def test_lists_dicts_and_constants_become_nodes():
    @ct.lattice
    def wf(n):
        squares = [add(i, i) for i in range(n)]
        return total(squares), add(a=1, b={"k": 2}["k"])

    graph = wf.build_graph(3)
    kinds = {n.name: n.kind for n in graph.nodes}
    assert kinds[":electron_list:"] == "collection"
    assert kinds[":parameter:0"] == "parameter"
    kw = [n for n in graph.nodes if n.name == "add"][-1]
    assert {(e.param, e.type) for e in kw.parents} == {("a", "kwarg"), ("b", "kwarg")}


def test_dict_argument_becomes_electron_dict_with_keyword_edges():
    @ct.lattice
    def wf():
        return total({"x": add(1), "y": 2})

    graph = wf.build_graph()
    dict_node = next(n for n in graph.nodes if n.name == ":electron_dict:")
    assert {(e.param, e.type) for e in dict_node.parents} == {("x", "kwarg"), ("y", "kwarg")}


def test_wrong_arity_raises_value_error_at_build_time():
    @ct.lattice
    def wf():
        return add(1, 2, 3)

    with pytest.raises(ValueError, match="add"):
        wf.build_graph()


def test_wait_adds_an_edge_without_a_value():
    @ct.lattice
    def wf():
        first = add(1)
        second = add(2)
        ct.wait(second, [first])
        return second

    graph = wf.build_graph()
    second = graph.nodes[2]
    assert second.waits == [0]
    assert ct.wait(1, 2) == 1  # outside a lattice: a no-op


def test_comparing_a_task_output_fails_at_build_time():
    @ct.lattice
    def wf():
        if add(1) > 3:
            return 1
        return 0

    with pytest.raises(TypeError):
        wf.build_graph()


def test_retval_keyword_is_not_a_graph_input():
    def setup():
        return 5

    @ct.electron(call_before=[ct.DepsCall(setup, retval_keyword="cfg")])
    def uses(x, cfg=None):
        return x + cfg

    @ct.lattice
    def wf():
        return uses(1)

    graph = wf.build_graph()
    assert [e.param for e in graph.nodes[0].parents] == ["x"]


def test_sublattice_node_has_lattice_and_metadata_parameters():
    @ct.electron
    @ct.lattice
    def inner(x):
        return add(x, 1)

    @ct.lattice
    def outer(x):
        return inner(x)

    graph = outer.build_graph(1)
    assert graph.nodes[0].name == ":sublattice:inner"
    assert graph.nodes[0].kind == "sublattice"
    assert [e.index for e in graph.nodes[0].parents] == [0, 1, 2]
    assert graph.nodes[3].name == ":parameter:1"


def test_sublattice_function_of_runs_packed_before_the_move_still_loads():
    """Runs created before build_sublattice moved into covalent_cli.dispatch name it, in
    tasks.pkl, as covalent_cli.sublattice.build_sublattice (pickled by reference); a runner
    resuming such a run must still find it."""
    import pickle

    import cloudpickle

    from covalent_cli.dispatch import build_sublattice

    assert pickle.loads(b"ccovalent_cli.sublattice\nbuild_sublattice\n.") is build_sublattice
    assert b"covalent_cli.dispatch" in cloudpickle.dumps(build_sublattice)


def test_status_compares_equal_to_its_string():
    assert ct.status.COMPLETED == "COMPLETED"
    assert str(ct.status.FAILED) == "FAILED"
    assert not ct.status.NEW_OBJECT and ct.status.RUNNING
    assert ct.status.DISPATCHING_SUBLATTICE == ct.status.DISPATCHING


def test_transportable_object_round_trip():
    obj = ct.TransportableObject({"a": [1, 2]})
    assert obj.get_deserialized() == {"a": [1, 2]}
    assert obj.object_string == "{'a': [1, 2]}"
