"""The ``cadvi`` command groups; each module registers its commands with ``register(subparsers)``."""
