"""``covalent._workflow``: the SDK's classes under Covalent's module paths."""
