"""The ``cov`` command line."""
