"""Which failures the sandbox injects, and when.

A fault spec such as ``429:0.1,500:0.1,timeout:0.05`` gives each kind of failure a
rate: the chance that one request meets it. The plan draws once per request from its own
seeded generator, so the same sequence of requests meets the same faults on every run.

The kinds mirror the failures of the API contract ("Failures the client must survive"
and the row-level problems of "GET /admin/metrics"):

- ``429``: rate limited, with ``Retry-After``;
- ``500``: a server error, 500, 502, 503 or 504;
- ``timeout``: the answer comes only after the server's ``timeout_delay``;
- ``trickle``: headers at once, then the body one byte at a time;
- ``malformed``: a 200 with invalid JSON, a truncated body or no ``data``;
- ``duplicate``: a metrics row repeated with other values before its final one;
- ``badvalue``: metrics rows with a count that is text, negative, fractional or too big.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass

# Order matters: the plan walks the kinds in this order, so the same rates give the same
# faults whatever order the spec lists them in.
FAULT_KINDS: tuple[str, ...] = (
    "429",
    "500",
    "timeout",
    "trickle",
    "malformed",
    "duplicate",
    "badvalue",
)

_VALID = ", ".join(FAULT_KINDS)


@dataclass(frozen=True)
class Fault:
    """One drawn fault.

    `ordinal` counts the earlier faults of the same kind (0 for the first), so variants
    can take turns; `seed` drives the server's choices within the fault, such as which
    rows.
    """

    kind: str
    ordinal: int
    seed: int


def parse_faults(spec: str) -> dict[str, float]:
    """Read ``KIND:RATE[,KIND:RATE...]`` into ``{kind: rate}``; '' means no faults.

    >>> parse_faults("429:0.1, timeout:0.05")
    {'429': 0.1, 'timeout': 0.05}
    """
    rates: dict[str, float] = {}
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue

        kind, colon, rate_text = part.partition(":")
        kind = kind.strip().lower()
        if not colon:
            raise ValueError(f"fault {part!r} is not KIND:RATE; valid kinds: {_VALID}")
        if kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {kind!r} in {part!r}; valid kinds: {_VALID}"
            )
        if kind in rates:
            raise ValueError(
                f"fault kind {kind!r} is given twice in {spec!r}; valid kinds: {_VALID}"
            )
        try:
            rate = float(rate_text)
        except ValueError:
            rate = float("nan")
        # The comparison is false for NaN, so "nan" and non-numbers land here too.
        if not 0.0 <= rate <= 1.0:
            raise ValueError(
                f"fault rate {rate_text.strip()!r} in {part!r} is not a number "
                f"from 0 to 1; valid kinds: {_VALID}"
            )

        rates[kind] = rate

    _check_total(rates)
    return rates


def _check_total(rates: dict[str, float]) -> None:
    # One draw picks at most one fault per request: the rates split one interval.
    total = sum(rates.values())
    if total > 1.0 + 1e-9:
        listed = ",".join(f"{kind}:{rate:g}" for kind, rate in rates.items())
        raise ValueError(
            f"fault rates {listed!r} add up to {total:g}; "
            "one request meets at most one fault, so they must add up to 1 or less; "
            f"valid kinds: {_VALID}"
        )


class FaultPlan:
    """A seeded, thread-safe sequence of faults: one draw per request."""

    def __init__(self, rates: dict[str, float], seed: int = 42) -> None:
        unknown = sorted(set(rates) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; valid kinds: {_VALID}")
        bad = {kind: rate for kind, rate in rates.items() if not 0.0 <= rate <= 1.0}
        if bad:
            raise ValueError(f"fault rates {bad} are not numbers from 0 to 1")
        _check_total(rates)

        self.rates = {kind: rates[kind] for kind in FAULT_KINDS if rates.get(kind)}
        self.seed = seed
        self._rng = random.Random(seed)
        self._drawn: Counter[str] = Counter()
        self._lock = threading.Lock()

    def pick(self) -> Fault | None:
        """Draw the next request's fault with what the server needs to shape it."""
        with self._lock:
            # Two numbers per draw, fault or not, so one request's outcome never shifts
            # the next one's.
            roll = self._rng.random()
            seed = self._rng.getrandbits(32)

            threshold = 0.0
            for kind, rate in self.rates.items():
                threshold += rate
                if roll < threshold:
                    ordinal = self._drawn[kind]
                    self._drawn[kind] += 1
                    return Fault(kind, ordinal, seed)
        return None

    def draw(self) -> str | None:
        """The next request's fault kind, or None for a normal answer."""
        fault = self.pick()
        return fault.kind if fault else None
