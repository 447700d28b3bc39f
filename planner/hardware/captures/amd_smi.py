"""``amd-smi`` (ROCm 6.x to 7.x): the default view (``amd-smi`` alone, an nvidia-smi-like box, amd-smi 26+),
the ``GPU: n`` views (``list``, ``static`` with any options, ``metric``, ``static --partition``), ``monitor``
tables, ``--json`` output, and ``amd-smi version`` lines.

amd-smi writes memory in "MB" that are MiB: an MI300X shows ``196592 MB``, which is rocm-smi's
206,141,652,992 bytes divided by 1,048,576. ``static`` CPU blocks (``CPU: n``, an MI300A's sockets) are not
GPUs and are skipped. The default view names a GPU by its PCI device id ("0x1586") when amd-smi has no
market name; such a name is left empty.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from planner.hardware.captures.model import MIB, SmiGpu, SmiProbe
from planner.hardware.captures.values import BUS_ID_RE, FailurePatterns, json_document, na, to_float

FAILURES: FailurePatterns = tuple(
    ("amd-smi", re.compile(pattern))
    for pattern in (
        r"ERROR:root:Unable to get devices, driver not initialized\b.*",
        r"(?:ERROR:root:|ERROR: )Unable to detect any GPU devices\b.*",
        r"\d+ \| AMDSMI_STATUS_[A-Z_]+ - .*",
    )
)
"""amd-smi's failure lines: a capture holding one and no GPU raises SmiError quoting it."""

_BLOCK_RE = re.compile(r"(\s*)([A-Z]+):\s*(\d{1,4})\s*")  # "GPU: 0", "CPU: 3" (and "VF: 0" inside a GPU)
_KEY_RE = re.compile(r"(\s*)([A-Za-z][A-Za-z0-9_ ]*):(.*)")
_MIB_RE = re.compile(r"(\d+)\s*MB")
_HEX_ID_RE = re.compile(r"0x[0-9A-Fa-f]+")
_VERSION_RE = re.compile(r"\d+(?:\.\d+)+[\w.+~-]*")
_VIEW_GPU_ROW_RE = re.compile(r"(\d{1,4})\s+(\S+)\s+(\S+)\s+(\S+)")
_COMPUTE_MODES = frozenset({"SPX", "DPX", "TPX", "QPX", "CPX"})
_MONITOR_COLUMNS = frozenset(
    {"POWER", "GPU_TEMP", "MEM_TEMP", "GFX_UTIL", "GFX_CLOCK", "MEM_UTIL", "MEM_CLOCK", "VRAM_USED", "VRAM_TOTAL"}
)
_MAX_JSON_TRIES = 8


@dataclass
class _State:
    gpus: dict[int, dict[str, Any]] = field(default_factory=dict)
    driver: str | None = None
    rocm: str | None = None
    smi: str | None = None
    formats: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    partial: bool = False

    def put(self, index: int, key: str, value: Any) -> None:
        record = self.gpus.setdefault(index, {})
        if value is not None and value != "" and key not in record:
            record[key] = value

    def fmt(self, name: str) -> None:
        if name not in self.formats:
            self.formats.append(name)


def _mib(value: str | None) -> int | None:
    """'196592 MB' -> bytes (amd-smi's MB are MiB); None for N/A."""
    match = _MIB_RE.fullmatch(value.strip()) if value is not None else None
    return int(match.group(1)) * MIB if match else None


def _version(value: str | None) -> str | None:
    value = na(value)
    return value if value is not None and _VERSION_RE.fullmatch(value) else None


def _name(value: str | None) -> str | None:
    value = na(value)
    if value is None or _HEX_ID_RE.fullmatch(value) or value.startswith("<"):  # "<redacted>"
        return None
    return value


def _partition_value(value: str | None, kind: str) -> str | None:
    value = na(value)
    if value is None:
        return None
    if kind == "compute":
        return value if value in _COMPUTE_MODES else None
    return value if re.fullmatch(r"NPS\d", value) else None


def _apply(state: _State, index: int, section: str, key: str, value: str) -> bool:
    """One ``KEY: value`` of GPU ``index`` under ``section`` ("" at the top of the GPU's block)."""
    section, key, value = section.upper(), key.upper(), value.strip()
    where = (section, key)
    if where == ("ASIC", "MARKET_NAME"):
        state.put(index, "name:market", _name(value))
    elif where == ("BOARD", "PRODUCT_NAME"):
        state.put(index, "name:board", _name(value))
    elif where == ("ASIC", "DEVICE_ID"):
        state.put(index, "pci_device_id", value.lower() if _HEX_ID_RE.fullmatch(value) else None)
    elif where == ("ASIC", "TARGET_GRAPHICS_VERSION"):
        state.put(index, "gfx_version", na(value))
    elif where == ("DRIVER", "VERSION"):
        state.driver = state.driver or _version(value)
    elif where in (("VRAM", "SIZE"), ("MEM_USAGE", "TOTAL_VRAM")):
        state.put(index, "memory_total_bytes", _mib(value))
    elif where == ("MEM_USAGE", "USED_VRAM"):
        state.put(index, "memory_used_bytes", _mib(value))
    elif key == "BDF" and section in ("", "BUS"):
        bus = BUS_ID_RE.fullmatch(value)
        state.put(index, "bus_id", bus.group(0) if bus else None)
    elif where == ("", "UUID"):
        state.put(index, "uuid", _name(value))
    elif section == "PARTITION" and key in ("COMPUTE_PARTITION", "ACCELERATOR_PARTITION"):
        state.put(index, "compute_partition", _partition_value(value, "compute"))
    elif section == "PARTITION" and key == "MEMORY_PARTITION":
        state.put(index, "memory_partition", _partition_value(value, "memory"))
    elif where == ("RAS", "BAD_PAGE_THRESHOLD_EXCEEDED"):
        if value.upper() in ("TRUE", "YES"):
            state.put(index, "fault", "amd-smi: retired pages exceed the bad-page threshold")
    else:
        return False
    return True


# --------------------------------------------------------------------------------- "GPU: n" blocks


def _read_block(state: _State, lines: Sequence[str], start: int, index: int, base: int, claimed: set[int]) -> int:
    """The indented ``KEY: value`` lines under ``GPU: index``; returns the first line after the block."""
    sections: list[tuple[int, str]] = []
    used = [start]
    known = False
    i = start + 1
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            used.append(i)
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= base:
            break
        match = _KEY_RE.fullmatch(line)
        if match is None:
            used.append(i)
            i += 1
            continue
        while sections and sections[-1][0] >= indent:
            sections.pop()
        key, value = match.group(2).strip(), match.group(3).strip()
        if not value:
            sections.append((indent, key))
        else:
            section = sections[-1][1] if sections else ""
            known = _apply(state, index, section, key, value) or known
        used.append(i)
        i += 1
    if known or len(used) > 1:
        state.gpus.setdefault(index, {})
        claimed.update(used)
        state.fmt("amd-smi")
    return i


# ----------------------------------------------------------------------------------- default view


def _view_cells(text: str) -> list[str]:
    return text.strip().strip("|").split("|")


def _read_view(state: _State, lines: Sequence[str], start: int, claimed: set[int]) -> int:
    """The box that ``amd-smi`` alone prints; ``start`` is its "| AMD-SMI ..." line."""
    state.fmt("amd-smi-view")
    head = lines[start]
    if (rocm := re.search(r"ROCm version:\s*(\S+)", head)) is not None:
        state.rocm = state.rocm or _version(rocm.group(1))
    if (drv := re.search(r"amdgpu version:\s*(\S+)", head)) is not None:
        state.driver = state.driver or _version(drv.group(1))
    if (smi := re.search(r"AMD-SMI\s+(\S+)", head)) is not None:
        state.smi = state.smi or smi.group(1)
    if start > 0 and lines[start - 1].strip().startswith("+"):
        claimed.add(start - 1)
    in_gpus = False
    pending: str | None = None
    closed = False
    i = start
    while i < len(lines):
        text = lines[i].strip()
        if not text.startswith(("|", "+")):
            break
        claimed.add(i)
        if text.startswith("|=") and "+" in text:
            in_gpus = True
        elif text.startswith("+") and in_gpus:
            in_gpus, closed = False, True
        elif in_gpus and text.startswith("|") and not text.startswith("|-"):
            if pending is None:
                pending = text
            else:
                _view_gpu(state, pending, text)
                pending = None
        i += 1
    if not closed:
        state.partial = True
        state.warnings.append("the amd-smi view is cut off; it was read up to its last complete GPU")
    return i


def _view_gpu(state: _State, first: str, second: str) -> None:
    """A GPU's two lines: '| BDF  NAME | Mem-Uti Temp UEC Power |' and '| GPU HIP OAM MODE | GFX Fan Mem |'."""
    top, bottom = _view_cells(first), _view_cells(second)
    row = _VIEW_GPU_ROW_RE.fullmatch(bottom[0].strip()) if bottom else None
    if row is None:
        return
    index = int(row.group(1))
    bus = BUS_ID_RE.match(top[0].strip()) if top else None
    name = top[0].strip()[bus.end() :].strip() if bus else (top[0].strip() if top else "")
    state.put(index, "name:view", _name(name))
    if _HEX_ID_RE.fullmatch(name):  # no market name in the container: the view prints the PCI device id
        state.put(index, "pci_device_id", name.lower())
    state.put(index, "bus_id", bus.group(0) if bus else None)
    mode = row.group(4).split("/")
    state.put(index, "compute_partition", _partition_value(mode[0], "compute"))
    state.put(index, "memory_partition", _partition_value(mode[-1], "memory") if len(mode) > 1 else None)
    if len(bottom) > 1:
        used, total = _slash_pair(bottom[1], "MB")
        if total is not None and total.isdecimal():
            state.put(index, "memory_total_bytes", int(total) * MIB)
            state.put(index, "memory_used_bytes", int(used) * MIB if used and used.isdecimal() else None)
        util = bottom[1].split()
        if len(util) > 1 and util[0].isdecimal() and util[1] == "%":
            state.put(index, "utilization_percent", int(util[0]))
    if len(top) > 1:
        draw, cap = _slash_pair(top[1], "W")
        state.put(index, "power_draw_w", to_float(draw))
        state.put(index, "power_limit_w", to_float(cap))
        tokens = top[1].split()
        temp = next((t for t, u in pairwise(tokens) if u == "°C" and t.isdecimal()), None)
        state.put(index, "temperature_c", int(temp) if temp else None)


def _slash_pair(cell: str, unit: str) -> tuple[str | None, str | None]:
    """'... 283/196592 MB' -> ('283', '196592'); 'N/A/0 W' -> ('N/A', '0'); (None, None) when absent."""
    tokens = cell.split()
    for token, after in pairwise(tokens):
        if after == unit and "/" in token:
            left, _, right = token.rpartition("/")
            return na(left), na(right)
    return None, None


# ---------------------------------------------------------------------------------------- monitor


def _read_monitor(state: _State, lines: Sequence[str], start: int, columns: list[str], claimed: set[int]) -> int:
    state.fmt("amd-smi-monitor")
    claimed.add(start)
    i = start + 1
    while i < len(lines):
        cells = re.split(r"\s{2,}", lines[i].strip())
        if len(cells) != len(columns) or not cells[0].isdecimal():
            break
        claimed.add(i)
        index = int(cells[0])
        row = dict(zip(columns, cells, strict=True))
        state.put(index, "memory_total_bytes", _mib(row.get("VRAM_TOTAL")))
        state.put(index, "memory_used_bytes", _mib(row.get("VRAM_USED")))
        state.put(index, "power_draw_w", to_float((row.get("POWER") or "").replace(" W", "")))
        i += 1
    return i


# ------------------------------------------------------------------------------------------- json




def _json_text(value: Any) -> str | None:
    """A JSON leaf as amd-smi's text view shows it: {"value": 196592, "unit": "MB"} -> '196592 MB'."""
    if isinstance(value, dict) and "value" in value:
        unit = value.get("unit")
        return f"{value['value']} {unit}" if isinstance(unit, str) else str(value["value"])
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _gpu_index(value: Any) -> int | None:
    """A JSON entry's "gpu": a non-negative int (not a bool, which Python counts as an int)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 100_000
    return value if ok else None


def _read_json(state: _State, doc: Any) -> bool:
    """``amd-smi <command> --json``: a list of {"gpu": n, "asic": {...}, "vram": {...}, ...}."""
    if not isinstance(doc, list) or not doc:
        return False
    entries = [e for e in doc if isinstance(e, dict) and _gpu_index(e.get("gpu")) is not None]
    if len(entries) != len(doc):
        return False
    state.fmt("amd-smi-json")
    for entry in entries:
        index = entry["gpu"]
        state.gpus.setdefault(index, {})
        for key, value in entry.items():
            if key == "gpu":
                continue
            if isinstance(value, dict) and "value" not in value:
                for sub, leaf in value.items():
                    text = _json_text(leaf)
                    if isinstance(sub, str) and text is not None:
                        _apply(state, index, key, sub, text)
            elif (text := _json_text(value)) is not None:
                _apply(state, index, "", key, text)
    return True


# ------------------------------------------------------------------------------------------- parse


def parse(lines: Sequence[str], claimed: set[int]) -> SmiProbe | None:
    """Every amd-smi view found in ``lines``; None when there is none."""
    state = _State()
    json_tries = 0
    i = 0
    while i < len(lines):
        if i in claimed:
            i += 1
            continue
        line = lines[i]
        text = line.strip()
        block = _BLOCK_RE.fullmatch(line)
        if block is not None and block.group(2) == "GPU":
            i = _read_block(state, lines, i, int(block.group(3)), len(block.group(1)), claimed)
            continue
        if block is not None and block.group(2) == "CPU":  # amd-smi static on an APU: skip the CPU's block
            i = _skip_block(lines, i, len(block.group(1)), claimed)
            continue
        if text.startswith("| AMD-SMI "):
            i = _read_view(state, lines, i, claimed)
            continue
        if text.startswith("AMDSMI Tool:"):
            claimed.add(i)
            _version_line(state, text)
        elif text.startswith("GPU ") and _MONITOR_COLUMNS & set(columns := re.split(r"\s{2,}", text)):
            i = _read_monitor(state, lines, i, columns, claimed)
            continue
        elif (text == "[" or text.startswith("[{")) and json_tries < _MAX_JSON_TRIES:
            json_tries += 1
            found = json_document(lines, i)
            if found is not None and _read_json(state, found[0]):
                claimed.update(range(i, i + found[1]))
                i += found[1]
                continue
        i += 1
    return _probe(state)


def _skip_block(lines: Sequence[str], start: int, base: int, claimed: set[int]) -> int:
    claimed.add(start)
    i = start + 1
    while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > base):
        claimed.add(i)
        i += 1
    return i


def _version_line(state: _State, text: str) -> None:
    """``amd-smi version``: 'AMDSMI Tool: 25.4.2+aca1101 | AMDSMI Library version: 25.4.0 | ROCm version: 6.4.1'."""
    for part in text.split("|"):
        key, _, value = part.partition(":")
        key, value = key.strip(), value.strip()
        if key == "ROCm version":
            state.rocm = state.rocm or _version(value)
        elif key == "amdgpu version":
            state.driver = state.driver or _version(value)
        elif key == "AMDSMI Tool":
            state.smi = state.smi or na(value)


def _probe(state: _State) -> SmiProbe | None:
    if not state.formats:
        return None
    gpus = []
    warnings = list(state.warnings)
    for index, values in sorted(state.gpus.items()):
        name = next((values[k] for k in ("name:market", "name:view", "name:board") if k in values), "")
        faults = (values["fault"],) if "fault" in values else ()
        if faults:
            warnings.append(f"GPU {index}: {faults[0]}")
        fields = {k: v for k, v in values.items() if not k.startswith("name:") and k != "fault"}
        gpus.append(SmiGpu(index=index, name=name, vendor="amd", faults=faults, **fields))
    return SmiProbe(
        gpus=tuple(gpus),
        driver_version=state.driver,
        rocm_version=state.rocm,
        smi_version=state.smi,
        formats=tuple(state.formats),
        warnings=tuple(warnings),
        partial=state.partial,
    )
