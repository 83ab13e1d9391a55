"""Dependencies and hooks: ``DepsBash``, ``DepsPip``, ``DepsCall`` (``call_before``/``call_after``).

At run time, in the task's own process and host: bash deps, then pip deps, then call_before,
the task, call_after (Covalent's ``wrapper_fn`` order). At dispatch they become plain data
(``hooks_to_plain``) so that the worker, which may run where cov is not installed, needs nothing
but cloudpickle to use them.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union


class Deps:
    """Base of the deps classes (Covalent's ``covalent._workflow.deps.Deps``)."""

    def to_plain(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_dict(self) -> Dict[str, Any]:
        """Covalent's serialized form: ``{"type", "short_name", "attributes"}``; callables and
        their arguments are TransportableObject dicts."""
        from covalent_cli.transport import TransportableObject

        attributes = {k: (TransportableObject(v).to_dict() if k in _ENCODED else v)
                      for k, v in self.__dict__.items() if not k.startswith("_")}
        return {"type": type(self).__name__, "short_name": type(self).__module__,
                "attributes": attributes}

    def from_dict(self, object_dict: Optional[Dict[str, Any]]) -> "Deps":
        """Fill this object from ``to_dict()``'s form and return it (Covalent's spelling:
        ``ct.DepsBash().from_dict(d)``). An empty dict leaves it as it is."""
        from covalent_cli.transport import TransportableObject

        if not object_dict:
            return self
        for key, value in dict(object_dict.get("attributes") or {}).items():
            if isinstance(value, dict) and value.get("type") == "TransportableObject":
                value = TransportableObject.from_dict(value).get_deserialized()
            setattr(self, key, value)
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Deps) and type(self) is type(other) and \
            self.to_plain() == other.to_plain()

    __hash__ = object.__hash__


_ENCODED = ("func", "args", "kwargs")  # DepsCall attributes kept as TransportableObjects


class DepsBash(Deps):
    """Shell commands run before the task; a non-zero exit fails the task."""

    def __init__(self, commands: Union[str, Sequence[str]] = ()) -> None:
        self.commands: List[str] = [commands] if isinstance(commands, str) else list(commands)

    def to_plain(self) -> List[str]:
        return list(self.commands)

    def __repr__(self) -> str:
        return f"DepsBash({self.commands!r})"


class DepsPip(Deps):
    """Packages pip-installs before the task. ``reqs_path`` is read now, on the client."""

    def __init__(self, packages: Union[str, Sequence[str]] = (), reqs_path: str = "") -> None:
        self.packages: List[str] = [packages] if isinstance(packages, str) else list(packages)
        self.reqs_path = reqs_path
        self.requirements = ""
        if reqs_path:
            with open(os.path.expanduser(reqs_path), encoding="utf-8") as f:
                self.requirements = f.read()

    def to_plain(self) -> Dict[str, Any]:
        return {"packages": list(self.packages), "requirements": self.requirements}

    def __repr__(self) -> str:
        return f"DepsPip(packages={self.packages!r}, reqs_path={self.reqs_path!r})"


class DepsCall(Deps):
    """``func(*args, **kwargs)`` called before or after the task. With ``retval_keyword``
    (call_before only) the return value is passed to the task as that keyword argument."""

    def __init__(self, func: Optional[Callable[..., Any]] = None, args: Sequence[Any] = (),
                 kwargs: Optional[Dict[str, Any]] = None, *, retval_keyword: str = "") -> None:
        if func is not None and not callable(func):
            raise TypeError(f"DepsCall needs a callable, got {type(func).__name__}")
        self.func: Callable[..., Any] = func or _noop  # none: ``DepsCall().from_dict(d)``
        self.args = list(args)
        self.kwargs = dict(kwargs or {})
        self.retval_keyword = retval_keyword

    def to_plain(self) -> Dict[str, Any]:
        return {"fn": self.func, "args": self.args, "kwargs": self.kwargs,
                "retval_keyword": self.retval_keyword}

    def __repr__(self) -> str:
        name = getattr(self.func, "__name__", repr(self.func))
        return f"DepsCall({name}, retval_keyword={self.retval_keyword!r})"


class DepsModule(DepsCall):
    """A local module shipped by value and imported before the task."""

    def __init__(self, module: Any) -> None:
        import importlib

        import cloudpickle

        mod = importlib.import_module(module) if isinstance(module, str) else module
        cloudpickle.register_pickle_by_value(mod)
        self.module = mod
        super().__init__(_noop)

    def __repr__(self) -> str:
        return f"DepsModule({self.module.__name__})"


def _noop() -> None:
    return None


def as_bash(value: Any) -> Optional[DepsBash]:
    """Normalize a ``deps_bash`` argument (DepsBash, str, or list of str)."""
    if value is None or isinstance(value, DepsBash):
        return value
    if isinstance(value, (str, list, tuple)):
        return DepsBash(value)
    raise TypeError(f"deps_bash must be a DepsBash, a string or a list of strings, "
                    f"not {type(value).__name__}")


def as_pip(value: Any) -> Optional[DepsPip]:
    """Normalize a ``deps_pip`` argument (DepsPip or list of package names)."""
    if value is None or isinstance(value, DepsPip):
        return value
    if isinstance(value, (str, list, tuple)):
        return DepsPip(packages=value)
    raise TypeError(f"deps_pip must be a DepsPip or a list of package names, not {type(value).__name__}")


Hook = Union["DepsCall", DepsBash, DepsPip]


def as_calls(value: Any, what: str) -> Optional[List[Hook]]:
    """Normalize ``call_before``/``call_after``: a DepsCall, DepsBash or DepsPip (run in the
    list's order, as Covalent does), a plain callable, or a list of them."""
    if value is None:
        return None
    items: Iterable[Any] = value if isinstance(value, (list, tuple)) else [value]
    calls: List[Hook] = []
    for item in items:
        if isinstance(item, (DepsCall, DepsBash, DepsPip)):
            calls.append(item)
        elif callable(item):
            calls.append(DepsCall(item))
        else:
            raise TypeError(f"{what} takes DepsCall, DepsBash or DepsPip objects, "
                            f"got {type(item).__name__}")
    return calls


def _call_to_plain(call: Hook) -> Dict[str, Any]:
    """A hook list entry for the worker: a call, or ``{"bash": [...]}`` / ``{"pip": {...}}``."""
    if isinstance(call, DepsBash):
        return {"bash": call.to_plain()}
    if isinstance(call, DepsPip):
        return {"pip": call.to_plain()}
    return call.to_plain()


def hooks_metadata(plain: Dict[str, Any]) -> Dict[str, Any]:
    """Covalent's node ``metadata["hooks"]`` from the worker's plain hooks:
    ``{"deps": {"bash": ..., "pip": ...}, "call_before": [...], "call_after": [...]}``, each
    a ``to_dict()`` form (so ``ct.DepsBash().from_dict(...)`` reads it back)."""
    def from_plain(entry: Dict[str, Any]) -> Dict[str, Any]:
        if "bash" in entry and "fn" not in entry:
            return DepsBash(entry["bash"]).to_dict()
        if "pip" in entry and "fn" not in entry:
            return _pip_from_plain(entry["pip"]).to_dict()
        return DepsCall(entry["fn"], entry.get("args", ()), entry.get("kwargs"),
                        retval_keyword=entry.get("retval_keyword", "")).to_dict()

    out: Dict[str, Any] = {}
    deps: Dict[str, Any] = {}
    if plain.get("bash"):
        deps["bash"] = DepsBash(plain["bash"]).to_dict()
    if plain.get("pip"):
        deps["pip"] = _pip_from_plain(plain["pip"]).to_dict()
    if deps:
        out["deps"] = deps
    for key in ("call_before", "call_after"):
        if plain.get(key):
            out[key] = [from_plain(entry) for entry in plain[key]]
    return out


def _pip_from_plain(plain: Dict[str, Any]) -> DepsPip:
    pip = DepsPip(packages=plain.get("packages") or [])
    pip.requirements = plain.get("requirements") or ""
    return pip


def hooks_to_plain(bash: Optional[DepsBash], pip: Optional[DepsPip],
                   before: Optional[List[Hook]], after: Optional[List[Hook]]) -> Dict[str, Any]:
    """The worker's view of the hooks: lists and dicts of by-value callables."""
    plain: Dict[str, Any] = {}
    if bash and bash.commands:
        plain["bash"] = bash.to_plain()
    if pip and (pip.packages or pip.requirements):
        plain["pip"] = pip.to_plain()
    if before:
        plain["call_before"] = [_call_to_plain(c) for c in before]
    if after:
        plain["call_after"] = [_call_to_plain(c) for c in after]
    return plain
