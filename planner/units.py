"""Unit helpers. Internally sizes are int bytes; only renderers convert to GiB/GB.

Pure: no I/O.
"""

from __future__ import annotations

import math

KiB = 1024
MiB = 1024**2
GiB = 1024**3


def gib(n_bytes: float) -> float:
    """Bytes to GiB (2**30), as vLLM prints memory."""
    return n_bytes / GiB


def vllm_gib(n_bytes: float) -> float:
    """vLLM's own rendering: round(bytes / 2**30, 2) (vllm/utils/mem_utils.py format_gib)."""
    return round(n_bytes / GiB, 2)


def cdiv(a: int, b: int) -> int:
    """Ceiling division for non-negative ints."""
    return -(-a // b)


def round_up(a: int, multiple: int) -> int:
    """Round a up to a multiple of `multiple`."""
    return cdiv(a, multiple) * multiple


def is_finite_number(x: object) -> bool:
    """True for int/float values that are finite (bools excluded)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
