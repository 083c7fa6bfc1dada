"""The ``cadvi`` command: thin wrappers over the Python calls of the other packages."""
