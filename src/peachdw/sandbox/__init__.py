"""A stand-in for the Peach AI admin API: seeded data, faults and quirks over HTTP.

The `peachdw sandbox` command and the tests run the sync against it, since the real API
cannot be reached from the build machines.
"""

from peachdw.sandbox.data import Dataset
from peachdw.sandbox.faults import FAULT_KINDS, Fault, FaultPlan, parse_faults
from peachdw.sandbox.quirks import (
    PLAUSIBILITY_RULES,
    QuirkChanges,
    Quirks,
    Skew,
    broken_rules,
)
from peachdw.sandbox.server import SandboxServer

__all__ = [
    "FAULT_KINDS",
    "PLAUSIBILITY_RULES",
    "Dataset",
    "Fault",
    "FaultPlan",
    "QuirkChanges",
    "Quirks",
    "SandboxServer",
    "Skew",
    "broken_rules",
    "parse_faults",
]
