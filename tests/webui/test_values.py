"""Reprs, log tails and function sources as the task view shows them."""
from __future__ import annotations

import pickle

from webui import values


def test_source_of_a_function_typed_at_a_prompt_is_explained():
    namespace: dict = {}
    exec(compile("def f(x):\n    return x\n", "<stdin>", "exec"), namespace)
    src = values.function_source(namespace["f"])
    assert src["text"] is None and src["error"] == "defined interactively"


def test_relative_file_names_resolve_against_the_dispatch_directory(tmp_path):
    (tmp_path / "wf.py").write_text("import os\n\n\ndef g(y):\n    return y * 2\n")
    namespace: dict = {}
    exec(compile((tmp_path / "wf.py").read_text(), "wf.py", "exec"), namespace)
    src = values.function_source(namespace["g"], cwd=str(tmp_path))
    assert src["text"] == "def g(y):\n    return y * 2\n" and src["line"] == 4
    gone = values.function_source(namespace["g"], cwd=str(tmp_path / "elsewhere"))
    assert gone["text"] is None and "cannot read" in gone["error"]


def test_values_that_cannot_be_unpickled_or_shown_are_described():
    broken = values.pickled_value(b"\x80\x04not a pickle")
    assert broken["repr"].startswith("<cannot unpickle:") and broken["size"] == 14

    class Loud:
        def __repr__(self):
            raise RuntimeError("no")

    shown = values.shown_repr(Loud())
    assert "repr failed: RuntimeError: no" in shown["repr"]
    huge = values.pickled_value(pickle.dumps(list(range(400_000))))
    assert huge["truncated"] and huge["length"] is None and "..." in huge["repr"]


def test_log_tail_keeps_the_end(tmp_path):
    from runner.rundir import RunDir

    log = tmp_path / "x.out"
    log.write_text("a" * 1000 + "THE END")
    run = RunDir(tmp_path)
    tail = values.read_tail(run, log, limit=10)
    assert tail == {"text": "aaaTHE END", "size": 1007, "truncated": True}
    assert values.read_tail(run, tmp_path / "missing")["text"] == ""
    assert values.traceback_of(None, "noise\nTraceback (most recent call last):\n  boom\n") == \
        "Traceback (most recent call last):\n  boom\n"
