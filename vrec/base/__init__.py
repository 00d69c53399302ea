"""The small shared base every layer may use: typed errors, plain records, file helpers.

It imports nothing from the rest of vrec."""

__version__ = "0.1.0"
