"""Graph building: what an electron call does while a lattice body runs.

While ``Lattice.build_graph`` runs the workflow function, a ``Builder`` is active. Each electron
call adds a node (the electron first, then the nodes made for its arguments, as Covalent numbers
them) and returns a ``Proxy`` that stands for the future output. Lists, tuples and sets of
arguments become ``:electron_list:`` nodes, dicts ``:electron_dict:`` nodes, plain values
``:parameter:<value>`` nodes. Proxies support ``p[k]``, ``p.attr``, ``a, b = p`` and arithmetic,
each a small node of its own.
"""
from __future__ import annotations

import dis
import functools
import inspect
import json
import operator
import sys
from typing import Any, Callable, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

from covalent_cli.graph import Graph
from runner.manifest import (ATTRIBUTE, COLLECTION, ELECTRON, OPERATOR, PARAMETER, POSTPROCESS,
                             SUBLATTICE)

_ACTIVE: List["Builder"] = []
PARAM_NAME_LIMIT = 200  # a parameter node's name shows its value's str(), cut to this length


def current_builder() -> Optional["Builder"]:
    """The builder of the lattice whose body is running, if any."""
    return _ACTIVE[-1] if _ACTIVE else None


class Builder:
    """Records electron calls into a ``Graph``."""

    def __init__(self, lattice: Any, replacements: Optional[Dict[str, Any]] = None) -> None:
        self.lattice = lattice
        self.graph = Graph()
        self.replacements = replacements or {}

    def __enter__(self) -> "Builder":
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _ACTIVE.remove(self)

    # -- electron calls ------------------------------------------------------------------
    def call_electron(self, electron: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> "Proxy":
        function = electron.function
        name = getattr(function, "__name__", "task")
        replacement = self.replacements.get(name)
        if replacement is not None:
            electron = getattr(replacement, "electron_object", replacement)
            function = electron.function
        if hasattr(function, "build_graph"):  # an electron wrapping a lattice: a sublattice
            return self._call_sublattice(electron, function, args, kwargs)
        skip = electron.retval_keywords()
        kwargs = {k: v for k, v in kwargs.items() if k not in skip}
        bound = named_params(function, args, kwargs, skip)
        node = self.graph.add(name, ELECTRON, function=function, owner=electron,
                              executor=electron.executor, hooks=electron.hooks)
        for param, value, kind, index in bound:
            self.connect(value, node.id, param, kind, index)
        return Proxy(self, node.id, name)

    def _call_sublattice(self, electron: Any, lattice: Any, args: Tuple[Any, ...],
                         kwargs: Dict[str, Any]) -> "Proxy":
        named_params(lattice.workflow_function, args, kwargs, ())  # arity errors now, not later
        # Its function (dispatch.build_sublattice, which creates the child run) is given when
        # the run is packed: graph building stays below dispatch.
        node = self.graph.add(f":sublattice:{lattice.__name__}", SUBLATTICE,
                              executor=self.lattice.workflow_executor)
        metadata = json.dumps(self.lattice.inheritable_metadata())
        self.connect(lattice, node.id, "sub_lattice", "arg", 0)
        self.connect(metadata, node.id, "metadata", "arg", 1)
        for i, value in enumerate(args):
            self.connect(value, node.id, f"arg[{i}]", "arg", i + 2)
        for key, value in kwargs.items():
            self.connect(value, node.id, key, "kwarg", None)
        return Proxy(self, node.id, node.name)

    def call_builtin(self, name: str, kind: str, function: Callable[..., Any],
                     args: Sequence[Any] = (), kwargs: Optional[Dict[str, Any]] = None) -> "Proxy":
        """A node running one of our small helpers on the lattice's workflow executor."""
        node = self.graph.add(name, kind, function=function, owner=function,
                              executor=self.lattice.workflow_executor)
        for i, value in enumerate(args):
            self.connect(value, node.id, f"arg[{i}]", "arg", i)
        for key, value in (kwargs or {}).items():
            self.connect(value, node.id, key, "kwarg", None)
        return Proxy(self, node.id, name)

    def connect(self, value: Any, child: int, param: str, kind: str, index: Optional[int]) -> None:
        """Make ``value`` an input of ``child``: an edge from a node standing for it."""
        if isinstance(value, Proxy):
            parent = value.node_id
        elif isinstance(value, (list, tuple, set, frozenset)):
            parent = self.call_builtin(":electron_list:", COLLECTION, make_list, list(value)).node_id
        elif isinstance(value, dict) and all(isinstance(k, str) for k in value):
            parent = self.call_builtin(":electron_dict:", COLLECTION, make_dict, (), value).node_id
        elif isinstance(value, dict) and contains_proxy(value):
            raise TypeError(f"a dict holding task results needs string keys (argument {param!r})")
        else:
            text = str(value)
            if len(text) > PARAM_NAME_LIMIT:
                text = text[:PARAM_NAME_LIMIT] + "..."
            parent = self.graph.add(f":parameter:{text}", PARAMETER, value=value).id
        self.graph.connect(parent, child, param, kind, index)

    def wait(self, child: "Proxy", parents: Any) -> None:
        items = parents if isinstance(parents, (list, tuple, set)) else [parents]
        for parent in items:
            if isinstance(parent, Proxy):
                self.graph.wait(child.node_id, parent.node_id)

    def finish(self, retval: Any) -> Graph:
        """Add the ``:postprocess:reconstruct`` node that turns the body's return value into
        the lattice's result, after every other task."""
        earlier = [n.id for n in self.graph.nodes if not n.is_parameter]
        node = self.graph.add(":postprocess:reconstruct", POSTPROCESS, function=reconstruct,
                              owner=reconstruct, executor=self.lattice.workflow_executor)
        self.connect(retval, node.id, "retval", "arg", 0)
        direct = {e.parent for e in node.parents}
        node.waits.extend(p for p in earlier if p not in direct)
        self.graph.output_node = node.id
        return self.graph


class _CallCheck(NamedTuple):
    """How calls of one function are checked: its signature (without the skipped keywords),
    its positional names, and, for a plain signature (positional-or-keyword parameters only),
    what a valid call must give, so that most calls are checked without ``Signature.bind``."""

    signature: inspect.Signature
    positional: List[str]
    plain: bool
    names: FrozenSet[str]
    required: FrozenSet[str]
    least_args: int  # a call with no keywords needs at least this many positional arguments


@functools.lru_cache(maxsize=4096)
def _call_signature(function: Callable[..., Any], skip: Tuple[str, ...]) -> Optional[_CallCheck]:
    """How calls of ``function`` are checked; None if it has no signature. Cached:
    ``inspect.signature`` cost ~0.3 ms per task call while the graph was built (cProfile of W3's
    client: 0.46 s of its 1,001 calls)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    params = [p for p in signature.parameters.values() if p.name not in skip]
    ordered = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    positional = [p.name for p in ordered]
    plain = len(ordered) == len(params) and all(p.kind == p.POSITIONAL_OR_KEYWORD for p in params)
    # Counted among the positional parameters only: *args, **kwargs and keyword-only ones
    # make the signature not plain, and such calls are checked by ``Signature.bind``.
    required = [i for i, p in enumerate(ordered) if p.default is p.empty]
    return _CallCheck(signature.replace(parameters=params), positional, plain,
                      frozenset(positional), frozenset(positional[i] for i in required),
                      required[-1] + 1 if required else 0)


def _plain_call_fits(check: _CallCheck, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
    """Whether a call binds to a plain signature (``Signature.bind`` cost ~40 us a call,
    2.2 s of a 100,000-node dispatch under cProfile; it still words the errors)."""
    if len(args) > len(check.positional):
        return False
    if not kwargs:
        return len(args) >= check.least_args
    given = check.positional[:len(args)]
    return (all(k in check.names and k not in given for k in kwargs) and
            all(name in kwargs or name in given for name in check.required))


def named_params(function: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
                 skip: Sequence[str]) -> List[Tuple[str, Any, str, Optional[int]]]:
    """Each argument as (parameter name, value, "arg"/"kwarg", position). Wrong arity raises
    ``ValueError`` now, at build time, as Covalent does."""
    try:
        checked = _call_signature(function, tuple(skip))
    except TypeError:  # an unhashable callable: not cached
        checked = _call_signature.__wrapped__(function, tuple(skip))
    if checked is not None:
        positional = checked.positional
        if not (checked.plain and _plain_call_fits(checked, args, kwargs)):
            try:
                checked.signature.bind(*args, **kwargs)
            except TypeError as exc:
                name = getattr(function, "__name__", "task")
                raise ValueError(f"wrong arguments for {name}(): {exc}") from None
    else:
        positional = []
    bound: List[Tuple[str, Any, str, Optional[int]]] = []
    for i, value in enumerate(args):
        name = positional[i] if i < len(positional) else f"arg[{i}]"
        bound.append((name, value, "arg", i))
    for key, value in kwargs.items():
        bound.append((key, value, "kwarg", None))
    return bound


def contains_proxy(value: Any) -> bool:
    if isinstance(value, Proxy):
        return True
    if isinstance(value, dict):
        return any(contains_proxy(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(contains_proxy(v) for v in value)
    return False


# -- the helpers small nodes run (pickled by reference: they run on the local backend) ---------
def make_list(*items: Any) -> List[Any]:
    return list(items)


def make_dict(**items: Any) -> Dict[str, Any]:
    return dict(items)


def get_item(obj: Any, key: Any) -> Any:
    return obj[key]


def get_attr(obj: Any, attr: str) -> Any:
    return getattr(obj, attr)


def reconstruct(retval: Any) -> Any:
    return retval


OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
             "**": operator.pow}


def _label(value: Any) -> str:
    return value._name if isinstance(value, Proxy) else str(value)


class Proxy:
    """Stands for a node's future output inside a lattice body (Covalent's bound electron)."""

    __slots__ = ("_builder", "node_id", "_name")
    _builder: Builder  # set with object.__setattr__: Proxy.__setattr__ refuses (below)
    node_id: int
    _name: str

    def __init__(self, builder: Builder, node_id: int, name: str) -> None:
        object.__setattr__(self, "_builder", builder)
        object.__setattr__(self, "node_id", node_id)
        object.__setattr__(self, "_name", name)

    def __repr__(self) -> str:
        return f"<task output {self._name}({self.node_id})>"

    def __getitem__(self, key: Any) -> "Proxy":
        return self._builder.call_builtin(f":{self._name}.__getitem__", ATTRIBUTE, get_item,
                                          (self, key))

    def __getattr__(self, attr: str) -> "Proxy":
        if attr.startswith("__") or attr == "keys":
            raise AttributeError(attr)
        return self._builder.call_builtin(f":{self._name}.__getattr__", ATTRIBUTE, get_attr,
                                          (self, attr))

    def __iter__(self):
        """``a, b = task()``: as many nodes as the caller unpacks (read from its bytecode)."""
        count = _unpack_count(sys._getframe(1))
        return iter([self._builder.call_builtin(f":{self._name}()[{i}]", ATTRIBUTE, get_item,
                                                (self, i)) for i in range(count)])

    def _op(self, symbol: str, other: Any, reflected: bool = False) -> "Proxy":
        a, b = (other, self) if reflected else (self, other)
        return self._builder.call_builtin(f"{_label(a)}_{symbol}_{_label(b)}", OPERATOR,
                                          OPERATORS[symbol], (a, b))

    def __add__(self, o: Any) -> "Proxy": return self._op("+", o)
    def __radd__(self, o: Any) -> "Proxy": return self._op("+", o, True)
    def __sub__(self, o: Any) -> "Proxy": return self._op("-", o)
    def __rsub__(self, o: Any) -> "Proxy": return self._op("-", o, True)
    def __mul__(self, o: Any) -> "Proxy": return self._op("*", o)
    def __rmul__(self, o: Any) -> "Proxy": return self._op("*", o, True)
    def __truediv__(self, o: Any) -> "Proxy": return self._op("/", o)
    def __rtruediv__(self, o: Any) -> "Proxy": return self._op("/", o, True)
    def __pow__(self, o: Any) -> "Proxy": return self._op("**", o)
    def __rpow__(self, o: Any) -> "Proxy": return self._op("**", o, True)

    # Covalent returns dummy values for these (they cannot see the future output).
    def __int__(self) -> int: return 0
    def __float__(self) -> float: return 0.0
    def __complex__(self) -> complex: return 0j

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a task's output cannot be changed inside the lattice body")

    def __reduce__(self):
        raise TypeError(f"{self!r} is a placeholder for a task's output; it can be passed to "
                        "another electron, but not pickled or stored outside the lattice")


def _unpack_count(frame: Any) -> int:
    code, offset = frame.f_code, frame.f_lasti
    for instruction in dis.get_instructions(code):
        if instruction.offset == offset:
            if instruction.opname == "UNPACK_SEQUENCE":
                return int(instruction.arg or 0)
            if instruction.opname == "UNPACK_EX":  # a, *rest = task(): only the fixed targets
                return int(instruction.arg or 0) & 0xFF
            return 0
    return 0
