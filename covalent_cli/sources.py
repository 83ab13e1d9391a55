"""The code that runs, captured at dispatch: ``sources.json`` of the run directory.

A run's functions travel pickled; their text is not in the pickle. The UI used to read a task's
source from its file as the file is *now*, so a script edited after the dispatch showed code
that never ran. Here each distinct task function's source (and the workflow's) is read once,
when the run is made, keyed by the task's code fingerprint (the manifest's ``fp``): one entry per
function however many tasks call it. Reading a source is best effort: a function typed at a
prompt, or from a file that is gone, gets the reason instead of the text.
"""
from __future__ import annotations

import inspect
import json
import os
import textwrap
from typing import Any, Dict, Optional

from runner.redact import mask_text

SOURCES_FORMAT = 1


def capture(function: Any) -> Dict[str, Any]:
    """``{"text", "file", "line"}`` of a function (a lattice: its workflow function), or
    ``{"text": None, "error"}`` saying why there is none."""
    target = getattr(function, "workflow_function", function)
    seen = 0
    while hasattr(target, "__wrapped__") and seen < 10:
        target = target.__wrapped__
        seen += 1
    code = getattr(target, "__code__", None)
    filename = os.path.abspath(code.co_filename) if code is not None and \
        not code.co_filename.startswith("<") else None
    try:
        lines, first = inspect.getsourcelines(target)
    except Exception as exc:  # noqa: BLE001 - best effort: a source never fails a dispatch
        reason = "defined interactively" if code is not None and filename is None else \
            f"{type(exc).__name__}: {exc}"
        return {"text": None, "file": filename, "line": None, "error": reason}
    return {"text": textwrap.dedent("".join(lines)), "file": filename, "line": first}


class Sources:
    """The sources of one run's functions, each captured once: an electron's by its
    fingerprint; a sublattice node's (whose manifest fingerprint is cov's builder's) by the
    lattice's fingerprint, named per node in ``nodes``."""

    def __init__(self) -> None:
        self.workflow: Optional[Dict[str, Any]] = None
        self.functions: Dict[str, Dict[str, Any]] = {}
        self.nodes: Dict[str, str] = {}
        self._keys: Dict[int, str] = {}  # id(lattice) -> its key

    def add(self, fingerprint: Optional[str], function: Any) -> None:
        if fingerprint and fingerprint not in self.functions:
            self.functions[fingerprint] = capture(function)

    def add_node(self, node: int, lattice: Any) -> None:
        if lattice is None:
            return
        key = self._keys.get(id(lattice))
        if key is None:
            from covalent_cli.pack import code_fingerprint

            key = self._keys[id(lattice)] = "lattice:" + code_fingerprint(lattice, {})
            self.add(key, lattice)
        self.nodes[str(node)] = key

    def to_json(self, secrets: Any = None) -> bytes:
        """The file's bytes; every value of ``secrets`` (the run's executor secrets) masked in
        the texts, since a script may spell a password as a literal: the run's secrets live in
        its ``secrets/`` only."""
        entries = [self.workflow, *self.functions.values()]
        if secrets:
            for entry in entries:
                if entry and entry.get("text"):
                    entry["text"] = mask_text(entry["text"], secrets)
        return json.dumps({"format": SOURCES_FORMAT, "workflow": self.workflow,
                           "functions": self.functions, "nodes": self.nodes}).encode()
