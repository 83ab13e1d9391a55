"""cov's version (pyproject.toml says the same); recorded in every manifest."""
VERSION = "0.1.0"
