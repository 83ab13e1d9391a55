"""The build-time arity check of a task call (``build.named_params``) refuses exactly the calls
``Signature.bind`` refuses, for every kind of signature: the fast path for plain signatures
must not leak into ``*args``, ``**kwargs``, keyword-only or positional-only ones."""
from __future__ import annotations

import inspect

import pytest

from covalent_cli.build import named_params


def star_args(*args): pass
def mixed(x, *args, k, **kw): pass
def keyword_only(x, y=1, *, z): pass
def positional_only(x, /, y): pass
def plain(x, y=2): pass
def star_kwargs(**kw): pass
def nothing(): pass


@pytest.mark.parametrize("function", [star_args, mixed, keyword_only, positional_only, plain,
                                      star_kwargs, nothing])
def test_build_time_check_agrees_with_signature_bind(function):
    signature = inspect.signature(function)
    for count in range(4):
        for keys in [(), ("x",), ("y",), ("k",), ("z",), ("x", "y"), ("q",)]:
            args, kwargs = tuple(range(count)), {key: 0 for key in keys}
            try:
                signature.bind(*args, **kwargs)
                binds = True
            except TypeError:
                binds = False
            try:
                named_params(function, args, kwargs, ())
                accepted = True
            except ValueError as exc:
                accepted = False
                assert function.__name__ in str(exc)
            assert accepted == binds, (function.__name__, args, kwargs)
