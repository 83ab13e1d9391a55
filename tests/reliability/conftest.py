"""Fixtures of the reliability tests (shared with tests/fault)."""
from tests.fault.conftest import home  # noqa: F401  (the fixture)
