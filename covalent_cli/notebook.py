"""``cov dispatch notebook.ipynb``: a Jupyter notebook's code cells, run in order like a script.

The cells run as plain Python in one namespace (``__name__ == "__main__"``, as in a kernel);
markdown and raw cells are skipped. IPython syntax has no meaning outside IPython, so it is
skipped with a note on stderr naming the cell and line: a line magic (``%matplotlib inline``),
a shell line (``!pip install x``), and a whole cell that starts with a cell magic
(``%%bash``). Each skipped line becomes ``pass`` so the line numbers in tracebacks stay the
cell's own. cov does not run the notebook through IPython even where it is installed: a
dispatch must not depend on what else is installed, and magics' side effects (a shell command,
a plotting backend) are not part of a workflow.
"""
from __future__ import annotations

import json
import re
import sys
import types
from typing import Any, Dict, List, Tuple

from covalent_cli.errors import ScriptError

# The cell being run (1-based, counting every cell), for error messages; 0 when none.
current_cell = 0

_IPYTHON_LINE = re.compile(r"^(\s*)([%!].*)$")


def read_cells(path: str) -> List[Tuple[int, str]]:
    """The notebook's code cells as ``(cell number, Python source)``, IPython lines replaced
    (and noted on stderr). A file that is not a notebook, or a cell with a syntax error, is a
    ``ScriptError`` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            notebook = json.load(f)
        cells = notebook["cells"]
        if not isinstance(cells, list):
            raise TypeError("'cells' is not a list")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ScriptError(f"{path} is not a Jupyter notebook ({type(exc).__name__}: {exc})",
                          "cov dispatch runs .py scripts and .ipynb notebooks") from None
    out = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = _text(cell.get("source", ""))
        code = _plain_python(path, number, source)
        try:
            compile(code, path, "exec")
        except SyntaxError as exc:
            raise ScriptError(f"{path}: cell {number}, line {exc.lineno}: syntax error: "
                              f"{exc.msg}") from None
        out.append((number, code))
    return out


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _plain_python(path: str, number: int, source: str) -> str:
    lines = source.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("%%"):
        _note(path, number, 1, first.strip(), "cell magic: the whole cell")
        return ""
    out = []
    for lineno, line in enumerate(lines, 1):
        match = _IPYTHON_LINE.match(line)
        if match:
            kind = "shell command" if match.group(2).startswith("!") else "IPython magic"
            _note(path, number, lineno, match.group(2).strip(), kind)
            line = f"{match.group(1)}pass"
        out.append(line)
    return "\n".join(out) + "\n"


def _note(path: str, cell: int, line: int, text: str, kind: str) -> None:
    print(f"cov: {path} cell {cell}, line {line}: skipped {kind} `{text}` (cov runs a "
          "notebook's code cells as plain Python)", file=sys.stderr)


def run_cells(path: str, cells: List[Tuple[int, str]]) -> Dict[str, Any]:
    """Run the cells in order in one ``__main__`` namespace (as runpy runs a script); return
    the namespace."""
    global current_cell
    module = types.ModuleType("__main__")
    module.__file__ = path
    namespace = module.__dict__
    namespace["__builtins__"] = __builtins__
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        for number, code in cells:
            current_cell = number
            exec(compile(code, path, "exec"), namespace)  # noqa: S102 - the user's own notebook
        current_cell = 0
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved
    return dict(namespace)
