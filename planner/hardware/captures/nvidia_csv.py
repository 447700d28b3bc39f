"""``nvidia-smi --query-gpu=... --format=csv`` with or without header and units, and ``--query-compute-apps``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from planner.hardware.captures.model import PROBE_QUERY_FIELDS, SmiGpu, SmiProbe, SmiProcess
from planner.hardware.captures.values import (
    BUS_ID_RE,
    UUID_RE,
    is_err,
    mig_mode,
    na,
    persistence,
    to_bytes,
    to_float,
    to_int,
    version,
)

_FIELD_ALIASES = {
    "gpu_name": "name",
    "gpu_uuid": "uuid",
    "gpu_bus_id": "pci.bus_id",
    "pci.bus": "pci.bus_id",
    "used_gpu_memory": "used_memory",
    "process_name": "process_name",
    "memory.total": "memory.total",
}
_FIELD_RE = re.compile(r"([a-z][a-z0-9_.]*)\s*(?:\[([^\]]*)\])?")
_NAME_LIKE_RE = re.compile(r"(NVIDIA|Tesla|GeForce|Quadro|TITAN|GRID|RTX|GTX)\b.*|[ABHLTV]\d{1,3}\b.*")
_KNOWN_FIELDS = frozenset(
    {
        "index",
        "name",
        "uuid",
        "pci.bus_id",
        "memory.total",
        "memory.used",
        "memory.free",
        "compute_cap",
        "driver_version",
        "mig.mode.current",
        "persistence_mode",
        "pid",
        "used_memory",
        "process_name",
        "power.draw",
        "power.limit",
        "temperature.gpu",
        "utilization.gpu",
        "fan.speed",
        "pstate",
        "count",
        "retired_pages.pending",
    }
)


def _csv_header(cells: Sequence[str]) -> list[tuple[str, str | None]] | None:
    """[(field, unit)] when ``cells`` is a ``--format=csv`` header line, else None."""
    parsed = [_FIELD_RE.fullmatch(cell) for cell in cells]
    if not all(parsed):
        return None
    header = [(_FIELD_ALIASES.get(m.group(1), m.group(1)), m.group(2)) for m in parsed if m]
    return header if any(name in _KNOWN_FIELDS for name, _ in header) else None


def _guess_fields(cells: Sequence[str]) -> list[str] | None:
    """Field names for a headerless row, from the values' shapes (only unambiguous shapes)."""
    if len(cells) == len(PROBE_QUERY_FIELDS) and _looks_like_probe_row(cells):
        return list(PROBE_QUERY_FIELDS)
    names: list[str] = []
    for n, cell in enumerate(cells):
        if UUID_RE.fullmatch(cell):
            names.append("uuid")
        elif BUS_ID_RE.fullmatch(cell):
            names.append("pci.bus_id")
        elif re.fullmatch(r"\d{3}\.\d{2,3}\.\d{2}", cell):
            names.append("driver_version")
        elif "name" not in names and _NAME_LIKE_RE.fullmatch(cell):
            names.append("name")
        elif n == 0 and cell.isdecimal() and len(cells) > 1 and _NAME_LIKE_RE.fullmatch(cells[1]):
            names.append("index")
        else:
            names.append(f"?{n}")
    return names if ("name" in names or "uuid" in names) else None


def _looks_like_probe_row(cells: Sequence[str]) -> bool:
    index, name, uuid, bus, driver = cells[0], cells[1], cells[5], cells[6], cells[7]
    return (
        index.isdecimal()
        and bool(name)
        and (na(uuid) is None or bool(UUID_RE.fullmatch(uuid)))
        and (na(bus) is None or bool(BUS_ID_RE.fullmatch(bus)))
        and (na(driver) is None or bool(version(driver)))
    )


def _record_gpu(record: dict[str, tuple[str, str | None]], position: int) -> SmiGpu:
    def get(key: str) -> str | None:
        return na(record[key][0]) if key in record else None

    def unit(key: str) -> str:
        return (record[key][1] if key in record else None) or "MiB"

    errors = tuple(key for key, (value, _) in record.items() if is_err(value))
    cc = get("compute_cap")
    bus = get("pci.bus_id")
    index = to_int(get("index"))
    return SmiGpu(
        index=position if index is None else index,
        name=get("name") or "",
        memory_total_bytes=to_bytes(get("memory.total"), unit("memory.total")),
        memory_used_bytes=to_bytes(get("memory.used"), unit("memory.used")),
        compute_capability=cc if cc and re.fullmatch(r"\d+\.\d+", cc) else None,
        uuid=get("uuid"),
        bus_id=bus if bus and BUS_ID_RE.fullmatch(bus) else None,
        mig_mode=mig_mode(get("mig.mode.current")),
        persistence_mode=persistence(get("persistence_mode")),
        power_draw_w=to_float(get("power.draw")),
        power_limit_w=to_float(get("power.limit")),
        temperature_c=to_int(get("temperature.gpu")),
        utilization_percent=to_int(get("utilization.gpu")),
        fan_percent=to_int(get("fan.speed")),
        performance_state=get("pstate"),
        errors=errors,
        faults=("retired pages pending (reset the GPU)",) if (get("retired_pages.pending") or "").lower() == "yes"
        else (),
    )


def _record_process(record: dict[str, tuple[str, str | None]]) -> SmiProcess:
    def get(key: str) -> str | None:
        return na(record[key][0]) if key in record else None

    unit = record["used_memory"][1] if "used_memory" in record else None
    return SmiProcess(
        gpu_index=to_int(get("index")),
        pid=to_int(get("pid")),
        process_name=get("process_name") or get("name") or "",
        used_bytes=to_bytes(get("used_memory"), unit or "MiB"),
        type=None,
    )


def _csv_rows(
    lines: Sequence[str], start: int, width: int, claimed: set[int]
) -> tuple[list[list[str]], bool]:
    """Consecutive rows of ``width`` cells from ``start``; also whether a shorter (cut) row ended them."""
    rows: list[list[str]] = []
    for j in range(start, len(lines)):
        if j in claimed or not lines[j].strip():
            break
        cells = [c.strip() for c in lines[j].strip().split(",")]
        if len(cells) != width:
            return rows, len(cells) < width
        claimed.add(j)
        rows.append(cells)
    return rows, False


def parse(lines: Sequence[str], claimed: set[int], fields: Sequence[str] | None) -> list[SmiProbe]:
    probes: list[SmiProbe] = []
    for i, line in enumerate(lines):
        text = line.strip()
        if i in claimed or "," not in text or text[0] in "|+<#" or "=" in text:
            continue
        cells = [c.strip() for c in text.split(",")]
        header = _csv_header(cells)
        if header is not None:
            claimed.add(i)
            rows, cut = _csv_rows(lines, i + 1, len(cells), claimed)
        else:
            names = list(fields) if fields is not None and len(fields) == len(cells) else _guess_fields(cells)
            if names is None:
                continue
            header = [(_FIELD_ALIASES.get(name, name), None) for name in names]
            rows, cut = _csv_rows(lines, i, len(cells), claimed)
        probes.append(_csv_probe(header, rows, cut))
    return probes


def _csv_probe(header: Sequence[tuple[str, str | None]], rows: Sequence[list[str]], cut: bool) -> SmiProbe:
    records = [
        {name: (value, unit) for (name, unit), value in zip(header, row, strict=False)} for row in rows
    ]
    names = {name for name, _ in header}
    warnings = ["a CSV row is cut off; it was skipped"] if cut else []
    if "pid" in names:
        processes = tuple(_record_process(record) for record in records)
        return SmiProbe(processes=processes, formats=("csv",), warnings=tuple(warnings), partial=cut)
    gpus = tuple(_record_gpu(record, n) for n, record in enumerate(records))
    drivers = [version(record["driver_version"][0]) for record in records if "driver_version" in record]
    if any(name.startswith("?") for name in names) and "memory.total" not in names:
        warnings.append("CSV without a header: columns were identified by their values; memory is unknown")
    return SmiProbe(
        gpus=gpus,
        driver_version=next((d for d in drivers if d is not None), None),
        formats=("csv",),
        warnings=tuple(warnings),
        partial=cut,
    )
