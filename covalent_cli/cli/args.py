"""Lattice arguments from the command line: ``-a NAME=VALUE`` pairs and ``--args-file``,
parsed as YAML 1.2 (``yaml12``; shared by ``cov dispatch`` and ``cov redispatch``)."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import yaml

from covalent_cli.errors import UserError

MAX_ALIAS_EXPANSION = 100_000  # values YAML aliases may add to an argument once copied out


def load_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 scalars (``Core12Loader``), refusing a document
    whose aliases add more than ``MAX_ALIAS_EXPANSION`` values once expanded (a "billion
    laughs" bomb: tiny as text, exponential once repr'd, as the manifest does). Big documents
    without aliases pass."""
    from covalent_cli.cli.yaml12 import Core12Loader  # (only for -a and --args-file)

    loader = Core12Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded, distinct = _expanded_size(node)
        if expanded - distinct > MAX_ALIAS_EXPANSION:
            raise UserError(f"{what}: its YAML aliases expand past {MAX_ALIAS_EXPANSION:,} "
                            "values (or loop)", "write the values out, or have the lattice "
                            "read them from a file")
        return loader.construct_document(node)
    except RecursionError:
        raise UserError(f"{what} is nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> Tuple[float, int]:
    """Values in the document once every alias is copied out (an alias loop: infinite), and
    distinct values. Linear in the composed graph: each node's size is computed once."""
    sizes: Dict[int, float] = {}
    stack: List[Tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            children = _children(node)
            sizes[id(node)] = 1 + sum(sizes.get(id(c), math.inf) for c in children)
            continue
        if id(node) in sizes:
            continue
        sizes[id(node)] = math.inf  # on the stack: met again before it is done, it is a loop
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)], len(sizes)


def _children(node: yaml.Node) -> List[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_args(pairs: Tuple[str, ...], args_file: Optional[str]) -> Tuple[List[Any], Dict[str, Any]]:
    args: List[Any] = []
    kwargs: Dict[str, Any] = {}
    if args_file:
        try:
            with open(args_file, encoding="utf-8") as f:
                data = load_yaml(f.read(), f"--args-file {args_file}") or {}
        except OSError as exc:
            raise UserError(f"cannot read --args-file {args_file}: {exc.strerror}") from None
        except yaml.YAMLError:
            raise UserError(f"--args-file {args_file} is not valid YAML or JSON") from None
        if isinstance(data, list):
            args = data
        elif isinstance(data, dict):
            args = list(data.pop("args", []) or []) if isinstance(data.get("args"), list) else []
            kwargs = dict(data.pop("kwargs", data) or {})
        else:
            raise UserError(f"--args-file {args_file} must hold a mapping of names to values")
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"bad --arg {pair!r}: expected NAME=VALUE", "e.g. -a n=10")
        kwargs[name.strip()] = _arg_value(name.strip(), value)
    return args, kwargs


# How a YAML list, mapping or quoted string starts: such a value is meant as YAML, and a
# malformed one (``[1,2``) is the user's mistake, not text.
_STRUCTURED = ("[", "{", '"', "'")


def _arg_value(name: str, value: str) -> Any:
    """One ``-a`` value: YAML 1.2; an empty one is ""; plain text YAML cannot read
    (``*.txt``, ``@home``) is that text; a malformed list, mapping or quoted string is an
    error naming the argument."""
    if not value.strip():
        return ""
    try:
        return load_yaml(value, f"-a {name}")
    except yaml.YAMLError as exc:
        if not value.lstrip().startswith(_STRUCTURED):
            return value
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"-a {name}={value} is not valid YAML: {problem}",
                        f"close the brackets or quotes, or pass text quoted: "
                        f"-a '{name}=\"...\"'") from None

