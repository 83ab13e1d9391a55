"""``covalent.triggers`` (``DirTrigger``, ``TimeTrigger`` ...): not supported by cov.

Covalent's triggers need its long-lived triggers server, which cov does not have by design.
Each name exists so that scripts fail with one clear error naming what to do instead, not an
ImportError or AttributeError.
"""
from __future__ import annotations

from typing import Any

from covalent_cli.errors import NotSupportedByCov

TRIGGER_HINT = ("dispatch from cron, a systemd timer or a shell loop instead, e.g. "
                "`while inotifywait -e close_write DIR; do cov dispatch wf.py; done`")


def trigger_message(what: str) -> str:
    """The error's text: what was used, why it does not work, what to do instead."""
    return f"{what}: triggers are not supported by cov (there is no triggers server): " \
        f"{TRIGGER_HINT}"


class BaseTrigger:
    """Every trigger class: constructing one raises ``NotSupportedByCov``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotSupportedByCov(trigger_message(f"ct.triggers.{type(self).__name__}"))


class DirTrigger(BaseTrigger):
    """Covalent: dispatch on file-system events in a directory."""


class TimeTrigger(BaseTrigger):
    """Covalent: dispatch every N seconds."""


class SQLiteTrigger(BaseTrigger):
    """Covalent: dispatch on new rows of an SQLite table."""


class DatabaseTrigger(BaseTrigger):
    """Covalent: dispatch on new rows of a database table."""


def stop_triggers(*args: Any, **kwargs: Any) -> None:
    """Covalent's ``ct.stop_triggers``: there are no triggers to stop."""
    raise NotSupportedByCov(trigger_message("ct.stop_triggers()"))


__all__ = ["BaseTrigger", "DirTrigger", "TimeTrigger", "SQLiteTrigger", "DatabaseTrigger",
           "stop_triggers"]
