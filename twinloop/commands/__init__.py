"""Sub-commands of the ``twinloop`` CLI: each module has ``register(subparsers)``; the parser sets ``handler``."""
