"""peachdw: the Peach AI campaign-analytics warehouse in one SQLite file."""

__version__ = "0.1.0"
