"""Subcommands of `fasflow`. Each module defines register(subparsers) and sets `func`.

Imports of heavy libraries stay inside the command functions so `fasflow --help` is fast.
"""
