"""Which `vllm serve` flags and values a vLLM version accepts (vllm_flags.yaml), so no artifact
carries a flag its target version would reject.

The table is data about vLLM, read once; checking is pure.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from packaging.version import Version

from planner.errors import InputError

_TABLE = Path(__file__).with_name("vllm_flags.yaml")


@lru_cache(maxsize=1)
def flag_table() -> dict[str, Any]:
    """The parsed vllm_flags.yaml: {flags: {FLAG: {since, until?}}, values: {FLAG: {VERSION: [...] | None}}}."""
    from planner.yamlio import load_yaml_file

    return load_yaml_file(_TABLE, fast=True)


def flag_exists(flag: str, version: str) -> bool:
    """True when vLLM `version` accepts `flag` (only flags in the table are known)."""
    entry = flag_table()["flags"].get(flag)
    if entry is None:
        return False
    v = Version(version)
    until = entry.get("until")
    return Version(str(entry["since"])) <= v and (until is None or v < Version(str(until)))


def accepted_values(flag: str, version: str) -> list[Any] | None:
    """The values `flag` accepts in `version`, or None when any value passes (or none are recorded)."""
    by_version = flag_table()["values"].get(flag) or {}
    v = Version(version)
    applicable = [k for k in by_version if Version(str(k)) <= v]
    if not applicable:
        return None
    return by_version[max(applicable, key=lambda k: Version(str(k)))]


def value_format(flag: str, version: str) -> str | None:
    """How `version` spells a structured value of `flag` ("json" or "key=value"), or None when not recorded."""
    by_version = flag_table().get("value_format", {}).get(flag) or {}
    v = Version(version)
    applicable = [k for k in by_version if Version(str(k)) <= v]
    return by_version[max(applicable, key=lambda k: Version(str(k)))] if applicable else None


def check_flag(flag: str, value: Any, version: str, *, why: str = "") -> None:
    """Raise InputError when vLLM `version` lacks `flag` or refuses `value` for it."""
    because = f" ({why})" if why else ""
    if not flag_exists(flag, version):
        raise InputError(f"vLLM {version} has no {flag}{because}; choose a newer --vllm-version")
    allowed = accepted_values(flag, version)
    if value is not None and allowed is not None and value not in allowed:
        shown = ", ".join(str(a) for a in allowed)
        raise InputError(f"{flag} {value}: vLLM {version} accepts only {shown}")
