"""Literal text that every match of a regular expression must contain.

Mapping 10,000 campaigns against hundreds of rules cannot afford a regex search per rule
per campaign (each search with a time limit costs a few microseconds). Most rules name
words: `(?i)(?<![a-z0-9])(native)(?![a-z0-9])` can only match a name that contains
"native". This module finds such words, so a rule whose words are all absent from a
name is skipped with a plain substring test. It only ever answers "might match": when it
cannot tell (a pattern it does not understand, or one with no required text) it gives
None and the rule is always searched.
"""

from __future__ import annotations

from typing import Any

try:  # Python 3.11+
    from re import _constants as sre
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - older layouts
    import sre_constants as sre  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

#: Shorter factors than this are not used as a filter.
MIN_LENGTH = 1


def required_literals(pattern: str) -> frozenset[str] | None:
    """A set of casefolded strings, one of which every match contains; None if unknown.

    Compare against the casefolded text: casefolding works character by character, so a
    text that contains a literal still contains it after both are folded.
    """
    try:
        parsed = sre_parse.parse(pattern)
    except Exception:  # the regex engine accepts syntax `re` does not: no filter
        return None
    found = _sequence(list(parsed))
    if not found or any(len(text) < MIN_LENGTH for text in found):
        return None
    return frozenset(text.casefold() for text in found)


def _sequence(items: list[tuple[Any, Any]]) -> set[str] | None:
    """The best required set of a concatenation: its longest literal run, or the best
    required set of one of its parts (all parts must match)."""
    candidates: list[set[str]] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            candidates.append({"".join(run)})
            run.clear()

    for op, value in items:
        if op is sre.LITERAL:
            run.append(chr(value))
            continue
        if op is sre.BRANCH and run:
            # The parser moves a prefix shared by all alternatives out in front
            # ("tj|traffic" becomes "t" then "j|raffic"): join it back to each one.
            candidates.append({"".join(run) + _leading(branch) for branch in value[1]})
        close_run()
        part = _item(op, value)
        if part:
            candidates.append(part)
    close_run()

    if not candidates:
        return None
    # The most selective set: the one whose shortest member is longest.
    return max(candidates, key=lambda options: min(len(text) for text in options))


def _leading(items: Any) -> str:
    """The literal characters an alternative starts with."""
    text = []
    for op, value in items:
        if op is not sre.LITERAL:
            break
        text.append(chr(value))
    return "".join(text)


def _item(op: Any, value: Any) -> set[str] | None:
    if op is sre.SUBPATTERN:
        _group, add_flags, _del_flags, content = value
        return _sequence(list(content)) if not add_flags else None
    if op is sre.BRANCH:
        _unused, branches = value
        options: set[str] = set()
        for branch in branches:
            found = _sequence(list(branch))
            if not found:
                return None
            options |= found
        return options
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)):
        low, _high, content = value
        return _sequence(list(content)) if low >= 1 else None
    return None
