"""`did you mean: X, Y?` for a name the catalogs do not hold. Pure: no I/O."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

MAX_SUGGESTIONS = 3


def closest(query: str, choices: Iterable[tuple[str, str, str]], *, n: int = MAX_SUGGESTIONS,
            cutoff: float = 0.6) -> list[str]:
    """Up to `n` displays of the entries whose match key is closest to `query`, best first.

    `choices` are (match key, entry, display) triples: an entry (a catalog id) may have several keys
    (its names and aliases) and is suggested once, as the display of its closest key. Keys are
    compared as given; callers lower-case or normalise the query and the keys alike.
    """
    by_key: dict[str, list[tuple[str, str]]] = {}
    for key, entry, display in choices:
        by_key.setdefault(key, []).append((entry, display))
    seen: set[str] = set()
    out: list[str] = []
    for key in difflib.get_close_matches(query, list(by_key), n=len(by_key), cutoff=cutoff):
        for entry, display in by_key[key]:
            if entry not in seen:
                seen.add(entry)
                out.append(display)
    return out[:n]


def did_you_mean(names: list[str]) -> str:
    """'; did you mean: X, Y?' to end an error message, or '' when nothing is close."""
    return f"; did you mean: {', '.join(names)}?" if names else ""
