"""Locate data shipped with the planner: vendor rule packs and the GPU catalog.

In a wheel they are planner/_data/{rules,gpu_catalog}; in a source checkout or editable install
they are the top-level rules/ and gpu_catalog/ directories next to planner/.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory holding shipped data `name` ("rules" or "gpu_catalog")."""
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"shipped data directory {name!r} not found next to {_PKG}")


def rules_dir() -> Path:
    """Vendor rule packs."""
    return data_dir("rules")


def gpu_catalog_dir() -> Path:
    """One YAML file per GPU."""
    return data_dir("gpu_catalog")
