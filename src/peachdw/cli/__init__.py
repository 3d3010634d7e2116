"""The `peachdw` command line.

The library raises; this package explains. A `PeachDWError` becomes one line on stderr with
a remedy and a non-zero exit (2 for configuration and usage, 1 for the rest); the stack
trace only with --verbose. Each module registers one family of commands on `cli`.
"""

from peachdw.cli import (
    debug,
    exports,
    hierarchy,
    metrics,
    reports,
    sandbox,
    warehouse,
)
from peachdw.cli.base import cli

#: Imported for the commands they register on `cli`.
COMMAND_MODULES = (warehouse, reports, exports, hierarchy, metrics, debug, sandbox)


def main() -> None:
    cli(prog_name="peachdw")


__all__ = ["cli", "main"]
