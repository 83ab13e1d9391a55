"""User-facing errors. Each carries its exit code; the CLI prints it as one line, no traceback."""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The CLI's exit codes (stable; listed in README.md)."""

    SUCCESS = 0
    ERROR = 1  # a user mistake not covered below (bad argument value, bad config)
    USAGE = 2  # click's own: unknown option, missing argument
    RUN_FAILED = 3  # the run (or awaited run) ended FAILED
    RUN_CANCELLED = 4  # the run ended CANCELLED
    TIMEOUT = 5  # still running when --timeout passed
    NOT_FOUND = 6  # unknown or ambiguous run id / node id
    SCRIPT_ERROR = 7  # the user's script failed to load or to build its graph
    UNREADABLE = 8  # a run directory that is corrupted or from a newer format
    INTERRUPTED = 130  # 128 + SIGINT


class CovError(Exception):
    """Base of every error shown to a user as one line."""

    exit_code = ExitCode.ERROR

    def __init__(self, message: str, hint: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.hint = hint
        self.detail = detail  # e.g. the user's own traceback, shown above the one line

    def line(self) -> str:
        return f"{self}" + (f" ({self.hint})" if self.hint else "")


class UserError(CovError):
    """Bad input: a wrong argument, a missing file, a bad config."""


class DispatchError(CovError):
    """The workflow cannot be dispatched as written (unpicklable value, unknown executor)."""


class ScriptError(CovError):
    """The user's script failed to import or to build its graph."""

    exit_code = ExitCode.SCRIPT_ERROR


class RunNotFound(CovError, KeyError):
    """No run (or several) match the given id. Subclasses KeyError, as Covalent's
    MissingLatticeRecordError callers may catch."""

    exit_code = ExitCode.NOT_FOUND

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RunUnreadable(CovError):
    """A run directory that cannot be read (corrupt, truncated, newer format)."""

    exit_code = ExitCode.UNREADABLE


class NotSupportedByCov(CovError, NotImplementedError):
    """A Covalent feature cov does not have; the message names what to use instead."""


MissingLatticeRecordError = RunNotFound
