"""Unit helpers. Internally sizes are int bytes; only renderers convert to GiB/GB.

Pure: no I/O.
"""

from __future__ import annotations

KiB = 1024
MiB = 1024**2
GiB = 1024**3


def cdiv(a: int, b: int) -> int:
    """Ceiling division for non-negative ints."""
    return -(-a // b)


def round_up(a: int, multiple: int) -> int:
    """Round a up to a multiple of `multiple`."""
    return cdiv(a, multiple) * multiple
