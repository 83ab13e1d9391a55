"""The run directory's pure parts: manifest round trip and versions, event fold, scheduling."""
from __future__ import annotations

import pytest
import yaml

from runner.manifest import Edge, Manifest, ManifestError, NodeSpec
from runner.scheduler import Schedule
from runner.state import CANCELLED, COMPLETED, FAILED, RunState, fold


def diamond() -> Manifest:
    """0 param -> 1 a -> (2 b, 3 c) -> 4 d (output)."""
    nodes = [
        NodeSpec(0, ":parameter:1", "parameter", blob=(0, 4), value_repr="1"),
        NodeSpec(1, "a", "electron", "local", [Edge(0, "x", "arg", 0)], blob=(4, 10)),
        NodeSpec(2, "b", "electron", "local", [Edge(1, "x", "arg", 0)], blob=(4, 10)),
        NodeSpec(3, "c", "electron", "local", [Edge(1, "y", "kwarg")], blob=(4, 10)),
        NodeSpec(4, "d", "electron", "local", [Edge(2, "p", "arg", 0), Edge(3, "q", "arg", 1)],
                 waits=[1], blob=(4, 10)),
    ]
    return Manifest(dispatch_id="id-1", root_dispatch_id="id-1", lattice_name="wf", nodes=nodes,
                    output_node=4, executors={"local": {"type": "local"}}, doc="Doc: with colon")


def test_manifest_round_trips_and_is_valid_yaml():
    manifest = diamond()
    text = manifest.to_yaml()
    parsed = yaml.safe_load(text)  # what yq and people see
    assert parsed["nodes"][4]["waits"] == [1]
    assert parsed["lattice"]["doc"] == "Doc: with colon"
    back = Manifest.from_yaml(text)
    assert [n.to_dict() for n in back.nodes] == [n.to_dict() for n in manifest.nodes]
    assert back.output_node == 4 and back.task_count == 4


def test_manifest_edited_into_other_yaml_is_still_read():
    text = diamond().to_yaml()
    data = yaml.safe_load(text)
    reflowed = yaml.safe_dump(data, default_flow_style=False)  # nodes no longer one per line
    assert Manifest.from_yaml(reflowed).nodes[3].parents[0].type == "kwarg"


def test_the_file_reader_reads_what_the_text_reader_reads(tmp_path):
    """runner.manifest_file reads the file line by line (the text is never held whole): the
    same manifest as Manifest.from_yaml, for the shape dispatch writes, for other YAML and
    with the same errors; and the identity of the whole file's bytes."""
    import io

    from runner.manifest_file import identity_of, read_manifest

    text = diamond().to_yaml()
    reflowed = yaml.safe_dump(yaml.safe_load(text), default_flow_style=False)
    for shape in (text, reflowed, text.rstrip("\n"), text.replace("\n  - ", "\n\n  - ")):
        data = shape.encode()
        manifest, identity = read_manifest(io.BytesIO(data))
        assert manifest == Manifest.from_yaml(shape)
        assert identity == identity_of(data)
    broken = text.replace('"name": "c"', '"name": 3')
    with pytest.raises(ManifestError, match="'name' must be text"):
        read_manifest(io.BytesIO(broken.encode()))
    missing = text.replace('{"node": 3, "param": "q"', '{"node": 9, "param": "q"')
    with pytest.raises(ManifestError, match="depends on node 9"):
        read_manifest(io.BytesIO(missing.encode()))


def test_newer_major_format_is_refused_older_minor_accepted():
    text = diamond().to_yaml()
    assert "format_version: '2.0'" in text  # what dispatch writes: packed outcomes
    with pytest.raises(ManifestError, match=r"format 3.0 is newer than this cov reads \(2.0\)"):
        Manifest.from_yaml(text.replace("format_version: '2.0'", "format_version: '3.0'"))
    assert Manifest.from_yaml(text.replace("format_version: '2.0'", "format_version: '2.7'"))
    assert Manifest.from_yaml(text.replace("format_version: '2.0'", "format_version: '1.0'"))


def test_corrupted_manifest_is_a_clear_error():
    with pytest.raises(ManifestError):
        Manifest.from_yaml("format_version: '1.0'\nnodes: [\n")


def test_fold_ignores_late_failure_after_completion():
    events = [
        {"ev": "claim", "node": 1, "attempt": 1, "runner": "r"},
        {"ev": "end", "node": 1, "status": COMPLETED},
        {"ev": "end", "node": 1, "status": FAILED, "error": "late"},
        {"ev": "run", "status": "COMPLETED"},
        {"ev": "run", "status": "RUNNING"},
    ]
    state = fold(events)
    assert state.tasks[1].status == COMPLETED
    assert state.status == COMPLETED


def test_schedule_releases_children_in_order_and_blocks_after_failure():
    schedule = Schedule(diamond(), RunState())
    assert schedule.take_ready() == [1]
    assert schedule.finish(1, COMPLETED) == [2, 3]
    assert schedule.take_ready() == [2, 3]
    schedule.finish(2, COMPLETED)
    assert schedule.take_ready() == []
    schedule.finish(3, FAILED)
    assert schedule.blocked == {4}
    assert schedule.over
    assert schedule.outcome() == (FAILED, [(3, "c")])


def test_schedule_resumes_from_folded_state():
    state = fold([{"ev": "end", "node": 1, "status": COMPLETED},
                  {"ev": "end", "node": 2, "status": COMPLETED}])
    schedule = Schedule(diamond(), state)
    assert schedule.take_ready() == [3]


def test_all_cancelled_run_outcome():
    schedule = Schedule(diamond(), RunState())
    schedule.take_ready()
    schedule.finish(1, CANCELLED)
    assert schedule.over and schedule.outcome()[0] == CANCELLED
