"""``covalent._dispatcher_plugins``: the dispatcher Covalent's scripts and tests call."""
from covalent_cli._dispatcher_plugins.local import LocalDispatcher

__all__ = ["LocalDispatcher"]
