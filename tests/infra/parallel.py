"""Which tests may run at the same time under pytest-xdist (``-n N --dist loadgroup``).

With ``--dist loadgroup`` xdist sends the tests of one ``xdist_group`` to one worker, in their
collection order, and spreads every other test on its own. This plugin gives each test its
group, so that a parallel run keeps what a serial run guarantees:

* ``slurm``: every test that uses the ``slurm_cluster`` fixture. The session has one cluster
  (the fixture is per worker, and a second cluster on the same node would compete for its
  CPUs), so these run one after another on one worker, in the order they are written in
  (``test_time_limit_...`` relies on its module fixture having started before the others).
* the name of an expensive session fixture in ``SHARED_SESSION_FIXTURES``: its users run on
  one worker, so it is built once, not once per worker.
* the test's module, for a test that uses a module- or class-scoped fixture: the fixture is
  built once, and the module's tests see it in the state a serial run leaves it in. A module
  whose module fixtures are cheap and only read sets ``SPREAD_OVER_WORKERS = True``: its tests
  spread, and each worker that runs one builds the fixtures once.

A test already marked ``xdist_group`` keeps its mark. Without xdist the marks do nothing.
xdist passes a test's group to its scheduler as a suffix of the test's node id; if that stops
working (pytest 9.2 with pytest-xdist 3.8 drops the suffix without a word), every worker stops
the run with the reason rather than run grouped tests side by side.
"""
from __future__ import annotations

from typing import List

import pytest

SHARED_SESSION_FIXTURES = ("installed_envs",)
"""Session fixtures that take long to build (two venvs with pip installs of the project)."""

_SHARED_SCOPES = ("module", "class", "package")


def group_of(item: pytest.Item) -> str:
    """The ``xdist_group`` name for ``item``, or ``""`` if it may run on any worker."""
    names = getattr(item, "fixturenames", ())
    if "slurm_cluster" in names:
        return "slurm"
    for fixture in SHARED_SESSION_FIXTURES:
        if fixture in names:
            return fixture
    # the fixtures the test asks for, directly or through other fixtures, with their scope
    # (pytest keeps them in the item's fixture info; there is no public accessor)
    if getattr(getattr(item, "module", None), "SPREAD_OVER_WORKERS", False):
        return ""
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        if defs and defs[-1].scope in _SHARED_SCOPES:
            return item.nodeid.split("::", 1)[0]
    return ""


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (it appends them to node ids)
def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        group = group_of(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


_GROUPS_LOST = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.getoption("loadgroup", default=False):  # set on xdist workers only
        return
    for item in session.items:
        if item.get_closest_marker("xdist_group") is not None:
            if "@" not in item.nodeid:
                session.config.stash[_GROUPS_LOST] = (
                    "--dist loadgroup: the xdist_group marks do not reach xdist's scheduler with "
                    "this pytest (see the pytest pin in pyproject.toml), so grouped tests would "
                    "run side by side")
            return


def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = item.config.stash.get(_GROUPS_LOST, "")
    if reason and item.get_closest_marker("xdist_group") is not None:
        pytest.fail(reason, pytrace=False)
