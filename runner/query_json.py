"""The task table of ``cov status --json`` as JSON text, made a column at a time.

``task_rows`` makes one dict per node, and ``json.dumps`` then walks them: at 100,000 nodes the
dicts took ~0.3 s and their encoding ~0.5 s (its largest cost, cProfile of ``cov status
--json`` on a finished run). Here each field is a column (``attrgetter`` over the task states,
one comprehension over the nodes), a column is encoded once per distinct value where values
repeat (statuses, names, hosts, ``null``) and with ``repr`` where they do not (times), and
the rows are one join of the field names' and the values' fragments.

The text is byte for byte what ``runner.json_view.dumps`` makes of ``task_rows``' dicts (the
same fields in the same order, the same separators; tests/cli/test_status_json_text.py holds
the two together). A value that the C encoder would not take as it is (NaN, a key JSON
refuses) raises ``NotPlain``: the caller then takes the general path, which marks it.
"""
from __future__ import annotations

import json
from itertools import chain, islice, repeat
from operator import attrgetter
from typing import Any, Dict, Iterable, List, Optional, Sequence, TypeVar

from runner.json_view import _marked
from runner.manifest import PARAMETER, NodeSpec
from runner.query import NOT_RUN, PENDING, RESHAPING, not_run_causes, ordered_counts
from runner.query_failures import failure_leaves
from runner.rundir import RunDir
from runner.derived import gc_paused
from runner.state import COMPLETED, FAILED, NEW_OBJECT, TERMINAL, Status, TaskState

# task_rows' fields, in its order
FIELDS = ("id", "name", "kind", "status", "shown", "not_run", "reason", "failed_inside",
          "backend", "claimed", "executor", "executor_type", "host", "pid", "job_id",
          "attempt", "started", "ended", "runtime", "error", "exception", "child", "parents",
          "waits", "value")
# what comes before each field's value in a row: '{"id": ', ', "name": ', ...
_KEYS = ["{" + json.dumps(FIELDS[0]) + ": "] + [", " + json.dumps(name) + ": "
                                                for name in FIELDS[1:]]
_TEXT = frozenset({str, Status, type(None)})
_NULL = "null"
_NULL_FOR_NONE = {None: _NULL}
T = TypeVar("T")
_NOT_FINITE = frozenset({"nan", "inf", "-inf"})  # float.__repr__ of NaN and the infinities


class NotPlain(ValueError):
    """A value the fast encoding does not spell as ``json.dumps`` would without help."""


class TaskTable:
    """What ``cov status --json`` says of a run's tasks: ``counts`` (tasks per shown status,
    in reading order, before ``wanted``), ``total`` and ``done`` (of the rows that are not
    parameters) and ``json``, the JSON list of the rows shown."""

    def __init__(self, counts: Dict[str, int], total: int, done: int, text: str) -> None:
        self.counts, self.total, self.done, self.json = counts, total, done, text


def _dumps(value: Any) -> str:
    """One value as ``runner.json_view.dumps`` spells it on its fast path."""
    try:
        return json.dumps(value, allow_nan=False, default=_marked)
    except (TypeError, ValueError):
        raise NotPlain(repr(value)[:80]) from None


def encoded(values: Sequence[Any]) -> List[str]:
    """Each value's JSON text. A column of text (or ``None``) is encoded once per distinct
    value; a column of one number type (or ``None``) by ``repr``, as the encoder does it."""
    types = set(map(type, values))
    if types <= _TEXT:
        table: Dict[Any, str] = dict.fromkeys(values, "")
        for value in table:
            table[value] = _dumps(value)
        return list(map(table.__getitem__, values))
    if types <= {float, type(None)} or types <= {int, type(None)}:
        # repr is what the encoder writes of an int or a float; None's "None" is replaced
        spelled = list(map(_NULL_FOR_NONE.get, values, map(repr, values)))
        if float in types and _NOT_FINITE.intersection(spelled):
            raise NotPlain("a number that is not finite")  # JSON has none: marked elsewhere
        return spelled
    return [_dumps(v) for v in values]  # mixed numbers (1, 1.0, True are equal keys), handles


def _parents(nodes: List[NodeSpec]) -> List[str]:
    """Each node's ``parents`` as ``task_rows`` gives them (``index`` only when set), made
    for all edges at once: one template per (param, type, whether indexed), filled with the
    edge's node (and index)."""
    edges = [e for n in nodes for e in n.parents]
    ids = list(map(attrgetter("node"), edges))
    indexes = list(map(attrgetter("index"), edges))
    if not set(map(type, ids)) <= {int} or not set(map(type, indexes)) <= {int, type(None)}:
        raise NotPlain("an edge of another shape")
    keys = list(zip(map(attrgetter("param"), edges), map(attrgetter("type"), edges),
                    map(_NULL_FOR_NONE.__contains__, indexes)))
    templates: Dict[Any, str] = {}
    for key in set(keys):
        param, kind, no_index = key
        templates[key] = ('{"node": %%d, "param": %s, "type": %s%s}'
                          % (_dumps(param).replace("%", "%%"), _dumps(kind).replace("%", "%%"),
                             "" if no_index else ', "index": %d'))
    values = [node if index is None else (node, index) for node, index in zip(ids, indexes)]
    spelled = list(map(str.__mod__, map(templates.__getitem__, keys), values))
    edges_of = iter(spelled)
    return ["[]" if not n.parents else
            "[" + next(edges_of) + "]" if len(n.parents) == 1 else
            "[" + ", ".join(islice(edges_of, len(n.parents))) + "]" for n in nodes]


def task_table(run: RunDir, include_parameters: bool = False, include_reshaping: bool = True,
               wanted: Optional[Sequence[str]] = None) -> TaskTable:
    """``task_rows(run, include_parameters, include_reshaping)`` as a ``TaskTable``, its
    ``json`` the rows whose shown status is in ``wanted`` (all if None). ``NotPlain`` if a
    value needs the general encoder."""
    manifest = run.manifest
    state = run.state()
    tasks = state.tasks
    never = TaskState()
    with gc_paused():
        nodes: List[NodeSpec] = []
        for node in manifest.nodes:  # the nodes task_rows makes rows of
            kind = node.kind
            if kind in RESHAPING:
                if kind == PARAMETER:
                    if not include_parameters:
                        continue
                elif not include_reshaping:
                    task = tasks.get(node.id)
                    if task is None or task.status != FAILED:
                        continue
            nodes.append(node)
        states = [tasks.get(n.id) or never for n in nodes]
        kinds = [n.kind for n in nodes]
        statuses = [COMPLETED if k == PARAMETER else t.status for k, t in zip(kinds, states)]
        causes = not_run_causes(manifest, state)
        cause_of: List[Optional[int]] = [causes.get(n.id) for n in nodes] if causes else \
            [None] * len(nodes)
        shown = [(PENDING if c is None else NOT_RUN) if s == NEW_OBJECT else s
                 for s, c in zip(statuses, cause_of)]
        counts = ordered_counts(shown)
        total = len(kinds) - kinds.count(PARAMETER)
        done = sum(1 for k, s in zip(kinds, statuses) if s == COMPLETED and k != PARAMETER)
        if wanted is not None:
            keep = [i for i, s in enumerate(shown) if s in wanted]
            nodes, states, statuses = _pick(nodes, keep), _pick(states, keep), \
                _pick(statuses, keep)
            cause_of, shown = _pick(cause_of, keep), _pick(shown, keep)
        text = _rows(run, tasks, nodes, states, statuses, cause_of, shown)
    return TaskTable(counts, total, done, text)


def _pick(column: List[T], keep: List[int]) -> List[T]:
    return [column[i] for i in keep]


def _rows(run: RunDir, tasks: Dict[int, TaskState], nodes: List[NodeSpec],
          states: List[TaskState], statuses: List[Any], cause_of: List[Optional[int]],
          shown: List[str]) -> str:
    """The JSON list of these rows (see ``task_rows`` for what each field is)."""
    manifest = run.manifest
    column = {name: list(map(attrgetter(name), states)) for name in (
        "reason", "backend", "claimed", "host", "pid", "job_id", "attempt", "started", "error",
        "exception", "child")}
    ended = [t.ended if t.status in TERMINAL else None for t in states]
    started = column["started"]
    runtime = [(e - s) if s and e else None for s, e in zip(started, ended)]
    executors = [n.executor for n in nodes]
    types = {name: config.get("type") for name, config in manifest.executors.items()}
    not_run: Dict[Optional[int], str] = {None: _NULL}
    for cause in set(cause_of) - {None}:
        assert cause is not None
        not_run[cause] = _dumps({"node": cause, "name": manifest.node(cause).name,
                                 "status": str(tasks[cause].status)})
    inside = [failure_leaves(run, t.child) if t.child and t.status == FAILED else None
              for t in states]
    parents = _parents(nodes)
    waits = ["[]" if not n.waits else _dumps(list(n.waits)) for n in nodes]
    columns = [
        encoded([n.id for n in nodes]), encoded([n.name for n in nodes]),
        encoded([n.kind for n in nodes]), encoded(statuses), encoded(shown),
        list(map(not_run.__getitem__, cause_of)), encoded(column["reason"]),
        [_NULL if v is None else _dumps(v) for v in inside], encoded(column["backend"]),
        encoded(column["claimed"]), encoded(executors),
        encoded([types.get(e) if e else None for e in executors]), encoded(column["host"]),
        encoded(column["pid"]), encoded(column["job_id"]), encoded(column["attempt"]),
        encoded(started), encoded(ended), encoded(runtime), encoded(column["error"]),
        encoded(column["exception"]), encoded(column["child"]), parents, waits,
        encoded([n.value_repr for n in nodes]),
    ]
    # the rows as one join of key, value, key, value ... (a % of a 25-field template per row
    # took 1.5x as long)
    count = len(nodes)
    if not count:
        return "[]"
    pieces: List[Iterable[str]] = []
    for key, values in zip(_KEYS, columns):
        pieces += [repeat(key, count), values]
    pieces.append(repeat("}, ", count))
    return "[" + "".join(chain.from_iterable(zip(*pieces)))[:-2] + "]"
