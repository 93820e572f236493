"""Developer tooling: the real services tests and local runs use."""
