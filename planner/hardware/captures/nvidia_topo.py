"""``nvidia-smi topo -m`` matrices (tabs or spaces, NIC columns, NUMA columns, legends), and ``topo -p2p``
grids, recognised so that they are *not* read as ``topo -m``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from planner.hardware.captures.model import SmiProbe, Topology, gpu_number
from planner.hardware.captures.values import na

_TRAILER_RE = re.compile(r"CPU Affinity|NUMA Affinity|GPU NUMA ID")
_DEVICE_LABEL_RE = re.compile(r"GPU\d+|NIC\d+|mlx\d+_\d+|[A-Za-z][A-Za-z0-9_]*\d")
_TOPO_CELL_RE = re.compile(r"X|SYS|SOC|NODE|PHB|PXB|PIX|NV\d+")
_P2P_CELLS = frozenset({"OK", "CNS", "GNS", "TNS", "NS", "DR", "U"})
_OVERFLOW_RE = re.compile(r"PH(\d[\d,\-]*)")  # "PH0-115": the PHB cell merged with CPU Affinity


def _topo_header(line: str) -> tuple[list[str], list[str]] | None:
    """(device labels, trailer columns) of a matrix header line, or None."""
    text = line.strip()
    trailer = _TRAILER_RE.search(text)
    labels = (text[: trailer.start()] if trailer else text).split()
    if not labels or gpu_number(labels[0]) is None or len(set(labels)) != len(labels):
        return None
    if not all(_DEVICE_LABEL_RE.fullmatch(label) for label in labels):
        return None
    return labels, _TRAILER_RE.findall(text)


def _assign_trailers(names: Sequence[str], values: Sequence[str]) -> dict[str, str | None]:
    """Map the non-empty trailing cells to their columns (left-aligned if all there, else right)."""
    if len(values) < len(names):
        values = [""] * (len(names) - len(values)) + list(values)
    return {name: na(value) for name, value in zip(names, values, strict=False)}


@dataclass
class _Matrix:
    labels: list[str]
    trailers: list[str]
    rows: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, dict[str, str | None]] = field(default_factory=dict)
    cut: bool = False


def _read_matrix(lines: Sequence[str], start: int, claimed: set[int], matrix: _Matrix) -> None:
    """Read the rows that follow a header at ``start``."""
    n_dev = len(matrix.labels)
    for j in range(start + 1, len(lines)):
        tokens = lines[j].split()
        if not tokens or tokens[0] not in matrix.labels or tokens[0] in matrix.rows:
            break
        claimed.add(j)
        cells, rest = tokens[1 : 1 + n_dev], tokens[1 + n_dev :]
        overflow = _OVERFLOW_RE.fullmatch(cells[-1]) if len(cells) == n_dev else None
        if overflow:
            cells[-1], rest = "PHB", [overflow.group(1), *rest]
        if len(cells) < n_dev:
            matrix.cut = True
            continue
        matrix.rows[tokens[0]] = cells
        matrix.extra[tokens[0]] = _assign_trailers(matrix.trailers, rest)
    if any(label not in matrix.rows for label in matrix.labels):
        matrix.cut = True


def _gpu_cells(matrix: _Matrix) -> dict[tuple[int, int], str]:
    cells: dict[tuple[int, int], str] = {}
    for row_label, row in matrix.rows.items():
        a = gpu_number(row_label)
        for col_label, cell in zip(matrix.labels, row, strict=False):
            b = gpu_number(col_label)
            if a is not None and b is not None:
                cells[(a, b)] = cell
    return cells


def _matrix_probe(matrix: _Matrix, nic_names: dict[str, str]) -> SmiProbe | None:
    cells = _gpu_cells(matrix)
    off_diagonal = [cell for (a, b), cell in cells.items() if a != b]
    if off_diagonal and all(cell in _P2P_CELLS for cell in off_diagonal):
        note = "this is `nvidia-smi topo -p2p` output (peer-to-peer status), not a `topo -m` matrix"
        return SmiProbe(p2p=cells, formats=("topo_p2p",), warnings=(f"{note}; interconnect unknown",))
    if not matrix.trailers and not off_diagonal:
        return None
    if not all(_TOPO_CELL_RE.fullmatch(cell) for cell in cells.values()):
        return None
    gpu_labels = tuple(label for label in matrix.labels if gpu_number(label) is not None)
    extra = [matrix.extra.get(label, {}) for label in gpu_labels]
    topology = Topology(
        gpu_labels=gpu_labels,
        links=cells,
        nic_labels=tuple(label for label in matrix.labels if gpu_number(label) is None),
        nic_names={k: v for k, v in nic_names.items() if k in matrix.labels},
        cpu_affinity=tuple(row.get("CPU Affinity") for row in extra),
        numa_affinity=tuple(row.get("NUMA Affinity") for row in extra),
    )
    warnings = ("the topology matrix is cut off; rows it lacks are unknown",) if matrix.cut else ()
    return SmiProbe(topology=topology, formats=("topo",), warnings=warnings, partial=matrix.cut)


def parse(lines: Sequence[str], claimed: set[int]) -> list[SmiProbe]:
    nic_names: dict[str, str] = {}
    for line in lines:
        legend = re.fullmatch(r"\s*(NIC\d+):\s*(\S+)\s*", line)
        if legend:
            nic_names[legend.group(1)] = legend.group(2)
    probes: list[SmiProbe] = []
    for i, line in enumerate(lines):
        if i in claimed:
            continue
        header = _topo_header(line)
        if header is None:
            continue
        matrix = _Matrix(labels=header[0], trailers=header[1])
        _read_matrix(lines, i, claimed, matrix)
        if not matrix.rows:
            continue
        probe = _matrix_probe(matrix, nic_names)
        if probe is not None:
            claimed.add(i)
            probes.append(probe)
    return probes
