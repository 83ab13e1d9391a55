"""``covalent._shared_files``: the modules of it Covalent's scripts and tests import."""
