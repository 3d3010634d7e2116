"""A stand-in for the Peach AI admin API: seeded data and faults over loopback HTTP.

The `peachdw sandbox` command and the tests run the sync against it, since the real API
cannot be reached from the build machines.
"""

from peachdw.sandbox.data import Dataset
from peachdw.sandbox.faults import FAULT_KINDS, Fault, FaultPlan, parse_faults
from peachdw.sandbox.server import SandboxServer

__all__ = [
    "FAULT_KINDS",
    "Dataset",
    "Fault",
    "FaultPlan",
    "SandboxServer",
    "parse_faults",
]
