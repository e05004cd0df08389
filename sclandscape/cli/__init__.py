"""The command line: ``sclandscape COMMAND ...`` (``commands``: the parser and one handler per command)."""

from sclandscape.cli.commands import main as main

__all__ = ["main"]
