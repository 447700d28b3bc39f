"""Cell values shared by every capture parser: placeholders (N/A), numbers, memory with units, versions,
the tool-failure messages, and the line clean-up done once per text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from planner.hardware.captures.model import MIB

NA_VALUES = frozenset({"", "N/A", "NA", "n/a", "Not Supported", "Unknown Error", "-"})
VERSION_RE = re.compile(r"\d+(?:\.\d+)+")
BUS_ID_RE = re.compile(r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]")
UUID_RE = re.compile(r"GPU-[0-9A-Fa-f-]{8,}")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|MB|GB)?")
UNIT_BYTES = {"KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB, "MB": MIB, "GB": 1024 * MIB}
MAX_LINE = 4096  # longer lines are no nvidia-smi output; skip them (keeps regexes linear in practice)


def na(value: str | None) -> str | None:
    """Strip a cell; None for N/A, [N/A], [Not Supported] and other placeholders."""
    if value is None:
        return None
    value = value.strip()
    if value in NA_VALUES or (value.startswith("[") and value.endswith("]")):
        return None
    return value


def to_int(value: str | None) -> int | None:
    value = na(value)
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)\s*(%|C|W|MHz)?", value)
    return int(match.group(1)) if match else None


def to_float(value: str | None) -> float | None:
    value = na(value)
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(W|%)?", value)
    return float(match.group(1)) if match else None


def to_bytes(value: str | None, default_unit: str = "MiB") -> int | None:
    """'81559MiB', '81559 MiB' or '81559' (with the unit from a CSV header) -> bytes; None for N/A."""
    value = na(value)
    if value is None:
        return None
    match = MEMORY_RE.fullmatch(value)
    if not match:
        return None
    unit = match.group(2) or default_unit
    return int(float(match.group(1)) * UNIT_BYTES.get(unit, MIB))


def version(value: str | None) -> str | None:
    value = na(value)
    return value if value is not None and VERSION_RE.fullmatch(value) else None


def is_err(value: str | None) -> bool:
    return value is not None and value.strip() == "ERR!"


def mig_mode(value: str | None) -> str | None:
    value = na(value)
    return value if value in ("Enabled", "Disabled") else None


def persistence(value: str | None) -> str | None:
    value = na(value)
    return {"Enabled": "On", "Disabled": "Off", "On": "On", "Off": "Off"}.get(value or "")


class Failure(NamedTuple):
    """A line in which a probe tool reports that it failed."""

    tool: str  # "nvidia-smi", "rocm-smi", "amd-smi"
    message: str


FailurePatterns = Sequence[tuple[str, "re.Pattern[str]"]]

NVIDIA_FAILURES: FailurePatterns = tuple(
    ("nvidia-smi", re.compile(pattern))
    for pattern in (
        r"NVIDIA-SMI has failed\b.*",
        r"NVIDIA-SMI couldn't find\b.*",
        r"No devices were found\b.*",
        r"Failed to initialize NVML\b.*",
        r"Unable to determine the device handle for GPU\b.*",
        r'Field "[^"]*" is not a valid field to query\..*',
        r"Unknown Error",
    )
)


def find_failure(lines: Sequence[str], patterns: FailurePatterns = NVIDIA_FAILURES) -> Failure | None:
    """The first line in which a probe tool reports a failure, stripped (the whole line must match)."""
    for line in lines:
        text = line.strip()
        for tool, regex in patterns:
            if regex.fullmatch(text):
                return Failure(tool, text)
    return None


def clean_lines(text: str) -> list[str]:
    text = ANSI_RE.sub("", text.lstrip("\ufeff")).replace("\r\n", "\n").replace("\r", "\n")
    return [line if len(line) <= MAX_LINE else "" for line in text.split("\n")]




MAX_JSON = 4_000_000  # characters of one --json document; more is no probe tool's output


def json_document(lines: Sequence[str], start: int) -> tuple[Any, int] | None:
    """The JSON value starting at line ``start`` (rocm-smi/amd-smi ``--json``) and the lines it spans, or None."""
    text = "\n".join(lines[start:])[:MAX_JSON]
    try:
        value, end = json.JSONDecoder().raw_decode(text.lstrip())
    except (ValueError, RecursionError):
        return None
    offset = len(text) - len(text.lstrip())
    return value, text[: offset + end].count("\n") + 1
