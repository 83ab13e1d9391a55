"""``covalent._shared_files.config``."""
from covalent_cli.compat import get_config, reload_config, set_config

__all__ = ["get_config", "set_config", "reload_config"]
