"""The ``care-episodes`` console script: one command group for every part of the project.

The write side defines the group; the read side (and the panel, later) add their commands here,
at the outermost layer, so that ``episodes`` never has to know about them.
"""

from __future__ import annotations

from episodes.cli import main
from projections.cli import COMMANDS as READ_SIDE_COMMANDS

for command in READ_SIDE_COMMANDS:
    main.add_command(command)

__all__ = ["main"]
