"""A PyYAML loader with YAML 1.2 core-schema scalars, for lattice arguments (``-a``,
``--args-file``).

PyYAML resolves plain scalars by YAML 1.1, which surprises shell users: ``NO``, ``on`` and ``y``
become booleans, ``1_000`` and ``0755`` integers, ``2026-01-31`` a date, ``12:30`` the number
750. YAML 1.2's core schema keeps only ``true``/``false``, ``null``/``~``, decimal, ``0o`` and
``0x`` integers and decimal floats (``1e3``, ``.inf``, ``.nan``); everything else is text.

One deliberate difference from the core schema: an integer written with leading zeros (``007``,
an id, a zip code) stays text, as it would lose its digits as a number.
"""
from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# Decimal without leading zeros, octal 0o, hexadecimal 0x (the core schema's int).
_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|(?:0|[1-9][0-9]*)(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


class Core12Resolver(BaseResolver):
    """Implicit tags of YAML 1.2's core schema (BaseResolver has none of 1.1's)."""

    yaml_implicit_resolvers: dict = {}


Core12Resolver.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])
Core12Resolver.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
Core12Resolver.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
Core12Resolver.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+.0123456789"))


class Core12Constructor(SafeConstructor):
    """SafeConstructor, with 1.2's integers (``0o17`` is octal; PyYAML reads ``0o`` as 1.1's
    ``0`` prefix and fails) and no 1.1 sexagesimal or ``_`` separators."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value = str(self.construct_scalar(node))
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = str(self.construct_scalar(node)).lower()
        sign = -1.0 if value.startswith("-") else 1.0
        bare = value.lstrip("-+")
        if bare == ".inf":
            return sign * float("inf")
        if bare == ".nan":
            return float("nan")
        return float(value)


Core12Constructor.add_constructor("tag:yaml.org,2002:int", Core12Constructor.construct_yaml_int)
Core12Constructor.add_constructor("tag:yaml.org,2002:float",
                                  Core12Constructor.construct_yaml_float)


class Core12Loader(Reader, Scanner, Parser, Composer, Core12Constructor, Core12Resolver):
    """``yaml.SafeLoader`` with YAML 1.2 core-schema scalars (see the module docstring)."""

    def __init__(self, stream: Any) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        Core12Constructor.__init__(self)
        Core12Resolver.__init__(self)
