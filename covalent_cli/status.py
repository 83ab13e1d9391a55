"""Covalent's statuses: a ``Status`` compares equal to another with the same name and to the
plain string (``ct.status.COMPLETED == "COMPLETED"``)."""
from __future__ import annotations


class Status(str):
    """A run or node status; ``bool()`` is False only for NEW_OBJECT."""

    __slots__ = ()

    def __new__(cls, name: str) -> "Status":
        return super().__new__(cls, name)

    @property
    def STATUS(self) -> str:  # Covalent's attribute name
        return str(self)

    def __repr__(self) -> str:
        return f"Status({str.__str__(self)!r})"

    def __str__(self) -> str:
        return str.__str__(self)

    def __bool__(self) -> bool:
        return str.__str__(self) != "NEW_OBJECT"

    __hash__ = str.__hash__


class RESULT_STATUS:
    """The status names, as ``ct.status.<NAME>``."""

    NEW_OBJECT = Status("NEW_OBJECT")
    STARTING = Status("STARTING")
    PENDING_REUSE = Status("PENDING_REUSE")
    PENDING_REPLACEMENT = Status("PENDING_REPLACEMENT")
    COMPLETED = Status("COMPLETED")
    POSTPROCESSING = Status("POSTPROCESSING")
    PENDING_POSTPROCESSING = Status("PENDING_POSTPROCESSING")
    POSTPROCESSING_FAILED = Status("POSTPROCESSING_FAILED")
    FAILED = Status("FAILED")
    RUNNING = Status("RUNNING")
    CANCELLED = Status("CANCELLED")
    DISPATCHING = Status("DISPATCHING")
    DISPATCHING_SUBLATTICE = DISPATCHING


TERMINAL = frozenset({RESULT_STATUS.COMPLETED, RESULT_STATUS.FAILED, RESULT_STATUS.CANCELLED})
