"""``rocm-smi`` (ROCm 1.9 to 7.x): the concise table in every layout, the ``GPU[n] : key: value`` views
(``--showallinfo``, ``--showmeminfo vram``, ``--showproductname``, ``-i``, ``--showdriverversion``, the
compute and memory partition views), and ``--csv`` / ``--json`` output.

Table layouts read (cells are whitespace tokens, never column offsets):

* ROCm 1.9 to 5.x: ``GPU  Temp (DieEdge)  AvgPwr  SCLK  MCLK  Fan  Perf  PwrCap  VRAM%  GPU%`` (older ones
  have ``SCLK OD``/``MCLK OD``/``PCLK`` columns, no ``VRAM%``);
* ROCm 6.0/6.1: ``Device  [Model : Revision]  Temp  Power  Partitions ...`` with the product name on a
  second line under each row (``Name (20 chars)``);
* ROCm 6.2 and later: ``Device  Node  IDs (DID, GUID)  Temp  Power  Partitions (Mem, Compute, ID) ...``,
  which names no product (only the PCI device id).

Memory is printed in bytes (``VRAM Total Memory (B)``), and the tables show only ``VRAM%``. In a CPX/QPX/DPX
partition mode an MI300X shows every partition as a GPU, each with the whole card's memory (a display bug:
HIP sees a share of it); see tests/data/amd-smi/INDEX.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from planner.hardware.captures.model import SmiGpu, SmiProbe
from planner.hardware.captures.values import BUS_ID_RE, FailurePatterns, json_document, na, to_float

FAILURES: FailurePatterns = tuple(
    ("rocm-smi", re.compile(pattern))
    for pattern in (
        r"ERROR:root:Driver not initialized \(amdgpu not found in modules\)",
        r"WARNING: No AMD GPUs specified",
    )
)
"""rocm-smi's "I found nothing" lines: a capture holding one and no GPU raises SmiError quoting it."""

_BANNER = "ROCm System Management Interface"
_END = "End of ROCm SMI Log"
_GPU_KV_RE = re.compile(r"\s*GPU\[(\d{1,4})\]\s*:(.*)")
_DRIVER_RE = re.compile(r"\s*Driver version:")
_CARD_RE = re.compile(r"card(\d{1,4})")
_HEX_ID_RE = re.compile(r"0x[0-9A-Fa-f]+")
_TEMP_RE = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*(?:°C|c|C)")
_DRIVER_VERSION_RE = re.compile(r"\d+(?:\.\d+)+[\w.+~-]*")
_COMPUTE_MODES = frozenset({"SPX", "DPX", "TPX", "QPX", "CPX"})
_MAX_JSON_TRIES = 8


@dataclass
class _Record:
    """What the capture says about one GPU index (several views fill it; the first value wins)."""

    values: dict[str, Any] = field(default_factory=dict)

    def put(self, key: str, value: Any) -> None:
        if value is not None and value != "" and key not in self.values:
            self.values[key] = value


@dataclass
class _State:
    records: dict[int, _Record] = field(default_factory=dict)
    driver: str | None = None
    formats: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    banner_open: bool = False  # a banner was seen and its "End of ROCm SMI Log" not yet
    saw_banner: bool = False

    def record(self, index: int) -> _Record:
        return self.records.setdefault(index, _Record())

    def fmt(self, name: str) -> None:
        if name not in self.formats:
            self.formats.append(name)


# ------------------------------------------------------------------------------------------ values


def _driver_version(value: str | None) -> str | None:
    """rocm-smi prints the amdgpu version ("6.7.0", "6.9.0-rc5+") or, before ROCm 5, the kernel's."""
    value = na(value)
    return value if value is not None and _DRIVER_VERSION_RE.fullmatch(value) else None


def _int(value: str | None) -> int | None:
    value = na(value)
    return int(value) if value is not None and value.isdecimal() else None


def _percent(value: str | None) -> int | None:
    value = na(value)
    if value is None:
        return None
    value = value.rstrip("%").strip()
    return int(value) if value.isdecimal() else None


def _temperature(value: str | None) -> int | None:
    value = na(value)
    match = _TEMP_RE.fullmatch(value) if value is not None else None
    return int(float(match.group(1))) if match else None


def _name(value: str | None) -> str | None:
    """A product name as printed; None for N/A and for a bare PCI id ("0x738c")."""
    value = na(value)
    if value is None or _HEX_ID_RE.fullmatch(value):
        return None
    return value


def _device_id(value: str | None) -> str | None:
    """'0x74a2, 1017' / '[0x74a1 : 0x00]' / '0x740c' -> '0x74a2' (lower case); None when no hex id leads."""
    match = _HEX_ID_RE.match((value or "").strip().lstrip("[").strip())
    return match.group(0).lower() if match else None


def _partitions(value: str | None) -> tuple[str | None, str | None]:
    """'NPS1, SPX, 0' / 'NPS1, SPX' / 'N/A, N/A, 1' -> (memory partition, compute partition)."""
    parts = [p.strip() for p in (value or "").split(",")]
    memory = parts[0] if parts and re.fullmatch(r"NPS\d", parts[0]) else None
    compute = parts[1] if len(parts) > 1 and parts[1] in _COMPUTE_MODES else None
    return memory, compute


def _apply(state: _State, index: int, key: str, value: str) -> bool:
    """One ``key: value`` of GPU ``index`` (from a GPU[n] line, a CSV cell or a JSON member); False if unknown."""
    key = key.strip().lower()
    value = value.strip()
    if key not in _KEYS:
        return False
    rec = state.record(index)
    if key == "vram total memory (b)":
        rec.put("memory_total_bytes", _int(value))
    elif key == "vram total used memory (b)":
        rec.put("memory_used_bytes", _int(value))
    elif key in ("card series", "device name", "card model"):
        rec.put(f"name:{key}", _name(value))
        if key == "card model":  # rocm-smi --showproductname prints the PCI device id here ("0x740c")
            rec.put("pci_device_id", _device_id(value))
    elif key == "gfx version":
        rec.put("gfx_version", na(value))
    elif key == "compute partition":
        rec.put("compute_partition", value if value in _COMPUTE_MODES else None)
    elif key == "memory partition":
        rec.put("memory_partition", value if re.fullmatch(r"NPS\d", value) else None)
    elif key == "performance level":
        rec.put("performance_state", na(value))
    elif key == "gpu use (%)":
        rec.put("utilization_percent", _percent(value))
    elif key == "pci bus":
        bus = BUS_ID_RE.fullmatch(value)
        rec.put("bus_id", bus.group(0) if bus else None)
    elif key == "max graphics package power (w)":
        rec.put("power_limit_w", to_float(value))
    return True


_KEYS = frozenset(
    {
        "vram total memory (b)",
        "vram total used memory (b)",
        "card series",
        "device name",
        "card model",
        "gfx version",
        "compute partition",
        "memory partition",
        "performance level",
        "gpu use (%)",
        "pci bus",
        "max graphics package power (w)",
    }
)


# ------------------------------------------------------------------------------------ concise table


def _header_columns(text: str) -> list[str] | None:
    """The column names of a concise-table header line, or None when ``text`` is no such header."""
    tokens = text.split()
    if not tokens or tokens[0] not in ("GPU", "Device") or "Temp" not in tokens:
        return None
    if not {"Perf", "SCLK", "AvgPwr", "Power"} & set(tokens):
        return None
    columns: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("[") and not token.endswith("]"):  # "[Model : Revision]"
            j = i
            while j + 1 < len(tokens) and not tokens[j].endswith("]"):
                j += 1
            columns.append(" ".join(tokens[i : j + 1]))
            i = j + 1
            continue
        if columns and (token.startswith("(") or token == "OD"):  # "Temp (DieEdge)", "SCLK OD"
            columns[-1] += " " + token
        else:
            columns.append(token)
        i += 1
    return columns


def _row_values(text: str) -> list[str]:
    """A table row's cells: '0x74a1,   28851' and 'NPS1, SPX, 0' are one cell each, so is '[0x74a1 : 0x00]'."""
    tokens = text.split()
    values: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        if tokens[i].startswith("["):
            while j + 1 < len(tokens) and not tokens[j].endswith("]"):
                j += 1
        else:
            while j + 1 < len(tokens) and tokens[j].endswith(","):
                j += 1
        values.append(" ".join(tokens[i : j + 1]))
        i = j + 1
    return values


def _table_row(state: _State, columns: Sequence[str], values: Sequence[str]) -> int:
    index = int(values[0])
    rec = state.record(index)
    rec.put("in_table", True)
    for column, value in zip(columns[1:], values[1:], strict=False):
        name = column.split()[0]
        if name == "Perf":
            rec.put("performance_state", na(value))
        elif name in ("IDs", "[Model"):  # "0x74a2, 1017" (DID, GUID) or "[0x74a1 : 0x00]" (model : revision)
            rec.put("pci_device_id", _device_id(value))
        elif name == "Partitions":
            memory, compute = _partitions(value)
            rec.put("memory_partition", memory)
            rec.put("compute_partition", compute)
        elif name == "GPU%":
            rec.put("utilization_percent", _percent(value))
        elif name == "PwrCap":
            rec.put("power_limit_w", to_float(value))
        elif name in ("Power", "AvgPwr"):
            rec.put("power_draw_w", to_float(value))
        elif name == "Temp":
            rec.put("temperature_c", _temperature(value))
    return index


def _is_rule(text: str) -> bool:
    """'=====' or '===== Title =====' (rocm-smi's section lines)."""
    return len(text) > 1 and text[0] == "=" and text[-1] == "="


def _read_table(state: _State, lines: Sequence[str], start: int, columns: list[str], claimed: set[int]) -> int:
    """Rows after the header at ``start``; returns the index of the first line after the table."""
    named = False
    last: int | None = None
    rows = 0
    i = start + 1
    while i < len(lines):
        text = lines[i].strip()
        if _END in text or _BANNER in text:
            break
        if _is_rule(text):
            claimed.add(i)
            if rows:
                return i + 1
            i += 1
            continue
        claimed.add(i)
        tokens = text.split()
        # a row has one or two tokens per column ("0x74a1,  4403", "NPS1, SPX, 0"); skip others unread
        fits = bool(tokens) and tokens[0].isdecimal() and len(tokens) <= 3 * len(columns)
        values = _row_values(text) if fits else []
        if values and len(values) == len(columns):
            last = _table_row(state, columns, values)
            rows += 1
        elif (i == start + 1 and text.startswith("(")) or "(20 chars)" in text:
            named = named or "Name" in text  # the header's second line: "(DID, GUID) ..." or "Name (20 chars) ..."
        elif named and last is not None and text and not text.startswith(("GPU[", "ERROR", "WARNING")):
            state.record(last).put("name:table", text)
            last = None
        i += 1
    return i


# ------------------------------------------------------------------------------------ csv and json


def _read_csv(state: _State, lines: Sequence[str], start: int, claimed: set[int]) -> int:
    header = [cell.strip() for cell in lines[start].strip().split(",")]
    claimed.add(start)
    state.fmt("rocm-smi-csv")
    i = start + 1
    while i < len(lines):
        cells = [cell.strip() for cell in lines[i].strip().split(",")]
        card = _CARD_RE.fullmatch(cells[0]) if cells else None
        if cells[0] in ("cardsystem", "system") and len(cells) == len(header):
            claimed.add(i)
            for key, value in zip(header[1:], cells[1:], strict=True):
                if key.lower() == "driver version":
                    state.driver = state.driver or _driver_version(value)
        elif card and len(cells) == len(header):
            claimed.add(i)
            index = int(card.group(1))
            state.record(index).put("listed", True)
            for key, value in zip(header[1:], cells[1:], strict=True):
                _apply(state, index, key, value)
        elif card:
            claimed.add(i)
            state.warnings.append(f"rocm-smi CSV row {cells[0]} has {len(cells)} cells, the header {len(header)}")
        else:
            break
        i += 1
    return i




def _read_json(state: _State, doc: dict[str, Any]) -> bool:
    """``rocm-smi ... --json``: {"card0": {"Card Series": ...}, "system": {"Driver version": ...}}."""
    cards = {k: v for k, v in doc.items() if _CARD_RE.fullmatch(k) and isinstance(v, dict)}
    system = doc.get("system")
    if not cards and not (isinstance(system, dict) and "Driver version" in system):
        return False
    if len(cards) + ("system" in doc) != len(doc):
        return False
    state.fmt("rocm-smi-json")
    for key, values in cards.items():
        index = int(key[4:])
        state.record(index).put("listed", True)
        for name, value in values.items():
            if isinstance(name, str) and isinstance(value, (str, int, float)):
                _apply(state, index, name, str(value))
    if isinstance(system, dict):
        state.driver = state.driver or _driver_version(str(system.get("Driver version", "")))
    return True


# ------------------------------------------------------------------------------------------- parse


def parse(lines: Sequence[str], claimed: set[int]) -> SmiProbe | None:
    """Every rocm-smi view found in ``lines``; None when there is none."""
    state = _State()
    json_tries = 0
    i = 0
    while i < len(lines):
        if i in claimed:
            i += 1
            continue
        line = lines[i]
        text = line.strip()
        if _BANNER in text:
            claimed.add(i)
            state.banner_open = state.saw_banner = True
            state.fmt("rocm-smi")
        elif _END in text:
            claimed.add(i)
            state.banner_open = False
        elif state.saw_banner and (columns := _header_columns(text)) is not None:
            claimed.add(i)
            i = _read_table(state, lines, i, columns, claimed)
            continue
        elif (kv := _GPU_KV_RE.fullmatch(line)) is not None:
            key, _, value = kv.group(2).partition(":")
            if _apply(state, int(kv.group(1)), key, value) or state.banner_open:
                state.record(int(kv.group(1)))  # inside rocm-smi's own output, GPU[n] names a GPU
                claimed.add(i)
                state.fmt("rocm-smi")
        elif (drv := _DRIVER_RE.match(line)) is not None:
            claimed.add(i)
            state.driver = state.driver or _driver_version(line[drv.end() :])
        elif text.startswith("device,"):
            i = _read_csv(state, lines, i, claimed)
            continue
        elif (text == "{" or text.startswith('{"')) and json_tries < _MAX_JSON_TRIES:
            json_tries += 1
            found = json_document(lines, i)
            if found is not None and isinstance(found[0], dict) and _read_json(state, found[0]):
                claimed.update(range(i, i + found[1]))
                i += found[1]
                continue
        elif state.banner_open:
            claimed.add(i)  # a line of rocm-smi's own output (WARNING/ERROR notes, empty sections)
            if "One or more commands failed" in text:
                state.warnings.append("rocm-smi: one or more commands failed")
        i += 1
    return _probe(state)


def _probe(state: _State) -> SmiProbe | None:
    if not state.formats:
        return None
    gpus = tuple(_gpu(index, rec) for index, rec in sorted(state.records.items()))
    warnings = list(state.warnings)
    for gpu in gpus:
        if gpu.faults:
            warnings.append(f"GPU {gpu.index}: {gpu.faults[0]}")
    partial = state.banner_open
    if partial:
        warnings.append("the rocm-smi output is cut off (no 'End of ROCm SMI Log' line)")
    return SmiProbe(
        gpus=gpus,
        driver_version=state.driver,
        formats=tuple(state.formats),
        warnings=tuple(warnings),
        partial=partial,
    )


def _gpu(index: int, rec: _Record) -> SmiGpu:
    values = rec.values
    name = next(
        (values[k] for k in ("name:card series", "name:device name", "name:table", "name:card model") if k in values),
        "",
    )
    perf = values.get("performance_state")
    faults = ()
    if isinstance(perf, str) and perf.lower() == "unknown":
        faults = ("rocm-smi shows performance level 'unknown': the GPU does not answer (hung or lost)",)
    fields = {
        k: v
        for k, v in values.items()
        if k
        in {
            "memory_total_bytes",
            "memory_used_bytes",
            "gfx_version",
            "compute_partition",
            "memory_partition",
            "performance_state",
            "utilization_percent",
            "bus_id",
            "power_limit_w",
            "power_draw_w",
            "temperature_c",
            "pci_device_id",
        }
    }
    return SmiGpu(index=index, name=name, vendor="amd", faults=faults, **fields)
