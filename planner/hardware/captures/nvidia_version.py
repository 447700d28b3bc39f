"""``nvidia-smi --version``: "DRIVER version : 580.159.04", "CUDA Version : 13.0".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from planner.hardware.captures.model import SmiProbe
from planner.hardware.captures.values import version


def parse(lines: Sequence[str], claimed: set[int]) -> SmiProbe | None:
    """``nvidia-smi --version``: "DRIVER version : 580.159.04", "CUDA Version : 13.0"."""
    found: dict[str, str | None] = {}
    for i, line in enumerate(lines):
        match = re.fullmatch(r"(NVIDIA-SMI|NVML|DRIVER|CUDA) [Vv]ersion\s*:\s*(\S+)\s*", line)
        if match and i not in claimed:
            claimed.add(i)
            found[match.group(1)] = version(match.group(2))
    if not found:
        return None
    return SmiProbe(
        driver_version=found.get("DRIVER"),
        cuda_version=found.get("CUDA"),
        smi_version=found.get("NVIDIA-SMI"),
        formats=("version",),
    )
