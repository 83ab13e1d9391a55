"""``covalent._dispatcher_plugins.local.LocalDispatcher``: cov's dispatch under Covalent's name."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from covalent_cli.dispatch import dispatch as _dispatch
from covalent_cli.dispatch import dispatch_sync as _dispatch_sync
from covalent_cli.redispatch import redispatch as _redispatch


class LocalDispatcher:
    """Covalent's dispatcher class; ``dispatcher_addr`` is accepted and unused (no server)."""

    @staticmethod
    def dispatch(orig_lattice: Any, dispatcher_addr: Optional[str] = None, *,
                 disable_run: bool = False) -> Callable[..., str]:
        return _dispatch(orig_lattice, dispatcher_addr, disable_run=disable_run)

    @staticmethod
    def dispatch_sync(lattice: Any, dispatcher_addr: Optional[str] = None) -> Callable[..., Any]:
        return _dispatch_sync(lattice, dispatcher_addr)

    @staticmethod
    def redispatch(dispatch_id: str, dispatcher_addr: Optional[str] = None,
                   replace_electrons: Optional[Dict[str, Any]] = None,
                   reuse_previous_results: bool = False, **_: Any) -> Callable[..., str]:
        return _redispatch(dispatch_id, replace_electrons=replace_electrons,
                           reuse_previous_results=reuse_previous_results)
