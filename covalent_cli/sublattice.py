"""Where runs created before ``build_sublattice`` moved to ``covalent_cli.dispatch`` find it:
their ``tasks.pkl`` names it by this module (cloudpickle pickles our functions by reference)."""
from covalent_cli.dispatch import build_sublattice  # noqa: F401
